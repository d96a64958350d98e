"""The retrieval-test page: each retriever's ranking, as the chosen user would get it."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from assistant.accounts.models import CollectionGrant, Role
from assistant.audit.models import AuditEvent
from assistant.chat import services
from assistant.chat.retrieval_debug import retrieval_test
from tests.factories import CollectionFactory, DocumentFactory, GroupFactory, UserFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = pytest.mark.django_db

SECRET = "Board minutes: the merger code name is BLUEHERON and the merger closes on 14 May."
QUESTION = "What is the merger code name?"


@pytest.fixture
def library():
    """A collection with a handbook for everyone and board minutes restricted to the board.

    ``manager`` manages it; ``reader`` reads it but is not on the board; ``member`` (the
    control) reads it and is.
    """
    manager, reader, member = (UserFactory.create(username=n) for n in ("manager", "reader", "member"))
    board = GroupFactory.create(name="board")
    member.groups.add(board)
    collection = CollectionFactory.create(name="Handbook")
    CollectionGrant.objects.create(collection=collection, user=manager, role=Role.MANAGE)
    CollectionGrant.objects.create(collection=collection, user=reader, role=Role.READ)
    CollectionGrant.objects.create(collection=collection, group=board, role=Role.READ)
    DocumentFactory.create(collection=collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True)
    DocumentFactory.create(
        collection=collection, name="minutes.pdf", content=make_pdf([SECRET]), groups=[board], processed=True
    )
    return collection, manager, reader, member


def _documents(comparison) -> set[str]:
    return {r.passage.document_name for column in comparison.columns for r in column.ranked}


def test_viewing_as_a_reader_shows_nothing_restricted_away_from_them(library) -> None:
    collection, manager, reader, member = library
    as_reader = retrieval_test(viewer=manager, as_user=reader, collection=collection, question=QUESTION)
    assert [c.kind for c in as_reader.columns] == ["dense", "lexical", "chat"]
    assert "minutes.pdf" not in _documents(as_reader)
    assert all("BLUEHERON" not in r.passage.text for c in as_reader.columns for r in c.ranked)
    # The control: a board member's view finds the minutes, first, in every column.
    as_member = retrieval_test(viewer=manager, as_user=member, collection=collection, question=QUESTION)
    for column in as_member.columns:
        assert column.ranked[0].passage.document_name == "minutes.pdf", column.kind


def test_the_chat_column_is_what_the_chat_retrieves(library, settings) -> None:
    collection, manager, _, member = library
    comparison = retrieval_test(viewer=manager, as_user=member, collection=collection, question=QUESTION)
    chat = next(c for c in comparison.columns if c.kind == "chat")
    assert chat.retriever == settings.RETRIEVAL_MODE
    given = services.passages_retrieve(user=member, collection=collection, query=QUESTION, k=settings.RETRIEVAL_TOP_K)
    assert [p.chunk_id for p in comparison.given] == [p.chunk_id for p in given]
    assert [r.passage.chunk_id for r in chat.ranked if not r.below_floor] == [p.chunk_id for p in given]


def test_passages_below_the_floor_are_marked(library, settings) -> None:
    collection, manager, reader, _ = library
    settings.RETRIEVAL_MIN_RELEVANCE = 0.99  # nothing is that close
    comparison = retrieval_test(viewer=manager, as_user=reader, collection=collection, question=QUESTION)
    assert all(r.below_floor for c in comparison.columns for r in c.ranked)
    assert comparison.given == []
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    comparison = retrieval_test(viewer=manager, as_user=reader, collection=collection, question=QUESTION)
    assert comparison.given and not any(r.below_floor for c in comparison.columns for r in c.ranked)


def test_every_test_is_audited_with_whom_it_viewed_as(library) -> None:
    collection, manager, reader, _ = library
    retrieval_test(viewer=manager, as_user=reader, collection=collection, question=QUESTION)
    event = AuditEvent.objects.get(action=AuditEvent.Action.RETRIEVAL_TESTED)
    assert event.actor == manager and event.collection_id == collection.pk
    assert event.details["as_user"] == "reader" and event.details["question"] == QUESTION
    assert (event.target_type, event.target_id) == ("auth.user", str(reader.pk))


def test_the_page_as_a_reader_and_as_the_control(client, library) -> None:
    collection, manager, reader, member = library
    client.force_login(manager)
    url = reverse("portal:retrieval_test")
    page = client.get(url, {"collection": collection.pk})
    assert page.status_code == 200
    options = re.findall(r'<option value="(\d+)"[^>]*>([^<]+)</option>', page.content.decode())
    assert {name for _, name in options} >= {"manager", "reader", "member"}

    as_reader = client.post(url, {"collection": collection.pk, "question": QUESTION, "as_user": reader.pk})
    html = as_reader.content.decode()
    assert as_reader.status_code == 200
    assert "handbook.pdf" in html
    assert "minutes.pdf" not in html and "BLUEHERON" not in html
    assert html.count('class="retrieval-column"') == 3

    as_member = client.post(url, {"collection": collection.pk, "question": QUESTION, "as_user": member.pk})
    assert "minutes.pdf" in as_member.content.decode() and "BLUEHERON" in as_member.content.decode()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.RETRIEVAL_TESTED, actor=manager).count() == 2


def test_a_reader_may_not_test_retrieval(client, library) -> None:
    collection, _, reader, _ = library
    client.force_login(reader)
    url = reverse("portal:retrieval_test")
    assert client.get(url).status_code == 403
    assert client.get(url, {"collection": collection.pk}).status_code == 403
    posted = client.post(url, {"collection": collection.pk, "question": QUESTION, "as_user": reader.pk})
    assert posted.status_code == 403
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.RETRIEVAL_TESTED).exists()


def test_a_manager_of_another_collection_gets_not_found(client, library) -> None:
    collection, _, reader, _ = library
    other_manager = UserFactory.create()
    CollectionGrant.objects.create(collection=CollectionFactory.create(), user=other_manager, role=Role.MANAGE)
    client.force_login(other_manager)
    url = reverse("portal:retrieval_test")
    assert client.get(url, {"collection": collection.pk}).status_code == 404
    posted = client.post(url, {"collection": collection.pk, "question": QUESTION, "as_user": reader.pk})
    assert posted.status_code == 404


def test_one_may_only_view_as_a_reader_of_the_collection(client, library) -> None:
    collection, manager, _, _ = library
    stranger = UserFactory.create(username="stranger")
    client.force_login(manager)
    url = reverse("portal:retrieval_test")
    assert "stranger" not in client.get(url, {"collection": collection.pk}).content.decode()
    posted = client.post(url, {"collection": collection.pk, "question": QUESTION, "as_user": stranger.pk})
    assert posted.status_code == 200 and 'class="retrieval-column"' not in posted.content.decode()
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.RETRIEVAL_TESTED).exists()


def test_the_collection_page_links_to_the_test_for_its_managers(client, library) -> None:
    collection, manager, _, _ = library
    client.force_login(manager)
    html = client.get(reverse("portal:collection", args=[collection.pk])).content.decode()
    assert f"{reverse('portal:retrieval_test')}?collection={collection.pk}" in html
