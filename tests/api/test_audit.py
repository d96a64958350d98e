"""GET /api/v1/audit/events: the caller's own trail, never anyone else's."""

from __future__ import annotations

import pytest

from assistant.audit.models import AuditEvent
from tests.api.conftest import api_for
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_caller_sees_own_events_newest_first_and_nobody_elses() -> None:
    alice, bob = UserFactory.create(is_staff=True), UserFactory.create(is_staff=True)
    alice_api, bob_api = api_for(alice), api_for(bob)
    assert alice_api.post("/collections", {"name": "Alice's"}).status_code == 201
    assert bob_api.post("/collections", {"name": "Bob's secret plans"}).status_code == 201

    body = alice_api.get("/audit/events").json()
    actions = [e["action"] for e in body["items"]]
    # Her token's creation came first, the collection after: newest first.
    assert actions == ["collection.created", "token.created"]
    assert body["total"] == 2
    assert all("Bob" not in e["collection_name"] for e in body["items"])
    assert body["items"][0]["collection_name"] == "Alice's"

    only = alice_api.get("/audit/events", data={"action": "token.created"}).json()
    assert [e["action"] for e in only["items"]] == ["token.created"]
    assert bob_api.get("/audit/events").json()["total"] == 2


def test_a_refused_token_is_recorded_against_its_owner() -> None:
    alice = UserFactory.create()
    api = api_for(alice)
    header = api.headers["Authorization"]
    prefix = header.split("_")[1]
    forged = header[:-1] + ("B" if header[-1] == "A" else "A")
    assert api.client.get("/api/v1/collections", headers={"Authorization": forged}).status_code == 401
    denied = AuditEvent.objects.filter(action="token.denied", actor=alice)
    assert denied.count() == 1
    assert denied.get().details["prefix"] == prefix
    assert denied.get().details["reason"] == "wrong secret"
