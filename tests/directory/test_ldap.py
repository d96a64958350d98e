"""Sign-in and sync against a real OpenLDAP (Debian's slapd) on loopback.

The directory: alice, dave and hank are directors; the directors group is a member
of the board group (nesting); everyone is staff. A document restricted to the
product group "ldap:board" is read by directors only, through nesting.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.core.management import CommandError, call_command
from django.test import Client

from assistant.accounts.models import ApiToken, Role
from assistant.accounts.selectors import read_scope
from assistant.accounts.services import collection_grant, token_create
from assistant.audit.models import AuditEvent
from assistant.directory.models import DirectoryAccount, DirectoryGroup, Source
from tests.api.conftest import Api
from tests.factories import CollectionFactory, DocumentFactory, UserFactory
from tests.support import slapd as slapd_support
from tests.support.slapd import READER_DN, READER_PASSWORD, SUFFIX, Slapd

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.once,  # its own slapd, no pass-specific settings
    pytest.mark.skipif(bool(slapd_support.available()), reason=slapd_support.available() or "slapd"),
]

PEOPLE = ("alice", "dave", "hank", "erin", "frank")


def _person(uid: str) -> str:
    return f"""
dn: uid={uid},ou=people,{SUFFIX}
objectClass: inetOrgPerson
uid: {uid}
cn: {uid.title()} Example
givenName: {uid.title()}
sn: Example
mail: {uid}@example.org
userPassword: {uid}-directory-pass
"""


def _group(cn: str, members: list[str]) -> str:
    lines = "\n".join(f"member: {m}" for m in members)
    return f"""
dn: cn={cn},ou=groups,{SUFFIX}
objectClass: groupOfNames
cn: {cn}
{lines}
"""


def _uid(uid: str) -> str:
    return f"uid={uid},ou=people,{SUFFIX}"


LDIF = "\n".join(
    [
        f"""dn: {SUFFIX}
objectClass: dcObject
objectClass: organization
dc: example
o: Example

dn: ou=people,{SUFFIX}
objectClass: organizationalUnit
ou: people

dn: ou=groups,{SUFFIX}
objectClass: organizationalUnit
ou: groups

dn: {READER_DN}
objectClass: organizationalRole
objectClass: simpleSecurityObject
cn: reader
userPassword: {READER_PASSWORD}
""",
        *(_person(uid) for uid in PEOPLE),
        _group("directors", [_uid("alice"), _uid("dave"), _uid("hank"), _uid("erin")]),
        _group("board", [f"cn=directors,ou=groups,{SUFFIX}"]),
        _group("staff", [_uid(uid) for uid in PEOPLE]),
    ]
)


@pytest.fixture(scope="module")
def slapd():
    server = Slapd(LDIF)
    yield server
    server.stop()


@pytest.fixture
def directory(settings, slapd: Slapd) -> Slapd:
    settings.LDAP_SERVER_URI = slapd.uri
    settings.LDAP_ENABLED = True
    settings.LDAP_BIND_DN = READER_DN
    settings.LDAP_BIND_PASSWORD = READER_PASSWORD
    settings.LDAP_USER_SEARCH_BASE = f"ou=people,{SUFFIX}"
    settings.LDAP_GROUP_SEARCH_BASE = f"ou=groups,{SUFFIX}"
    settings.LDAP_USER_DN_TEMPLATE = ""
    settings.LDAP_GROUP_MAP = {}
    settings.LDAP_GROUP_PREFIX = "ldap:"
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "assistant.directory.backends.DirectoryBackend",
    ]
    return slapd


@pytest.fixture
def library(directory):
    """A collection all staff read, with a document restricted to the board (made before anyone signs in)."""
    board = Group.objects.create(name="ldap:board")
    staff = Group.objects.create(name="ldap:staff")
    collection = CollectionFactory.create(name="Library")
    collection_grant(collection=collection, role=Role.READ, group=staff)
    restricted = DocumentFactory.create(collection=collection, name="board-minutes.txt", groups=[board])
    DocumentFactory.create(collection=collection, name="handbook.txt")
    return collection, restricted


def sign_in(username: str, password: str | None = None) -> tuple[Client, Any]:
    client = Client()
    response = client.post(
        "/accounts/login/", {"username": username, "password": password or f"{username}-directory-pass"}
    )
    assert response.status_code == 302, response.content.decode()[:500]
    return client, get_user_model().objects.get(username=username)


def listed(api: Api, collection) -> set[str]:
    response = api.get(f"/collections/{collection.pk}/documents")
    assert response.status_code == 200, response.content
    return {d["name"] for d in response.json()["items"]}


def sees_restricted(user, collection, restricted) -> bool:
    user.refresh_from_db()
    return restricted.pk not in read_scope(user=user, collections=[collection]).hidden_document_ids


@pytest.mark.parametrize("mode", ["search-then-bind", "dn-template"])
def test_sign_in_through_the_login_form_maps_profile_and_nested_groups(settings, directory, mode) -> None:
    if mode == "dn-template":
        settings.LDAP_USER_DN_TEMPLATE = f"uid={{username}},ou=people,{SUFFIX}"
    client, alice = sign_in("alice")
    assert client.get("/account/tokens/").status_code == 200  # the session is alice's
    assert (alice.email, alice.first_name, alice.last_name) == ("alice@example.org", "Alice", "Example")
    assert not alice.has_usable_password()
    account = DirectoryAccount.objects.get(user=alice)
    assert account.source == Source.LDAP and account.dn == _uid("alice") and account.last_synced_at
    assert len(account.external_id) == 36  # the entryUUID, not the name
    # board comes only through directors: the nested group is resolved.
    assert set(alice.groups.values_list("name", flat=True)) == {"ldap:board", "ldap:directors", "ldap:staff"}
    assert set(DirectoryGroup.objects.values_list("source", flat=True)) == {Source.LDAP}
    granted = AuditEvent.objects.filter(action=AuditEvent.Action.PERMISSION_GRANTED, details__source="ldap")
    assert {e.details["group"] for e in granted} == {"ldap:board", "ldap:directors", "ldap:staff"}
    # The second sign-in is the same account.
    sign_in("alice")
    assert get_user_model().objects.filter(username="alice").count() == 1


def test_wrong_empty_and_forged_credentials_are_refused(directory) -> None:
    for username, password in (
        ("alice", "wrong"), ("alice", ""), ("nobody", "x"), ("*", "alice-directory-pass"),
        ("alice)(uid=*", "alice-directory-pass"),
    ):  # fmt: skip
        response = Client().post("/accounts/login/", {"username": username, "password": password})
        assert response.status_code == 200, (username, password)  # the form again, with its error
    assert not DirectoryAccount.objects.exists()
    assert not get_user_model().objects.exists()


def test_nested_membership_grants_the_restricted_document(library) -> None:
    collection, restricted = library
    _, alice = sign_in("alice")
    _, frank = sign_in("frank")  # staff, not a director: the control who must not see it
    assert sees_restricted(alice, collection, restricted)
    assert not sees_restricted(frank, collection, restricted)
    alice_api = Api(token_create(user=alice, name="t").plaintext)
    frank_api = Api(token_create(user=frank, name="t").plaintext)
    assert listed(alice_api, collection) == {"board-minutes.txt", "handbook.txt"}
    assert listed(frank_api, collection) == {"handbook.txt"}


def test_removed_from_a_group_in_the_directory_loses_the_document_at_the_next_sync(library, directory) -> None:
    collection, restricted = library
    _, hank = sign_in("hank")
    _, dave = sign_in("dave")  # the control: stays a director
    hank_api = Api(token_create(user=hank, name="t").plaintext)
    dave_api = Api(token_create(user=dave, name="t").plaintext)
    assert "board-minutes.txt" in listed(hank_api, collection)
    directory.modify(
        f"dn: cn=directors,ou=groups,{SUFFIX}\nchangetype: modify\ndelete: member\nmember: {_uid('hank')}\n"
    )
    call_command("directory", "sync")
    assert not sees_restricted(hank, collection, restricted)
    assert listed(hank_api, collection) == {"handbook.txt"}  # the same token, still valid, no longer sees it
    assert sees_restricted(dave, collection, restricted)
    assert listed(dave_api, collection) == {"board-minutes.txt", "handbook.txt"}
    hank.refresh_from_db()
    assert hank.is_active and set(hank.groups.values_list("name", flat=True)) == {"ldap:staff"}
    revoked = AuditEvent.objects.filter(action=AuditEvent.Action.PERMISSION_REVOKED, details__user="hank")
    assert {(e.details["group"], e.details["source"]) for e in revoked} == {
        ("ldap:board", "ldap"), ("ldap:directors", "ldap"),
    }  # fmt: skip


def test_deleted_from_the_directory_is_deactivated_with_sessions_and_tokens(library, directory) -> None:
    collection, _ = library
    client, erin = sign_in("erin")
    token = token_create(user=erin, name="t")
    assert "board-minutes.txt" in listed(Api(token.plaintext), collection)
    assert Session.objects.count() == 1
    directory.modify(f"dn: {_uid('erin')}\nchangetype: delete\n")
    call_command("directory", "sync")
    erin.refresh_from_db()
    assert not erin.is_active
    assert ApiToken.objects.get(pk=token.token.pk).revoked_at is not None
    assert Session.objects.count() == 0
    assert Api(token.plaintext).get(f"/collections/{collection.pk}/documents").status_code == 401
    assert client.get("/account/tokens/").status_code == 302  # back to the sign-in page
    event = AuditEvent.objects.get(action=AuditEvent.Action.USER_DEACTIVATED, details__user="erin")
    assert event.details["source"] == "ldap" and event.details["tokens_revoked"] == 1
    assert not erin.groups.exists()


def test_a_local_account_of_the_same_name_is_never_taken_over(directory) -> None:
    frank = UserFactory.create(username="frank")
    frank.set_password("frank-local-pass-42")
    frank.save()
    refused = Client().post("/accounts/login/", {"username": "frank", "password": "frank-directory-pass"})
    assert refused.status_code == 200
    assert not DirectoryAccount.objects.exists()
    assert not frank.groups.exists()
    assert AuditEvent.objects.filter(action=AuditEvent.Action.DIRECTORY_REFUSED, details__user="frank").exists()
    sign_in("frank", "frank-local-pass-42")  # the local password still works
    assert not DirectoryAccount.objects.exists()


def test_an_unreachable_directory_changes_nothing(settings, directory) -> None:
    _, alice = sign_in("alice")
    settings.LDAP_SERVER_URI = "ldap://127.0.0.1:1"
    settings.LDAP_TIMEOUT = 2
    with pytest.raises(CommandError, match="nothing was changed"):
        call_command("directory", "sync")
    alice.refresh_from_db()
    assert alice.is_active and alice.groups.count() == 3


def test_an_administrators_deactivation_stands_against_the_directory(directory) -> None:
    from assistant.accounts.services import user_set_active

    _, dave = sign_in("dave")
    user_set_active(user=dave, active=False)
    refused = Client().post("/accounts/login/", {"username": "dave", "password": "dave-directory-pass"})
    assert refused.status_code == 200
    call_command("directory", "sync")
    dave.refresh_from_db()
    assert not dave.is_active
    assert AuditEvent.objects.filter(action=AuditEvent.Action.DIRECTORY_REFUSED, details__user="dave").exists()
