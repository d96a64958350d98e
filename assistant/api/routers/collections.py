"""Collections and their members."""

from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.http import HttpRequest
from ninja import Query, Router, Status

from assistant.accounts import services as accounts
from assistant.accounts.models import CollectionGrant, Role
from assistant.accounts.selectors import collections_with_role, documents_visible_to, user_can_create_collections
from assistant.api.auth import WRITE, caller
from assistant.api.errors import ApiError, not_found
from assistant.api.lookups import collection_for, paginate, role_of
from assistant.api.schemas import (
    CollectionIn,
    CollectionOut,
    CollectionPage,
    CollectionPatch,
    ErrorOut,
    MemberIn,
    MemberOut,
    MemberPage,
)
from ingest import selectors, services
from ingest.models import Collection

router = Router(tags=["collections"])
ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut}
LIMIT = Query(50, ge=1, le=200)
OFFSET = Query(0, ge=0)


def _out(collections: list[Collection], roles: dict[int, str], user: Any) -> list[dict[str, Any]]:
    # Counted over the documents the caller may see, as the document list is: a
    # difference between the two would be the number of restricted documents.
    return [
        {
            "id": c.pk,
            "name": c.name,
            "description": c.description,
            "created_at": c.created_at,
            "role": roles.get(c.pk, "read"),
            "summary": selectors.collection_summary(
                collection=c, documents=documents_visible_to(user=user, collection=c)
            ),
        }
        for c in collections
    ]


def _one(request: HttpRequest, collection: Collection) -> dict[str, Any]:
    user = caller(request)
    return _out([collection], role_of(user=user, collection_ids=[collection.pk]), user)[0]


@router.get("/collections", response={200: CollectionPage, **ERRORS}, summary="Collections you may read")
def collections_list(request: HttpRequest, limit: int = LIMIT, offset: int = OFFSET) -> Any:
    user = caller(request)
    rows = collections_with_role(user=user, role=Role.READ).order_by("name", "id")

    def convert(page: list[Collection]) -> list[dict[str, Any]]:
        return _out(page, role_of(user=user, collection_ids=[c.pk for c in page]), user)

    return paginate(rows, limit=limit, offset=offset, convert=convert)


@router.post("/collections", response={201: CollectionOut, **ERRORS}, auth=WRITE, summary="Create a collection")
def collections_create(request: HttpRequest, body: CollectionIn) -> Any:
    user = caller(request)
    if not user_can_create_collections(user):
        raise ApiError(403, "forbidden", "Only staff may create collections.")
    try:
        collection = services.collection_create(name=body.name, description=body.description, user=user)
    except services.CollectionNameTaken as exc:
        raise ApiError(409, "name_taken", str(exc)) from exc
    return Status(201, _one(request, collection))


@router.get("/collections/{collection_id}", response={200: CollectionOut, **ERRORS})
def collections_get(request: HttpRequest, collection_id: int) -> Any:
    return _one(request, collection_for(user=caller(request), collection_id=collection_id))


@router.patch("/collections/{collection_id}", response={200: CollectionOut, **ERRORS}, auth=WRITE)
def collections_update(request: HttpRequest, collection_id: int, body: CollectionPatch) -> Any:
    collection = collection_for(user=caller(request), collection_id=collection_id, role=Role.MANAGE)
    try:
        services.collection_update(
            collection=collection, name=body.name, description=body.description, user=caller(request)
        )
    except services.CollectionNameTaken as exc:
        raise ApiError(409, "name_taken", str(exc)) from exc
    return _one(request, collection)


@router.delete("/collections/{collection_id}", response={204: None, **ERRORS}, auth=WRITE)
def collections_delete(request: HttpRequest, collection_id: int) -> Any:
    collection = collection_for(user=caller(request), collection_id=collection_id, role=Role.MANAGE)
    services.collection_delete(collection=collection, user=caller(request))
    return Status(204, None)


def _member(grant: CollectionGrant) -> dict[str, Any]:
    return {
        "user": grant.user.get_username() if grant.user else None,
        "group": grant.group.name if grant.group else None,
        "role": grant.role,
        "created_at": grant.created_at,
    }


@router.get("/collections/{collection_id}/members", response={200: MemberPage, **ERRORS}, summary="Who has access")
def members_list(request: HttpRequest, collection_id: int, limit: int = LIMIT, offset: int = OFFSET) -> Any:
    collection = collection_for(user=caller(request), collection_id=collection_id, role=Role.MANAGE)
    rows = collection.grants.select_related("user", "group").order_by("id")
    return paginate(rows, limit=limit, offset=offset, convert=lambda page: [_member(g) for g in page])


def _subject(user: str | None, group: str | None) -> dict[str, Any]:
    if user is not None:
        found = get_user_model().objects.filter(username=user).first()
        if found is None:
            raise not_found("user")
        return {"user": found}
    found_group = Group.objects.filter(name=group).first()
    if found_group is None:
        raise not_found("group")
    return {"group": found_group}


@router.put("/collections/{collection_id}/members", response={200: MemberOut, **ERRORS}, auth=WRITE)
def members_set(request: HttpRequest, collection_id: int, body: MemberIn) -> Any:
    """Give a user or a group a role on the collection (replacing the role they had)."""
    user = caller(request)
    collection = collection_for(user=user, collection_id=collection_id, role=Role.MANAGE)
    change = accounts.collection_grant(
        collection=collection, role=body.role, actor=user, **_subject(body.user, body.group)
    )
    return _member(change.grant)


@router.delete("/collections/{collection_id}/members", response={204: None, **ERRORS}, auth=WRITE)
def members_remove(request: HttpRequest, collection_id: int, user: str | None = None, group: str | None = None) -> Any:
    """Remove a user's or a group's grant (``?user=NAME`` or ``?group=NAME``)."""
    if (user is None) == (group is None):
        raise ApiError(422, "validation_error", "Name either ?user= or ?group=.")
    actor = caller(request)
    collection = collection_for(user=actor, collection_id=collection_id, role=Role.MANAGE)
    if not accounts.collection_revoke(collection=collection, actor=actor, **_subject(user, group)):
        raise not_found("member")
    return Status(204, None)
