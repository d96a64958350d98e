"""The request sequences Entra ID and Okta document for SCIM provisioning, replayed.

Each works against a collection whose restricted document the provisioned group
opens: the member who must see it, the one taken out who must not, and a control.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.core.management import call_command
from django.test import Client

from assistant.accounts.models import ApiToken, Role
from assistant.accounts.selectors import read_scope
from assistant.accounts.services import collection_grant, token_create
from assistant.audit.models import AuditEvent
from assistant.directory.models import DirectoryAccount
from assistant.directory.scim.tokens import scim_token_create, scim_token_revoke
from tests.api.conftest import Api
from tests.factories import CollectionFactory, DocumentFactory, UserFactory

pytestmark = pytest.mark.django_db
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"


class Scim:
    def __init__(self, token: str) -> None:
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"}

    def call(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        kwargs: dict[str, Any] = {"headers": self.headers}
        if body is not None:
            kwargs.update(data=json.dumps(body), content_type="application/scim+json")
        response = getattr(self.client, method)(f"/scim/v2{path}", **kwargs)
        assert response.status_code == expect, (method, path, response.status_code, response.content[:500])
        return response.json() if response.content else None


@pytest.fixture
def scim() -> Scim:
    return Scim(scim_token_create(name="idp").plaintext)


@pytest.fixture
def library():
    """Staff read the collection; the board-minutes are restricted to the group "Board" the IdP pushes."""
    collection = CollectionFactory.create(name="Library")
    restricted = DocumentFactory.create(collection=collection, name="board-minutes.txt", groups=[])
    DocumentFactory.create(collection=collection, name="handbook.txt")
    return collection, restricted


def _restrict(document, group: Group) -> None:
    from ingest.services import document_restrict

    document_restrict(document=document, groups=[group])


def _readers(collection, *resources: dict[str, Any]) -> None:
    for resource in resources:
        user = get_user_model().objects.get(pk=int(resource["id"]))
        collection_grant(collection=collection, role=Role.READ, user=user)


def _sees(user, collection, restricted) -> bool:
    user.refresh_from_db()
    return restricted.pk not in read_scope(user=user, collections=[collection]).hidden_document_ids


def _listed(user_token: str, collection) -> set[str]:
    response = Api(user_token).get(f"/collections/{collection.pk}/documents")
    assert response.status_code == 200, response.content
    return {d["name"] for d in response.json()["items"]}


def test_entra_id_sequence(scim: Scim, library) -> None:
    collection, restricted = library
    # Entra first looks the user up by userName, then creates them.
    assert scim.call("get", '/Users?filter=userName eq "alice@contoso.com"')["totalResults"] == 0
    alice = scim.call(
        "post", "/Users",
        {
            "schemas": [USER, "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": "0a21f0f2-8d2a-4f8e-bf98-7894c7a3a4a1", "userName": "alice@contoso.com", "active": True,
            "displayName": "Alice Archer",
            "name": {"formatted": "Alice Archer", "familyName": "Archer", "givenName": "Alice"},
            "emails": [{"primary": True, "type": "work", "value": "alice@contoso.com"}],
            "meta": {"resourceType": "User"}, "roles": [],
        },
        expect=201,
    )  # fmt: skip
    bob = scim.call(
        "post", "/Users",
        {"schemas": [USER], "externalId": "b0b", "userName": "bob@contoso.com", "active": True,
         "emails": [{"primary": True, "type": "work", "value": "bob@contoso.com"}]},
        expect=201,
    )  # fmt: skip
    assert scim.call("get", '/Users?filter=userName eq "alice@contoso.com"')["Resources"][0]["id"] == alice["id"]
    # Update: Entra sends Replace/Add with paths, values as strings.
    scim.call(
        "patch", f"/Users/{alice['id']}",
        {"schemas": [PATCH_OP], "Operations": [
            {"op": "Replace", "path": "name.familyName", "value": "Archer-Smith"},
            {"op": "Add", "path": "emails[type eq \"work\"].value", "value": "alice.smith@contoso.com"},
            {"op": "Replace", "path": "displayName", "value": "Alice Archer-Smith"},
        ]},
    )  # fmt: skip
    user_model = get_user_model()
    alice_user = user_model.objects.get(pk=int(alice["id"]))
    assert (alice_user.last_name, alice_user.email) == ("Archer-Smith", "alice.smith@contoso.com")
    # Group push: create, then add members with PATCH.
    assert scim.call("get", '/Groups?filter=displayName eq "Board"&excludedAttributes=members')["totalResults"] == 0
    board = scim.call(
        "post", "/Groups", {"schemas": [GROUP], "externalId": "g1", "displayName": "Board", "members": []}, expect=201
    )
    group = Group.objects.get(pk=int(board["id"]))
    _restrict(restricted, group)
    _readers(collection, alice, bob)
    scim.call(
        "patch", f"/Groups/{board['id']}",
        {"schemas": [PATCH_OP], "Operations": [
            {"op": "Add", "path": "members", "value": [{"value": alice["id"]}, {"value": bob["id"]}]},
        ]},
    )  # fmt: skip
    alice_token = token_create(user=alice_user, name="t").plaintext
    bob_user = user_model.objects.get(pk=int(bob["id"]))
    assert _listed(alice_token, collection) == {"board-minutes.txt", "handbook.txt"}
    assert _sees(bob_user, collection, restricted)
    # Entra removes a member with the value list form; bob (the control) stays.
    scim.call(
        "patch", f"/Groups/{board['id']}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "Remove", "path": "members", "value": [{"value": alice["id"]}]}]},
    )  # fmt: skip
    assert _listed(alice_token, collection) == {"handbook.txt"}
    assert _sees(bob_user, collection, restricted)
    # Disable: Replace active with the string "False". Access ends at once.
    client = Client()
    client.force_login(bob_user)
    bob_token = token_create(user=bob_user, name="t")
    scim.call(
        "patch",
        f"/Users/{bob['id']}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "Replace", "path": "active", "value": "False"}]},
    )
    bob_user.refresh_from_db()
    assert not bob_user.is_active
    assert ApiToken.objects.get(pk=bob_token.token.pk).revoked_at is not None
    assert not Session.objects.filter(session_key=client.session.session_key).exists()
    assert scim.call("get", f"/Users/{bob['id']}")["active"] is False
    # Delete: gone for the client, deactivated here.
    scim.call("delete", f"/Users/{alice['id']}", expect=204)
    scim.call("get", f"/Users/{alice['id']}", expect=404)
    alice_user.refresh_from_db()
    assert not alice_user.is_active
    assert Api(alice_token).get("/collections").status_code == 401
    # Every membership change is in the audit log with its source.
    memberships = AuditEvent.objects.filter(details__source="scim", details__membership=True)
    assert {(e.action, e.details["user"]) for e in memberships} == {
        ("permission.granted", "alice@contoso.com"), ("permission.granted", "bob@contoso.com"),
        ("permission.revoked", "alice@contoso.com"),
    }  # fmt: skip
    assert AuditEvent.objects.filter(action="user.deactivated", details__source="scim").count() == 2


def test_okta_sequence(scim: Scim, library) -> None:
    collection, restricted = library
    assert scim.call("get", '/Users?filter=userName eq "dana@example.com"&startIndex=1&count=100')["Resources"] == []
    dana = scim.call(
        "post", "/Users",
        {"schemas": [USER], "userName": "dana@example.com", "name": {"givenName": "Dana", "familyName": "Doe"},
         "emails": [{"primary": True, "value": "dana@example.com", "type": "work"}], "displayName": "Dana Doe",
         "locale": "en-US", "externalId": "00u1", "groups": [], "password": "ignored-1!", "active": True},
        expect=201,
    )  # fmt: skip
    erik = scim.call("post", "/Users", {"schemas": [USER], "userName": "erik@example.com", "active": True}, expect=201)
    # Okta updates a profile with PUT.
    scim.call(
        "put", f"/Users/{dana['id']}",
        {"schemas": [USER], "id": dana["id"], "userName": "dana@example.com",
         "name": {"givenName": "Dana", "familyName": "Dane"},
         "emails": [{"primary": True, "value": "dana@example.com", "type": "work"}], "active": True},
    )  # fmt: skip
    assert get_user_model().objects.get(pk=int(dana["id"])).last_name == "Dane"
    board = scim.call("post", "/Groups", {"schemas": [GROUP], "displayName": "Board", "members": []}, expect=201)
    group = Group.objects.get(pk=int(board["id"]))
    _restrict(restricted, group)
    _readers(collection, dana, erik)
    scim.call(
        "patch", f"/Groups/{board['id']}",
        {"schemas": [PATCH_OP], "Operations": [
            {"op": "replace", "value": {"id": board["id"], "displayName": "Board of Directors"}},
            {"op": "add", "path": "members", "value": [{"value": dana["id"], "display": "dana@example.com"},
                                                        {"value": erik["id"], "display": "erik@example.com"}]},
        ]},
    )  # fmt: skip
    group.refresh_from_db()
    assert group.name == "Board of Directors"
    users = get_user_model().objects
    dana_user, erik_user = users.get(pk=int(dana["id"])), users.get(pk=int(erik["id"]))
    assert _sees(dana_user, collection, restricted) and _sees(erik_user, collection, restricted)
    # Okta removes a member with a path filter.
    scim.call(
        "patch", f"/Groups/{board['id']}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": f'members[value eq "{dana["id"]}"]'}]},
    )  # fmt: skip
    assert not _sees(dana_user, collection, restricted)
    assert _sees(erik_user, collection, restricted)  # the control
    listed = scim.call("get", "/Groups?startIndex=1&count=1")
    assert listed["totalResults"] == 1 and listed["itemsPerPage"] == 1
    assert [m["value"] for m in listed["Resources"][0]["members"]] == [erik["id"]]
    # Okta deactivates with a path-less replace; then reactivates.
    erik_token = token_create(user=erik_user, name="t")
    scim.call(
        "patch",
        f"/Users/{erik['id']}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]},
    )
    erik_user.refresh_from_db()
    assert not erik_user.is_active
    assert Api(erik_token.plaintext).get(f"/collections/{collection.pk}/documents").status_code == 401
    assert ApiToken.objects.get(pk=erik_token.token.pk).revoked_at is not None
    scim.call(
        "patch",
        f"/Users/{erik['id']}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": True}}]},
    )
    erik_user.refresh_from_db()
    assert erik_user.is_active
    # Okta deletes the group: its members lose what it opened; a restricting group stays, emptied.
    scim.call("delete", f"/Groups/{board['id']}", expect=204)
    scim.call("get", f"/Groups/{board['id']}", expect=404)
    assert not _sees(erik_user, collection, restricted)
    assert Group.objects.filter(pk=group.pk, user__isnull=True).exists()


def test_only_a_live_scim_token_opens_the_endpoint(scim: Scim) -> None:
    user = UserFactory.create(is_superuser=True, is_staff=True)
    api_token = token_create(user=user, name="t", scope="write").plaintext
    for headers in ({}, {"Authorization": f"Bearer {api_token}"}, {"Authorization": "Bearer scim_x_y"}):
        response = Client().get("/scim/v2/Users", headers=headers)
        assert response.status_code == 401, headers
        assert response.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
    browser = Client()
    browser.force_login(user)
    assert browser.get("/scim/v2/Users").status_code == 401
    issued = scim_token_create(name="old")
    assert Client().get("/scim/v2/Users", headers={"Authorization": f"Bearer {issued.plaintext}"}).status_code == 200
    scim_token_revoke(token=issued.token)
    assert Client().get("/scim/v2/Users", headers={"Authorization": f"Bearer {issued.plaintext}"}).status_code == 401


def test_a_local_account_is_neither_listed_nor_taken_over(scim: Scim) -> None:
    local = UserFactory.create(username="carol@example.com")
    assert scim.call("get", '/Users?filter=userName eq "carol@example.com"')["totalResults"] == 0
    refused = scim.call("post", "/Users", {"schemas": [USER], "userName": "carol@example.com"}, expect=409)
    assert refused["scimType"] == "uniqueness"
    scim.call("get", f"/Users/{local.pk}", expect=404)
    scim.call(
        "patch",
        f"/Users/{local.pk}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]},
        expect=404,
    )
    local.refresh_from_db()
    assert local.is_active and not DirectoryAccount.objects.exists()
    Group.objects.create(name="Finance")
    assert (
        scim.call("post", "/Groups", {"schemas": [GROUP], "displayName": "Finance"}, expect=409)["scimType"]
        == "uniqueness"
    )
    bad = scim.call("get", '/Users?filter=title sw "x"', expect=400)
    assert bad["scimType"] == "invalidFilter"


def test_the_command_creates_and_revokes_scim_tokens(capsys) -> None:
    call_command("directory", "scim-token", "--name", "Entra")
    plaintext = capsys.readouterr().out.strip()
    assert (
        Client().get("/scim/v2/ServiceProviderConfig", headers={"Authorization": f"Bearer {plaintext}"}).status_code
        == 200
    )
    call_command("directory", "scim-token-revoke", plaintext.split("_")[1])
    assert (
        Client().get("/scim/v2/ServiceProviderConfig", headers={"Authorization": f"Bearer {plaintext}"}).status_code
        == 401
    )
    assert AuditEvent.objects.filter(action__in=["scim.token_created", "scim.token_revoked"]).count() == 2
