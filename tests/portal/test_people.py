"""The People pages and the access controls of a collection page, through Django's test client.

Who may open them, that every change is made (and audited) by ``accounts.services``, and
that what a user's page says they read is what the permission rules give them, with a
restricted document present: the user who must not see it has it listed as restricted
away from them, the control (a member of its group) reads it.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, Permission, User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from assistant.accounts.models import CollectionGrant, Role
from assistant.accounts.selectors import documents_visible_to
from assistant.accounts.services import collection_grant
from assistant.audit.models import AuditEvent
from tests.factories import CollectionFactory, DocumentFactory, GroupFactory, UserFactory

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action


@pytest.fixture
def admin(client: Client) -> User:
    user = UserFactory.create(username="root", is_staff=True, is_superuser=True)
    client.force_login(user)
    return user


@pytest.fixture
def library() -> dict:
    """A collection read by group "staff", with one document restricted to group "board"."""
    staff, board = GroupFactory.create(name="staff"), GroupFactory.create(name="board")
    collection = CollectionFactory.create(name="Handbook")
    collection_grant(collection=collection, group=staff, role=Role.READ)
    public = DocumentFactory.create(collection=collection, name="handbook.txt")
    minutes = DocumentFactory.create(collection=collection, name="minutes.txt", groups=[board])
    erin = UserFactory.create(username="erin")  # the employee: must not see the minutes
    bob = UserFactory.create(username="bob")  # the control: on the board
    erin.groups.add(staff)
    bob.groups.add(staff, board)
    return {"collection": collection, "public": public, "minutes": minutes, "erin": erin, "bob": bob,
            "staff": staff, "board": board}  # fmt: skip


def _as(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _hidden_on_user_page(client: Client, user: User) -> str:
    response = client.get(reverse("portal:people_user", args=[user.pk]))
    assert response.status_code == 200
    page = response.content.decode()
    return page.split('id="reads"', 1)[1]


# --- who may open the People pages -----------------------------------------------


def test_a_plain_user_and_staff_without_the_permission_get_the_styled_403(client: Client) -> None:
    urls = [reverse("portal:people"), reverse("portal:people_groups")]
    plain = UserFactory.create()
    staff = UserFactory.create(is_staff=True)
    for user in (plain, staff):
        session = _as(user)
        for url in urls:
            response = session.get(url)
            assert response.status_code == 403
            page = response.content.decode()
            assert "Not allowed" in page and "assistant/app.css" in page  # the product's page, styled
            assert 'href="/portal/people/"' not in page  # and no People link in its navigation
        created = session.post(reverse("portal:people_user_create"), {"username": "mallory", "password": ""})
        assert created.status_code == 403
        made_group = session.post(reverse("portal:people_groups"), {"name": "sneaky"})
        assert made_group.status_code == 403
    assert not User.objects.filter(username="mallory").exists()
    assert not Group.objects.filter(name="sneaky").exists()


def test_staff_with_change_user_and_superusers_manage_people(admin: User) -> None:
    manager = UserFactory.create(is_staff=True)
    manager.user_permissions.add(Permission.objects.get(codename="change_user", content_type__app_label="auth"))
    for user in (manager, admin):
        page = _as(user).get(reverse("portal:people"))
        assert page.status_code == 200
        assert f'href="{reverse("portal:people")}"' in page.content.decode()  # the navigation link
    # Not staff: the permission alone does not open the pages.
    holder = UserFactory.create()
    holder.user_permissions.add(Permission.objects.get(codename="change_user", content_type__app_label="auth"))
    assert _as(holder).get(reverse("portal:people")).status_code == 403


def test_only_a_superuser_changes_a_superuser(admin: User) -> None:
    manager = UserFactory.create(is_staff=True)
    manager.user_permissions.add(Permission.objects.get(codename="change_user", content_type__app_label="auth"))
    session = _as(manager)
    response = session.post(reverse("portal:people_user_active", args=[admin.pk]), {"active": "0"})
    assert response.status_code == 403
    admin.refresh_from_db()
    assert admin.is_active


# --- users -----------------------------------------------------------------------


def test_an_admin_creates_a_user_who_signs_in_until_deactivated(client: Client, admin: User) -> None:
    staff = GroupFactory.create(name="staff")
    response = client.post(
        reverse("portal:people_user_create"),
        {"username": "dora", "email": "dora@example.com", "password": "a-Long-enough-pass-42", "groups": [staff.pk]},
    )
    dora = User.objects.get(username="dora")
    assert response.status_code == 302 and response["Location"] == reverse("portal:people_user", args=[dora.pk])
    assert list(dora.groups.values_list("name", flat=True)) == ["staff"]
    created = AuditEvent.objects.get(action=Action.USER_CREATED)
    assert created.actor == admin and created.details["user"] == "dora" and created.details["source"] == "portal"
    joined = AuditEvent.objects.get(action=Action.PERMISSION_GRANTED, details__user="dora")
    assert joined.details.pop("request_id")  # the portal request that made it (assistant.ops)
    assert joined.details == {"source": "portal", "group": "staff", "user": "dora", "membership": True}

    signed_in = Client()
    assert signed_in.login(username="dora", password="a-Long-enough-pass-42")
    assert signed_in.get(reverse("chat:home")).status_code == 200

    page = client.get(reverse("portal:people_user", args=[dora.pk])).content.decode()
    assert "data-confirm=" in page  # deactivating asks first
    client.post(reverse("portal:people_user_active", args=[dora.pk]), {"active": "0"})
    dora.refresh_from_db()
    assert not dora.is_active
    assert AuditEvent.objects.filter(action=Action.USER_DEACTIVATED, actor=admin, details__user="dora").count() == 1
    # Signed out on the next request, and cannot sign in again.
    assert signed_in.get(reverse("chat:home")).status_code == 302
    assert not Client().login(username="dora", password="a-Long-enough-pass-42")

    client.post(reverse("portal:people_user_active", args=[dora.pk]), {"active": "1"})
    assert Client().login(username="dora", password="a-Long-enough-pass-42")
    assert AuditEvent.objects.filter(action=Action.USER_REACTIVATED, details__source="portal").count() == 1


def test_a_new_user_without_a_password_cannot_sign_in_and_a_taken_name_is_refused(client: Client, admin: User) -> None:
    client.post(reverse("portal:people_user_create"), {"username": "ned"})
    ned = User.objects.get(username="ned")
    assert not ned.has_usable_password()
    ned.set_password("x")  # would the portal overwrite it? It must not.
    ned.save()
    refused = client.post(reverse("portal:people_user_create"), {"username": "ned", "password": "Another-pass-1234"})
    assert refused.status_code == 400 and "already exists" in refused.content.decode()
    ned.refresh_from_db()
    assert ned.check_password("x")
    weak = client.post(reverse("portal:people_user_create"), {"username": "wes", "password": "123"})
    assert weak.status_code == 400 and not User.objects.filter(username="wes").exists()


def test_nobody_deactivates_themselves(client: Client, admin: User) -> None:
    response = client.post(reverse("portal:people_user_active", args=[admin.pk]), {"active": "0"}, follow=True)
    assert "cannot deactivate yourself" in response.content.decode()
    admin.refresh_from_db()
    assert admin.is_active
    assert not AuditEvent.objects.filter(action=Action.USER_DEACTIVATED).exists()


def test_the_user_list_searches_and_pages(client: Client, admin: User) -> None:
    for n in range(60):
        UserFactory.create(username=f"clerk{n:02d}", email=f"clerk{n:02d}@example.com")
    UserFactory.create(username="zoe", email="zoe@finance.example.com")
    first = client.get(reverse("portal:people")).content.decode()
    assert "Page 1 of 2" in first
    found = client.get(reverse("portal:people"), {"q": "finance"}).content.decode()
    assert ">zoe<" in found and "clerk01" not in found


def test_the_command_line_and_the_portal_share_one_audited_path(db) -> None:
    call_command("user", "add", "carl", "--group", "auditors")
    created = AuditEvent.objects.get(action=Action.USER_CREATED)
    assert created.actor is None and created.details["source"] == "shell" and created.details["user"] == "carl"
    assert AuditEvent.objects.filter(action=Action.GROUP_CREATED, details__group="auditors").count() == 1
    assert AuditEvent.objects.filter(action=Action.PERMISSION_GRANTED, details__membership=True).count() == 1


# --- what a user reads -----------------------------------------------------------


def test_group_membership_changes_what_the_user_page_says_they_read(client: Client, admin: User, library) -> None:
    erin, bob, board = library["erin"], library["bob"], library["board"]
    erin_reads = _hidden_on_user_page(client, erin)
    assert "Handbook" in erin_reads and "minutes.txt" in erin_reads  # restricted away from her
    assert "staff (Read)" in erin_reads and "<td>Read</td>" in erin_reads  # the role as people read it
    bob_reads = _hidden_on_user_page(client, bob)
    assert "Handbook" in bob_reads and "minutes.txt" not in bob_reads  # the control reads it
    assert set(documents_visible_to(user=erin, collection=library["collection"])) == {library["public"]}

    # Put her on the board, from her page: she reads the minutes on her next question.
    client.post(reverse("portal:people_member_add"), {"group": board.pk, "user": erin.pk})
    assert "minutes.txt" not in _hidden_on_user_page(client, erin)
    assert library["minutes"] in documents_visible_to(user=erin, collection=library["collection"])
    added = AuditEvent.objects.get(action=Action.PERMISSION_GRANTED, details__user="erin", details__group="board")
    assert added.actor == admin and added.details["membership"] is True

    # And off again, from the group's page.
    client.post(reverse("portal:people_member_remove"), {"group": board.pk, "user": erin.pk})
    assert "minutes.txt" in _hidden_on_user_page(client, erin)
    assert AuditEvent.objects.filter(action=Action.PERMISSION_REVOKED, details__user="erin").count() == 1

    # Out of the reading group: the collection is gone from her page.
    client.post(reverse("portal:people_member_remove"), {"group": library["staff"].pk, "user": erin.pk})
    assert "Handbook" not in _hidden_on_user_page(client, erin)


def test_a_user_page_names_nothing_the_viewer_may_not_see(library) -> None:
    """A people manager who is not on the board learns neither the minutes' name nor their count."""
    manager = UserFactory.create(is_staff=True)
    manager.user_permissions.add(Permission.objects.get(codename="change_user", content_type__app_label="auth"))
    manager.groups.add(library["staff"])
    session = _as(manager)
    erin_reads = _hidden_on_user_page(session, library["erin"])
    assert "Handbook" in erin_reads and "minutes.txt" not in erin_reads
    bob_reads = _hidden_on_user_page(session, library["bob"])
    assert "minutes.txt" not in bob_reads
    bob_row = bob_reads.split(f'data-collection="{library["collection"].pk}"', 1)[1]
    assert "<td>1</td>" in bob_row  # bob reads 2, the viewer sees 1: only that one is counted
    # A collection the viewer may not read is counted, not named.
    secret = CollectionFactory.create(name="Mergers")
    collection_grant(collection=secret, user=library["bob"], role=Role.READ)
    bob_reads = _hidden_on_user_page(session, library["bob"])
    assert "Mergers" not in bob_reads and "1 collection you may not see yourself" in bob_reads


def test_an_employee_who_only_reads_sees_their_collections_counted_as_they_see_them(library) -> None:
    for user, total in ((library["erin"], 1), (library["bob"], 2)):
        response = _as(user).get(reverse("portal:home"))
        page = response.content.decode()
        assert "No collections you can manage" not in page
        readable = {c.name: s["total"] for c, s in response.context["readable"]}
        assert readable == {"Handbook": total}
        assert reverse("chat:new") in page  # a way to ask about it
    outsider = _as(UserFactory.create()).get(reverse("portal:home")).content.decode()
    assert "Handbook" not in outsider and "Ask an administrator for access" in outsider


# --- groups ----------------------------------------------------------------------


def test_groups_are_created_renamed_and_deleted_with_their_grants_audited(client: Client, admin: User) -> None:
    client.post(reverse("portal:people_groups"), {"name": "legal"})
    legal = Group.objects.get(name="legal")
    assert client.post(reverse("portal:people_groups"), {"name": "legal"}).status_code == 200  # refused, shown
    assert Group.objects.filter(name="legal").count() == 1
    client.post(reverse("portal:people_group", args=[legal.pk]), {"name": "legal-team"})
    legal.refresh_from_db()
    assert legal.name == "legal-team"
    renamed = AuditEvent.objects.get(action=Action.GROUP_RENAMED)
    assert renamed.details["previous"] == "legal" and renamed.details["group"] == "legal-team"

    member = UserFactory.create(username="lena")
    client.post(reverse("portal:people_member_add"), {"group": legal.pk, "username": "lena"})
    assert member.groups.filter(pk=legal.pk).exists()
    collection = CollectionFactory.create()
    collection_grant(collection=collection, group=legal, role=Role.WRITE, actor=admin)

    confirm = client.get(reverse("portal:people_group_delete", args=[legal.pk])).content.decode()
    assert "lena" in confirm and collection.name in confirm and "Delete the group" in confirm
    assert Group.objects.filter(pk=legal.pk).exists()  # the page asks; only the POST deletes
    client.post(reverse("portal:people_group_delete", args=[legal.pk]))
    assert not Group.objects.filter(pk=legal.pk).exists()
    assert not CollectionGrant.objects.filter(collection=collection).exists()
    assert AuditEvent.objects.filter(action=Action.PERMISSION_REVOKED, collection_id=collection.pk).count() == 1
    deleted = AuditEvent.objects.get(action=Action.GROUP_DELETED)
    assert deleted.details["members"] == ["lena"] and deleted.actor == admin


def test_a_group_that_restricts_a_document_cannot_be_deleted(client: Client, admin: User, library) -> None:
    board = library["board"]
    page = client.get(reverse("portal:people_group_delete", args=[board.pk])).content.decode()
    assert "cannot be deleted" in page and "Delete the group" not in page
    client.post(reverse("portal:people_group_delete", args=[board.pk]))
    assert Group.objects.filter(pk=board.pk).exists()
    # The minutes stay hidden from erin.
    assert set(documents_visible_to(user=library["erin"], collection=library["collection"])) == {library["public"]}
    assert not AuditEvent.objects.filter(action=Action.GROUP_DELETED).exists()


# --- a collection's page: name, description, grants --------------------------------


def test_a_manager_edits_the_collection_and_grants_one_user(client: Client, admin: User, library) -> None:
    collection, erin = library["collection"], library["erin"]
    url = reverse("portal:collection", args=[collection.pk])
    page = client.get(url).content.decode()
    assert 'id="grant-user"' in page and "data-confirm=" in page.split('id="access"', 1)[1]  # Revoke asks first

    client.post(
        reverse("portal:collection_edit", args=[collection.pk]), {"name": "Staff handbook", "description": "HR"}
    )
    collection.refresh_from_db()
    assert (collection.name, collection.description) == ("Staff handbook", "HR")
    edited = AuditEvent.objects.get(action=Action.COLLECTION_UPDATED)
    assert edited.details["previous"] == {"name": "Handbook", "description": ""} and edited.actor == admin

    client.post(reverse("portal:access_grant", args=[collection.pk]), {"username": "erin", "role": "write"})
    grant = CollectionGrant.objects.get(collection=collection, user=erin)
    assert grant.role == "write"
    assert AuditEvent.objects.filter(action=Action.PERMISSION_GRANTED, details__user="erin").count() == 1
    # Write still does not show her the restricted minutes (only managers and members see them).
    assert library["minutes"] not in documents_visible_to(user=erin, collection=collection)

    nobody = client.post(
        reverse("portal:access_grant", args=[collection.pk]), {"username": "ghost", "role": "read"}, follow=True
    )
    assert "No user named" in nobody.content.decode()
    both = client.post(
        reverse("portal:access_grant", args=[collection.pk]),
        {"username": "erin", "group": library["board"].pk, "role": "read"},
        follow=True,
    )
    assert "Choose a group or name a user" in both.content.decode()
    client.post(reverse("portal:access_revoke", args=[collection.pk, grant.pk]))
    assert not CollectionGrant.objects.filter(collection=collection, user=erin).exists()


def test_a_reader_cannot_edit_or_grant(library) -> None:
    session = _as(library["erin"])
    collection = library["collection"]
    edit = session.post(reverse("portal:collection_edit", args=[collection.pk]), {"name": "Mine"})
    grant = session.post(reverse("portal:access_grant", args=[collection.pk]), {"username": "erin", "role": "manage"})
    assert edit.status_code == 404 and grant.status_code == 404
    collection.refresh_from_db()
    assert collection.name == "Handbook"
    assert not CollectionGrant.objects.filter(user=library["erin"]).exists()
