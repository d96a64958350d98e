"""The portal's documents through Django's test client: the paged, filtered, sorted table
and its live JSON, uploads answering per file, retry, bulk re-index and delete, and a
document's own page. Every list and count is checked with a restricted document present:
a writer who must not see it and one who must (the control)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.audit.models import AuditEvent
from ingest import claims, selectors
from ingest.models import Chunk, Collection, Document, DocumentEvent
from tests.factories import CollectionFactory, DocumentFactory, GroupFactory, UserFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = pytest.mark.django_db

Status = Document.Status


class Place:
    """A collection with two writers; ``secret.txt`` is restricted to the board, which only ``insider`` is in."""

    def __init__(self) -> None:
        self.collection = CollectionFactory.create(name="Policies")
        self.board = GroupFactory.create(name="board")
        self.outsider, self.insider = UserFactory.create(username="outsider"), UserFactory.create(username="insider")
        self.insider.groups.add(self.board)
        for user in (self.outsider, self.insider):
            collection_grant(collection=self.collection, user=user, role=Role.WRITE)
        self.secret = DocumentFactory.create(
            collection=self.collection, name="secret.txt", content=b"board only", groups=[self.board]
        )
        self.memo = DocumentFactory.create(collection=self.collection, name="memo.txt", user=self.outsider)

    def table(self, client, user, **query: str) -> dict:
        client.force_login(user)
        response = client.get(reverse("portal:documents_status", args=[self.collection.pk]), query)
        assert response.status_code == 200
        return response.json()


@pytest.fixture
def place() -> Place:
    return Place()


def _rows(collection: Collection, count: int, **fields) -> None:
    """``count`` documents straight into the table (no files): the table reads rows only."""
    start = Document.objects.count()
    Document.objects.bulk_create(
        [
            Document(
                collection=collection,
                name=f"file-{start + i:06d}.txt",
                size=start + i,
                file_type="text",
                content_hash=hashlib.sha256(f"{collection.pk}-{start + i}".encode()).hexdigest(),
                **fields,
            )
            for i in range(count)
        ],
        batch_size=5000,
    )


def _many_rows(collection: Collection, count: int) -> None:
    """``count`` ready documents of 3 passages each, made by the database itself on SQLite
    (a second, where building as many objects in Python takes a minute)."""
    if connection.vendor != "sqlite":
        _rows(collection, count, status=Status.READY, chunk_count=3)
        return
    start = Document.objects.count()
    now = timezone.now().isoformat()
    with connection.cursor() as cursor:
        cursor.execute(
            """
            WITH RECURSIVE n(i) AS (SELECT %s UNION ALL SELECT i + 1 FROM n WHERE i < %s)
            INSERT INTO ingest_document (
                collection_id, name, file, content_hash, separate_copy, size, file_type, title,
                title_candidates, context, status, error, chunk_count, progress_done, progress_total,
                attempts, timings, created_at, updated_at)
            SELECT %s, printf('file-%%06d.txt', i), '', printf('%%064d', i), 0, i, 'text', '',
                '[]', '', 'ready', '', 3, 3, 3, 1, '{}', %s, %s FROM n
            """,
            [start, start + count - 1, collection.pk, now, now],
        )


# --- the table -------------------------------------------------------------------------------------


def test_the_table_pages_filters_and_sorts(place: Place, client) -> None:
    _rows(place.collection, 118)
    Document.objects.filter(name__in=["file-000010.txt", "file-000011.txt"]).update(status=Status.FAILED)

    first = place.table(client, place.insider)
    assert first["page"] == {"number": 1, "pages": 3, "total": 120, "per_page": 50, "sort": "-time"}
    newest = list(Document.objects.order_by("-created_at", "-id").values_list("name", flat=True))
    assert [d["name"] for d in first["documents"]] == newest[:50]
    third = place.table(client, place.insider, page="3")
    assert [d["name"] for d in third["documents"]] == newest[100:]
    assert place.table(client, place.insider, page="99")["page"]["number"] == 3  # past the end: the last page

    by_name = place.table(client, place.insider, sort="name")["documents"]
    assert [d["name"] for d in by_name[:2]] == ["file-000002.txt", "file-000003.txt"]
    by_size = place.table(client, place.insider, sort="-size")["documents"]
    assert by_size[0]["size"] == max(d.size for d in Document.objects.all())
    failed = place.table(client, place.insider, status="failed")
    assert sorted(d["name"] for d in failed["documents"]) == ["file-000010.txt", "file-000011.txt"]
    assert place.table(client, place.insider, q="000117")["page"]["total"] == 1
    assert place.table(client, place.insider, type="text")["page"]["total"] == 118

    row = place.table(client, place.insider, q="memo")["documents"][0]
    assert row["uploader"] == "outsider" and row["url"] == reverse("portal:document", args=[place.memo.pk])
    assert {"status", "pages", "chunks", "size", "size_label", "created_label", "error"} <= set(row)


def test_the_table_page_is_rendered_without_scripts(place: Place, client) -> None:
    client.force_login(place.insider)
    page = client.get(reverse("portal:collection", args=[place.collection.pk]), {"sort": "name"}).content.decode()
    assert page.index("memo.txt") < page.index("secret.txt")
    assert 'aria-sort="ascending"' in page
    assert reverse("portal:document", args=[place.memo.pk]) in page
    assert 'name="folder" webkitdirectory' in page  # a folder can be chosen without the drop zone


def test_a_restricted_document_never_shows_to_a_writer_who_may_not_see_it(place: Place, client) -> None:
    hidden = place.table(client, place.outsider)
    assert [d["name"] for d in hidden["documents"]] == ["memo.txt"]
    assert hidden["summary"]["total"] == hidden["page"]["total"] == 1
    assert place.table(client, place.outsider, q="secret")["documents"] == []
    page = client.get(reverse("portal:collection", args=[place.collection.pk])).content.decode()
    assert "secret.txt" not in page
    assert client.get(reverse("portal:document", args=[place.secret.pk])).status_code == 404
    assert client.get(reverse("portal:document", args=[place.secret.pk + 1000])).status_code == 404

    control = place.table(client, place.insider)
    assert sorted(d["name"] for d in control["documents"]) == ["memo.txt", "secret.txt"]
    assert control["summary"]["total"] == 2
    assert client.get(reverse("portal:document", args=[place.secret.pk])).status_code == 200


def test_a_reader_has_no_portal_table(place: Place, client) -> None:
    reader = UserFactory.create()
    collection_grant(collection=place.collection, user=reader, role=Role.READ)
    client.force_login(reader)
    assert client.get(reverse("portal:documents_status", args=[place.collection.pk])).status_code == 404
    assert client.get(reverse("portal:document", args=[place.memo.pk])).status_code == 404


# --- uploads ----------------------------------------------------------------------------------------


def test_an_upload_answers_each_files_outcome_as_json(place: Place, client, settings) -> None:
    settings.MAX_UPLOAD_BYTES = 1000
    client.force_login(place.insider)
    files = [
        SimpleUploadedFile("new.md", b"# New\n\nText."),
        SimpleUploadedFile("again.txt", place.memo.name.encode()),  # memo.txt's bytes
        SimpleUploadedFile("huge.txt", b"x" * 2000),
    ]
    response = client.post(
        reverse("portal:upload", args=[place.collection.pk]), {"files": files}, HTTP_ACCEPT="application/json"
    )
    assert response.status_code == 200
    outcomes = {o["name"]: o for o in response.json()["outcomes"]}
    assert outcomes["new.md"]["outcome"] == "accepted"
    new = Document.objects.get(name="new.md")
    assert outcomes["new.md"]["document"]["url"] == reverse("portal:document", args=[new.pk])
    assert outcomes["again.txt"]["outcome"] == "duplicate" and "memo.txt" in outcomes["again.txt"]["message"]
    assert outcomes["huge.txt"]["outcome"] == "rejected" and "upload limit" in outcomes["huge.txt"]["message"]
    assert list(new.events.values_list("status", "message")) == [("queued", "uploaded")]

    empty = client.post(reverse("portal:upload", args=[place.collection.pk]), {}, HTTP_ACCEPT="application/json")
    assert empty.status_code == 400 and empty.json()["error"]


def test_a_duplicate_of_a_hidden_document_is_not_named(place: Place, client) -> None:
    client.force_login(place.outsider)
    response = client.post(
        reverse("portal:upload", args=[place.collection.pk]),
        {"files": [SimpleUploadedFile("copy.txt", b"board only")]},
        HTTP_ACCEPT="application/json",
    )
    (outcome,) = response.json()["outcomes"]
    assert outcome["outcome"] == "accepted" and "secret" not in str(outcome)


def test_files_of_a_chosen_folder_are_uploaded_by_the_plain_form(place: Place, client) -> None:
    client.force_login(place.insider)
    folder = [SimpleUploadedFile("notes/a.md", b"# A"), SimpleUploadedFile("notes/b.md", b"# B")]
    client.post(reverse("portal:upload", args=[place.collection.pk]), {"folder": folder})
    assert set(Document.objects.filter(name__endswith=".md").values_list("name", flat=True)) == {"a.md", "b.md"}


# --- retry, bulk re-index and delete ------------------------------------------------------------------


def _action(client, place: Place, **data) -> Any:
    return client.post(reverse("portal:documents_action", args=[place.collection.pk]), data)


def test_a_failed_file_is_retried_and_audited(place: Place, client) -> None:
    claims.document_fail(document_id=place.memo.pk, reason="The file is not a PDF.")
    client.force_login(place.insider)
    page = client.get(reverse("portal:collection", args=[place.collection.pk])).content.decode()
    assert f'name="retry" value="{place.memo.pk}"' in page and "The file is not a PDF." in page

    response = _action(client, place, retry=str(place.memo.pk))
    assert response.status_code == 302
    place.memo.refresh_from_db()
    assert place.memo.status == Status.QUEUED and place.memo.error == ""
    assert list(place.memo.events.values_list("status", flat=True)) == ["queued", "failed", "queued"]
    event = AuditEvent.objects.get(action=AuditEvent.Action.DOCUMENT_REINDEXED)
    assert event.actor == place.insider and event.target_id == str(place.memo.pk)


def test_bulk_reindex_checks_every_document(place: Place, client) -> None:
    for document in (place.memo, place.secret):
        claims.document_status_set(document.pk, Status.READY)
    client.force_login(place.outsider)
    _action(client, place, action="reindex", ids=[str(place.memo.pk), str(place.secret.pk)])
    statuses = dict(Document.objects.values_list("name", "status"))
    assert statuses == {"memo.txt": "queued", "secret.txt": "ready"}  # the hidden one is skipped

    client.force_login(place.insider)  # the control
    _action(client, place, action="reindex", ids=[str(place.secret.pk)])
    assert Document.objects.get(pk=place.secret.pk).status == Status.QUEUED


def test_bulk_delete_asks_first_and_skips_what_it_may_not_see(place: Place, client) -> None:
    extra = DocumentFactory.create(collection=place.collection, name="extra.txt")
    client.force_login(place.outsider)
    ids = [str(place.memo.pk), str(extra.pk), str(place.secret.pk)]
    confirm = _action(client, place, action="delete", ids=ids)
    assert confirm.status_code == 200
    body = confirm.content.decode()
    assert "memo.txt" in body and "extra.txt" in body and "secret.txt" not in body
    assert Document.objects.count() == 3  # nothing deleted yet

    done = _action(client, place, action="delete", ids=ids, confirmed="yes")
    assert done.status_code == 302
    assert list(Document.objects.values_list("name", flat=True)) == ["secret.txt"]
    deleted = AuditEvent.objects.filter(action=AuditEvent.Action.DOCUMENT_DELETED)
    assert sorted(e.details["name"] for e in deleted) == ["extra.txt", "memo.txt"]

    client.force_login(place.insider)  # the control may delete it
    _action(client, place, delete=str(place.secret.pk))  # one row's button: still asks first
    assert Document.objects.filter(pk=place.secret.pk).exists()
    _action(client, place, action="delete", ids=[str(place.secret.pk)], confirmed="yes")
    assert not Document.objects.exists()


def test_bulk_actions_stay_inside_the_collection(place: Place, client) -> None:
    other = CollectionFactory.create(created_by=place.insider)
    elsewhere = DocumentFactory.create(collection=other, name="elsewhere.txt")
    client.force_login(place.insider)
    _action(client, place, action="delete", ids=[str(elsewhere.pk)], confirmed="yes")
    assert Document.objects.filter(pk=elsewhere.pk).exists()


# --- a document's page ------------------------------------------------------------------------------


def test_a_documents_page_shows_history_versions_and_the_passages_with_pages(place: Place, client) -> None:
    handbook = DocumentFactory.create(
        collection=place.collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True
    )
    assert handbook.status == Status.READY
    client.force_login(place.insider)
    page = client.get(reverse("portal:document", args=[handbook.pk])).content.decode()
    assert list(handbook.events.values_list("status", flat=True)) == ["queued", "parsing", "embedding", "ready"]
    assert "Status history" in page and f"{handbook.chunk_count} passages" in page
    assert "page 2" in page and "Zephyr travel desk" in page  # the passage and its page
    assert f'name="document" value="{handbook.pk}"' in page  # chat with this document

    newer = DocumentFactory.create(
        collection=place.collection, name="handbook.pdf", content=make_pdf(["Revised handbook"])
    )
    assert newer.supersedes_id == handbook.pk
    assert (
        reverse("portal:document", args=[newer.pk])
        in client.get(reverse("portal:document", args=[handbook.pk])).content.decode()
    )
    newer_page = client.get(reverse("portal:document", args=[newer.pk])).content.decode()
    assert reverse("portal:document", args=[handbook.pk]) in newer_page
    assert "until it is ready" in newer_page  # not ready: the assistant sees nothing of it yet


def test_the_passages_shown_are_the_assistants_own(place: Place, client, settings) -> None:
    settings.PII_REDACTION = "answer"
    document = DocumentFactory.create(
        collection=place.collection, name="contacts.txt", content="Call Erika at +49 30 1234567 for keys.",
        processed=True,
    )  # fmt: skip
    client.force_login(place.insider)
    page = client.get(reverse("portal:document", args=[document.pk])).content.decode()
    passages = page[page.index('id="passages"') :]
    assert "Call Erika" in passages and "1234567" not in passages  # redacted as the assistant is given it


def test_the_chunk_viewer_pages(place: Place, client) -> None:
    document = place.memo
    total = 120
    Chunk.objects.bulk_create(
        Chunk(document=document, collection=place.collection, ordinal=i, text=f"Paragraph {i}.", embedding=b"",
              page_start=i // 10 + 1, page_end=i // 10 + 1)
        for i in range(total)
    )  # fmt: skip
    claims.document_status_set(document.pk, Status.READY, chunk_count=total)
    client.force_login(place.insider)
    first = client.get(reverse("portal:document", args=[document.pk])).content.decode()
    second = client.get(reverse("portal:document", args=[document.pk]), {"page": "2"}).content.decode()
    assert 'id="passage-1"' in first and 'id="passage-51"' not in first
    assert 'id="passage-51"' in second and 'id="passage-100"' in second and 'id="passage-101"' not in second
    last = client.get(reverse("portal:document", args=[document.pk]), {"page": "99"}).content.decode()
    assert f'id="passage-{total}"' in last  # past the end: the last page
    assert "Paragraph 119." in last and "page 12" in last


# --- 100,000 documents ------------------------------------------------------------------------------


def _page_sql(place: Place, client, **query: str) -> tuple[int, list[str]]:
    client.force_login(place.outsider)
    with CaptureQueriesContext(connection) as captured:
        response = client.get(reverse("portal:documents_status", args=[place.collection.pk]), query)
    assert response.status_code == 200
    return len(captured), [q["sql"] for q in captured.captured_queries]


def test_the_table_holds_at_100000_documents(place: Place, client) -> None:
    _page_sql(place, client)  # once first: whatever a first request caches
    small, _ = _page_sql(place, client)
    _many_rows(place.collection, 100_000)
    assert Document.objects.filter(collection=place.collection).count() == 100_002

    for query in ({}, {"sort": "name", "page": "1500"}, {"sort": "-size"}, {"status": "ready", "sort": "status"}):
        count, statements = _page_sql(place, client, **query)
        assert count == small, query  # the same queries as for two documents
        page = [s for s in statements if "LIMIT" in s and '"ingest_document"."name"' in s]
        assert page, statements
        if connection.vendor != "sqlite":
            continue  # PostgreSQL's plan depends on its statistics; the query count above holds on both
        with connection.cursor() as cursor:
            cursor.execute(f"EXPLAIN QUERY PLAN {page[-1]}")  # SQL Django itself produced
            plan = " | ".join(str(row[-1]) for row in cursor.fetchall())
        # The page walks an index in the order asked for: it never sorts the collection.
        assert "USE TEMP B-TREE FOR ORDER BY" not in plan, (query, plan)
        assert "document_collection_" in plan, (query, plan)

    data = client.get(reverse("portal:documents_status", args=[place.collection.pk]), {"sort": "name"}).json()
    assert data["page"]["total"] == 100_001  # the outsider does not count secret.txt
    assert data["summary"]["total"] == 100_001 and data["summary"]["chunks"] == 300_000
    assert [d["name"] for d in data["documents"]][:2] == ["file-000002.txt", "file-000003.txt"]
    last = client.get(reverse("portal:documents_status", args=[place.collection.pk]), {"page": "2001"}).json()
    assert last["page"]["pages"] == 2001 and len(last["documents"]) == 1


def test_documents_page_selector_takes_a_fixed_number_of_queries(place: Place, django_assert_num_queries) -> None:
    _rows(place.collection, 300)
    visible = Document.objects.filter(collection=place.collection)
    with django_assert_num_queries(3):  # count, page, the page's restrictions
        found = selectors.documents_page(documents=visible, sort="name", page=2)
    assert found.documents[0].name == "file-000052.txt"
    assert DocumentEvent.objects.count() == 2  # bulk rows have no history; the two uploads do


def test_a_manager_restricts_any_document_from_its_own_page(place: Place, client) -> None:
    """The collection page's list holds one table page; the document's own page reaches every document."""
    manager = UserFactory.create(username="keeper")
    collection_grant(collection=place.collection, user=manager, role=Role.MANAGE)
    _rows(place.collection, 120, status=Status.READY)
    client.force_login(manager)
    collection_page = client.get(reverse("portal:collection", args=[place.collection.pk])).content.decode()
    restrict_list = collection_page[collection_page.index('id="restrict"') :]
    listed = {d.pk for d in Document.objects.all() if f'<option value="{d.pk}">' in restrict_list}
    last = Document.objects.filter(name__startswith="file-").exclude(pk__in=listed).order_by("name").last()
    assert listed and last is not None  # a document the first table page does not hold

    page = client.get(reverse("portal:document", args=[last.pk])).content.decode()
    assert 'id="restriction"' in page and f'<option value="{place.board.pk}">board</option>' in page
    response = client.post(
        reverse("portal:document_restrict", args=[place.collection.pk]),
        {"document": last.pk, "groups": [place.board.pk], "back": "document"},
    )
    assert response.status_code == 302 and response["Location"] == reverse("portal:document", args=[last.pk])
    assert list(last.restricted_to_groups.all()) == [place.board]
    again = client.get(reverse("portal:document", args=[last.pk])).content.decode()
    assert f'<option value="{place.board.pk}" selected>board</option>' in again

    names = {row["name"] for row in place.table(client, place.outsider, q=last.name)["documents"]}
    assert last.name not in names  # the outsider no longer sees it
    assert last.name in {row["name"] for row in place.table(client, place.insider, q=last.name)["documents"]}

    client.force_login(place.insider)  # a writer, not a manager: no form
    assert 'id="restriction"' not in client.get(reverse("portal:document", args=[place.memo.pk])).content.decode()
