"""Collections and members through /api/v1, with the browser's permission rules."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from assistant.accounts.models import CollectionGrant
from ingest.models import Collection
from tests.api.conftest import api_for, error_code
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_staff_creates_updates_lists_and_deletes_a_collection(staff_api) -> None:
    created = staff_api.post("/collections", {"name": "Policies", "description": "HR"})
    assert created.status_code == 201
    body = created.json()
    assert body["name"] == "Policies" and body["role"] == "manage"
    assert body["summary"]["total"] == 0
    cid = body["id"]
    taken = staff_api.post("/collections", {"name": "Policies"})
    assert taken.status_code == 409 and error_code(taken) == "name_taken"
    patched = staff_api.patch(f"/collections/{cid}", {"description": "Human resources"})
    assert patched.status_code == 200 and patched.json()["description"] == "Human resources"
    assert patched.json()["name"] == "Policies"
    assert staff_api.get(f"/collections/{cid}").json()["description"] == "Human resources"
    assert staff_api.delete(f"/collections/{cid}").status_code == 204
    assert not Collection.objects.filter(pk=cid).exists()
    assert staff_api.get(f"/collections/{cid}").status_code == 404


def test_non_staff_cannot_create_collections() -> None:
    response = api_for(UserFactory.create()).post("/collections", {"name": "Mine"})
    assert response.status_code == 403 and error_code(response) == "forbidden"


def test_list_paginates_with_total(staff_api, staff) -> None:
    for n in range(5):
        CollectionFactory.create(name=f"C{n}", created_by=staff)
    page = staff_api.get("/collections?limit=2&offset=2").json()
    assert page["total"] == 5 and page["limit"] == 2 and page["offset"] == 2
    assert [c["name"] for c in page["items"]] == ["C2", "C3"]


def test_an_unreadable_collection_answers_exactly_like_a_missing_one(collection, stranger_api) -> None:
    hidden = stranger_api.get(f"/collections/{collection.pk}")
    missing = stranger_api.get("/collections/999999")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json() == missing.json()
    for response in (
        stranger_api.patch(f"/collections/{collection.pk}", {"name": "Mine"}),
        stranger_api.delete(f"/collections/{collection.pk}"),
        stranger_api.get(f"/collections/{collection.pk}/members"),
        stranger_api.get(f"/collections/{collection.pk}/documents"),
    ):
        assert response.status_code == 404 and error_code(response) == "not_found"
    assert Collection.objects.filter(pk=collection.pk, name=collection.name).exists()


def test_a_reader_reads_but_cannot_change_or_see_members(collection, reader_api) -> None:
    got = reader_api.get(f"/collections/{collection.pk}")
    assert got.status_code == 200 and got.json()["role"] == "read"
    for response in (
        reader_api.patch(f"/collections/{collection.pk}", {"name": "Renamed"}),
        reader_api.delete(f"/collections/{collection.pk}"),
        reader_api.get(f"/collections/{collection.pk}/members"),
        reader_api.put(f"/collections/{collection.pk}/members", {"group": "x", "role": "read"}),
    ):
        assert response.status_code == 403 and error_code(response) == "forbidden"


def test_a_manager_grants_changes_and_revokes_members(collection, staff_api, reader) -> None:
    group = Group.objects.create(name="sales")
    base = f"/collections/{collection.pk}/members"
    members = staff_api.get(base).json()
    assert members["total"] == 1 and members["items"][0]["user"] == reader.username
    added = staff_api.put(base, {"group": "sales", "role": "write"})
    assert added.status_code == 200 and added.json()["group"] == "sales" and added.json()["role"] == "write"
    changed = staff_api.put(base, {"user": reader.username, "role": "manage"})
    assert changed.json()["role"] == "manage"
    assert CollectionGrant.objects.get(collection=collection, user=reader).role == "manage"
    assert staff_api.get(base).json()["total"] == 2
    assert staff_api.delete(f"{base}?group=sales").status_code == 204
    assert not CollectionGrant.objects.filter(group=group).exists()
    again = staff_api.delete(f"{base}?group=sales")
    assert again.status_code == 404
    unknown = staff_api.put(base, {"user": "nobody-here", "role": "read"})
    assert unknown.status_code == 404 and error_code(unknown) == "not_found"
    both = staff_api.put(base, {"user": reader.username, "group": "sales", "role": "read"})
    assert both.status_code == 422 and error_code(both) == "validation_error"
    neither = staff_api.delete(base)
    assert neither.status_code == 422
    # The reader, now a manager, sees the members too.
    assert api_for(reader).get(base).status_code == 200
