"""Granting, revoking and restricting from the shell and the portal, through the services."""

from __future__ import annotations

import io

import pytest
from django.contrib.auth import authenticate
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.urls import reverse

from assistant.accounts.models import CollectionGrant, Role
from assistant.accounts.selectors import documents_hidden_from, documents_visible_to, read_scope, user_can
from assistant.accounts.services import collection_grant, collection_revoke, user_add
from ingest import services as ingest
from ingest.models import Document
from tests.factories import CollectionFactory, DocumentFactory, GroupFactory, UserFactory

pytestmark = pytest.mark.django_db


def stored(collection, name: str, data: bytes = b"", groups=(), user=None) -> Document:
    return DocumentFactory.create(
        collection=collection, name=name, content=data or name.encode(), groups=groups, user=user
    )


# --- user add -------------------------------------------------------------------------------------


def test_user_add_creates_the_user_and_missing_groups(capsys) -> None:
    GroupFactory.create(name="staff")
    call_command("user", "add", "alice", "--group", "staff", "--group", "board", "--email", "a@example.com")
    out = capsys.readouterr().out
    alice = User.objects.get(username="alice")
    assert sorted(alice.groups.values_list("name", flat=True)) == ["board", "staff"]
    assert alice.email == "a@example.com"
    assert not alice.has_usable_password()
    assert "Created user 'alice'" in out and "changepassword" in out
    assert "Created group 'board'" in out and "Created group 'staff'" not in out
    assert "Added 'alice' to group 'staff'" in out


def test_user_add_on_an_existing_user_adds_groups_and_keeps_the_others(capsys) -> None:
    call_command("user", "add", "bob", "--group", "staff", "--password", "a-long-passphrase-42")
    capsys.readouterr()
    call_command("user", "add", "bob", "--group", "board", "--group", "staff")
    out = capsys.readouterr().out
    assert "already exists" in out
    assert "Added 'bob' to group 'board'" in out and "to group 'staff'" not in out
    assert sorted(User.objects.get(username="bob").groups.values_list("name", flat=True)) == ["board", "staff"]
    assert authenticate(username="bob", password="a-long-passphrase-42") is not None  # password kept
    call_command("user", "add", "bob")
    assert "Nothing changed" in capsys.readouterr().out


def test_a_refused_password_changes_nothing() -> None:
    with pytest.raises(CommandError, match="Password refused"):
        call_command("user", "add", "carol", "--group", "staff", "--password", "123")
    assert not User.objects.filter(username="carol").exists()
    assert not Group.objects.filter(name="staff").exists()
    with pytest.raises(ValidationError):
        user_add(username="carol", password="password")


# --- collection grant / revoke / restrict ----------------------------------------------------------


def test_collection_grant_and_revoke_from_the_shell(capsys) -> None:
    collection = CollectionFactory.create(name="Policies")
    user = UserFactory.create(username="dave")
    group = GroupFactory.create(name="staff")
    user.groups.add(group)
    call_command("collection", "grant", "Policies", "--group", "staff", "--role", "read")
    assert "Granted group 'staff' read on 'Policies'" in capsys.readouterr().out
    assert user_can(user=user, collection=collection, role=Role.READ)
    assert not user_can(user=user, collection=collection, role=Role.WRITE)

    call_command("collection", "grant", "Policies", "--group", "staff", "--role", "manage")
    assert "from read to manage" in capsys.readouterr().out
    assert user_can(user=user, collection=collection, role=Role.MANAGE)
    assert CollectionGrant.objects.filter(collection=collection).count() == 1

    call_command("collection", "grant", "Policies", "--user", "dave", "--role", "write")
    call_command("collection", "access", "Policies")
    listing = capsys.readouterr().out
    assert "manage  group staff" in listing and "write   user dave" in listing

    call_command("collection", "revoke", "Policies", "--group", "staff")
    assert "Revoked the access of group 'staff'" in capsys.readouterr().out
    assert not user_can(user=user, collection=collection, role=Role.MANAGE)
    assert user_can(user=user, collection=collection, role=Role.WRITE)  # their own grant remains
    call_command("collection", "revoke", "Policies", "--group", "staff")
    assert "nothing changed" in capsys.readouterr().out


@pytest.mark.parametrize(
    "args, error",
    [
        (["grant", "Nope", "--group", "staff", "--role", "read"], "No collection named 'Nope'"),
        (["grant", "Policies", "--group", "stafff", "--role", "read"], "No group named 'stafff'"),
        (["grant", "Policies", "--user", "nobody", "--role", "read"], "No user named 'nobody'"),
        (["restrict", "Policies", "missing.txt", "--group", "staff"], "No document missing.txt"),
    ],
)
def test_collection_command_refuses_unknown_names_clearly(args, error) -> None:
    CollectionFactory.create(name="Policies")
    GroupFactory.create(name="staff")
    with pytest.raises(CommandError, match=error):
        call_command("collection", *args)
    assert not CollectionGrant.objects.exists()


def test_collection_restrict_from_the_shell_and_lift_it(capsys) -> None:
    collection = CollectionFactory.create(name="Policies")
    board = GroupFactory.create(name="board")
    reader = UserFactory.create()
    collection_grant(collection=collection, user=reader, role=Role.READ)
    memo = stored(collection, "memo.txt")
    call_command("collection", "restrict", "Policies", "memo.txt", "--group", "board")
    assert "now restricted to 'board'" in capsys.readouterr().out
    assert list(memo.restricted_to_groups.all()) == [board]
    assert memo.pk in read_scope(user=reader, collections=[collection]).hidden_document_ids
    call_command("collection", "restrict", "Policies", f"#{memo.pk}")
    assert "open to every reader" in capsys.readouterr().out
    assert read_scope(user=reader, collections=[collection]).hidden_document_ids == frozenset()


def test_ingest_restrict_to_group(tmp_path, capsys) -> None:
    GroupFactory.create(name="board")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "minutes.txt").write_text("Board minutes.\n\nThe dividend will rise.")
    with pytest.raises(CommandError, match="No group named 'bord'"):
        call_command("ingest", "--collection", "Board", "--inline", "--restrict-to-group", "bord", str(folder))
    assert not Document.objects.exists()
    call_command("ingest", "--collection", "Board", "--inline", "--restrict-to-group", "board", str(folder))
    document = Document.objects.get()
    assert document.status == Document.Status.READY
    assert list(document.restricted_to_groups.values_list("name", flat=True)) == ["board"]
    capsys.readouterr()
    call_command("ingest", "--collection", "Board", "--inline", "--restrict-to-group", "board", str(folder))
    assert "restriction left as it was" in capsys.readouterr().err


# --- the rules in the services ------------------------------------------------------------------


def test_only_a_manager_may_change_access() -> None:
    collection = CollectionFactory.create()
    writer, manager, group = UserFactory.create(), UserFactory.create(), GroupFactory.create()
    collection_grant(collection=collection, user=writer, role=Role.WRITE)
    collection_grant(collection=collection, user=manager, role=Role.MANAGE)
    document = stored(collection, "a.txt")
    with pytest.raises(PermissionDenied):
        collection_grant(collection=collection, group=group, role=Role.READ, actor=writer)
    with pytest.raises(PermissionDenied):
        collection_revoke(collection=collection, user=manager, actor=writer)
    with pytest.raises(PermissionDenied):
        ingest.document_restrict(document=document, groups=[group], actor=writer)
    assert not document.restricted_to_groups.exists()
    collection_grant(collection=collection, group=group, role=Role.READ, actor=manager)
    ingest.document_restrict(document=document, groups=[group], actor=manager)
    assert list(document.restricted_to_groups.all()) == [group]
    with pytest.raises(ValueError, match="either a group or a user"):
        collection_grant(collection=collection, group=group, user=writer, role=Role.READ)


def test_restricting_a_document_covers_its_children_and_pending_versions() -> None:
    collection = CollectionFactory.create()
    board = GroupFactory.create()
    mail = stored(collection, "mail.eml")
    attachment = ingest.document_upload(
        collection=collection, name="a.txt", fileobj=io.BytesIO(b"attached"), enqueue=False, parent=mail
    ).document
    nested = ingest.document_upload(
        collection=collection, name="b.txt", fileobj=io.BytesIO(b"nested"), enqueue=False, parent=attachment
    ).document
    newer = stored(collection, "mail.eml", b"a new version")
    assert newer.supersedes_id == mail.pk
    other = stored(collection, "other.txt")
    changed = ingest.document_restrict(document=mail, groups=[board])
    assert set(changed) == {mail.pk, attachment.pk, nested.pk, newer.pk}
    assert not other.restricted_to_groups.exists()
    late = ingest.document_upload(
        collection=collection, name="c.txt", fileobj=io.BytesIO(b"found later"), enqueue=False, parent=attachment
    ).document
    assert list(late.restricted_to_groups.all()) == [board]


def test_hidden_documents_are_computed_in_one_query(django_assert_num_queries) -> None:
    collection = CollectionFactory.create()
    board, staff = GroupFactory.create(), GroupFactory.create()
    reader = UserFactory.create()
    reader.groups.add(staff)
    collection_grant(collection=collection, group=staff, role=Role.READ)
    hidden = [stored(collection, f"h{i}.txt", groups=[board]) for i in range(3)]
    shared = stored(collection, "shared.txt", groups=[board, staff])
    stored(collection, "open.txt")
    with django_assert_num_queries(1):
        ids = set(documents_hidden_from(user=reader, collection_ids=[collection.pk]).values_list("pk", flat=True))
    assert ids == {d.pk for d in hidden}
    assert shared.pk in set(documents_visible_to(user=reader, collection=collection).values_list("pk", flat=True))


def test_a_duplicate_upload_leaves_the_existing_restriction_alone() -> None:
    collection = CollectionFactory.create()
    board = GroupFactory.create()
    original = stored(collection, "a.txt", b"same bytes", groups=[board])
    again = ingest.document_upload(
        collection=collection, name="copy.txt", fileobj=io.BytesIO(b"same bytes"), enqueue=False
    )
    assert again.duplicate and again.document.pk == original.pk
    assert list(original.restricted_to_groups.all()) == [board]


# --- the portal -----------------------------------------------------------------------------------


def test_a_manager_grants_revokes_and_restricts_in_the_portal(client) -> None:
    manager = UserFactory.create()
    collection = CollectionFactory.create(created_by=manager)
    staff, board = GroupFactory.create(name="staff"), GroupFactory.create(name="board")
    reader = UserFactory.create()
    reader.groups.add(staff)
    memo = stored(collection, "memo.txt")
    client.force_login(manager)
    page = client.get(reverse("portal:collection", args=[collection.pk])).content.decode()
    assert "Restrict a document" in page and "Grant" in page

    client.post(reverse("portal:access_grant", args=[collection.pk]), {"group": staff.pk, "role": "read"})
    assert user_can(user=reader, collection=collection, role=Role.READ)
    client.post(reverse("portal:document_restrict", args=[collection.pk]), {"document": memo.pk, "groups": [board.pk]})
    assert memo.pk in read_scope(user=reader, collections=[collection]).hidden_document_ids
    status = client.get(reverse("portal:documents_status", args=[collection.pk])).json()
    assert status["documents"][0]["restricted_to"] == ["board"]
    client.post(reverse("portal:document_restrict", args=[collection.pk]), {"document": memo.pk})
    assert not memo.restricted_to_groups.exists()

    grant = CollectionGrant.objects.get(collection=collection, group=staff)
    client.post(reverse("portal:access_revoke", args=[collection.pk, grant.pk]))
    assert not user_can(user=reader, collection=collection, role=Role.READ)


def test_a_writer_cannot_change_access_in_the_portal_but_can_restrict_an_upload(client) -> None:
    collection = CollectionFactory.create()
    writer = UserFactory.create()
    staff, board = GroupFactory.create(name="staff"), GroupFactory.create(name="board")
    writer.groups.add(board)
    collection_grant(collection=collection, user=writer, role=Role.WRITE)
    client.force_login(writer)
    page = client.get(reverse("portal:collection", args=[collection.pk])).content.decode()
    assert "Restrict a document" not in page
    refused = client.post(reverse("portal:access_grant", args=[collection.pk]), {"group": staff.pk, "role": "read"})
    assert refused.status_code == 404
    assert not CollectionGrant.objects.filter(group=staff).exists()

    upload = {"files": [SimpleUploadedFile("minutes.txt", b"Board only.")], "restrict_to_groups": [board.pk]}
    client.post(reverse("portal:upload", args=[collection.pk]), upload)
    document = Document.objects.get(name="minutes.txt")
    assert list(document.restricted_to_groups.all()) == [board]
    assert document.uploaded_by == writer
    other = {"files": [SimpleUploadedFile("x.txt", b"x")], "restrict_to_groups": [staff.pk]}  # not their group
    client.post(reverse("portal:upload", args=[collection.pk]), other)
    assert not Document.objects.filter(name="x.txt").exists()
