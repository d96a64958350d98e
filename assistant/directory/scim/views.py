"""The SCIM 2.0 endpoints at /scim/v2/: validate, authenticate, call one service, answer.

Only a SCIM token (``manage.py directory scim-token``) opens them; a personal API
token or a browser session does not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from assistant.directory.scim import protocol, provisioning
from assistant.directory.scim.protocol import ScimError
from assistant.directory.scim.tokens import scim_token_authenticate

CONTENT_TYPE = "application/scim+json"


def _answer(body: Any, status: int = 200) -> HttpResponse:
    return JsonResponse(body, status=status, content_type=CONTENT_TYPE, safe=False)


def _base(request: HttpRequest) -> str:
    return request.build_absolute_uri("/scim/v2").rstrip("/")


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError as exc:
        raise ScimError(400, "The body is not JSON.", "invalidSyntax") from exc
    if not isinstance(body, dict):
        raise ScimError(400, "The body must be a JSON object.", "invalidSyntax")
    return body


def scim_endpoint(methods: set[str]) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    def decorate(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            header = request.headers.get("Authorization", "")
            scheme, _, credential = header.partition(" ")
            if scheme.lower() != "bearer" or scim_token_authenticate(plaintext=credential) is None:
                response = _answer(ScimError(401, "A valid SCIM bearer token is required.").document(), 401)
                response["WWW-Authenticate"] = 'Bearer realm="scim"'
                return response
            if request.method not in methods:
                return _answer(ScimError(405, f"{request.method} is not supported here.").document(), 405)
            try:
                return view(request, *args, **kwargs)
            except ScimError as error:
                return _answer(error.document(), error.status)

        return wrapped

    return decorate


def _query(request: HttpRequest) -> dict[str, Any]:
    """The query's parameters: from the URL, or from the body of a POST to ``.search``."""
    if request.method == "POST":
        body = _body(request)
        return {
            k: ",".join(v) if isinstance(v, list) else v
            for k, v in body.items()
            if k in ("filter", "startIndex", "count", "attributes", "excludedAttributes")
        }
    return {k: request.GET.get(k) for k in ("filter", "startIndex", "count", "attributes", "excludedAttributes")}


def _shown(resource: dict[str, Any], query: dict[str, Any]) -> dict[str, Any]:
    return protocol.project(resource, query.get("attributes") or "", query.get("excludedAttributes") or "")


def _listing(request: HttpRequest, rows: Any, render: Callable[[Any], dict[str, Any]], fields: dict[str, str]) -> Any:
    query = _query(request)
    found = protocol.filter_parse(str(query.get("filter") or ""), set(fields))
    if found is not None:
        lookup = fields[found.attribute]
        rows = rows.filter(**{lookup: int(found.value) if lookup == "pk" and found.value.isdigit() else found.value})
        if lookup == "pk" and not found.value.isdigit():
            rows = rows.none()
    start, count = protocol.page_parse(query.get("startIndex"), query.get("count"))
    total = rows.count()
    page = list(rows[start - 1 : start - 1 + count]) if count else []
    resources = [_shown(render(r), query) for r in page]
    return _answer(protocol.list_response(resources, total=total, start=start))


USER_FILTERS = {
    "username": "username__iexact", "externalid": "directory_account__external_id", "id": "pk",
    "emails.value": "email__iexact", "emails": "email__iexact",
}  # fmt: skip
GROUP_FILTERS = {"displayname": "name__iexact", "externalid": "directory_group__external_id", "id": "pk"}


@scim_endpoint({"GET", "POST"})
def users(request: HttpRequest) -> HttpResponse:
    base = _base(request)
    if request.method == "POST":
        user = provisioning.scim_user_create(data=_body(request))
        return _answer(provisioning.user_resource(user, base), 201)
    return _listing(request, provisioning.scim_users(), lambda u: provisioning.user_resource(u, base), USER_FILTERS)


@scim_endpoint({"POST"})
def users_search(request: HttpRequest) -> HttpResponse:
    base = _base(request)
    return _listing(request, provisioning.scim_users(), lambda u: provisioning.user_resource(u, base), USER_FILTERS)


@scim_endpoint({"POST"})
def groups_search(request: HttpRequest) -> HttpResponse:
    base = _base(request)
    return _listing(request, provisioning.scim_groups(), lambda g: provisioning.group_resource(g, base), GROUP_FILTERS)


@scim_endpoint({"POST"})
def search(request: HttpRequest) -> HttpResponse:
    """POST /.search: users, then groups (a filter on an attribute one type lacks matches none of it)."""
    base, query = _base(request), _query(request)
    text = str(query.get("filter") or "")
    resources: list[dict[str, Any]] = []
    for rows, render, fields in (
        (provisioning.scim_users(), lambda u: provisioning.user_resource(u, base), USER_FILTERS),
        (provisioning.scim_groups(), lambda g: provisioning.group_resource(g, base), GROUP_FILTERS),
    ):
        if text:
            try:
                found = protocol.filter_parse(text, set(fields))
            except ScimError:
                continue
            if found is not None:
                lookup = fields[found.attribute]
                if lookup == "pk" and not found.value.isdigit():
                    continue
                rows = rows.filter(**{lookup: int(found.value) if lookup == "pk" else found.value})
        resources += [_shown(render(r), query) for r in rows]
    start, count = protocol.page_parse(query.get("startIndex"), query.get("count"))
    page = resources[start - 1 : start - 1 + count]
    return _answer(protocol.list_response(page, total=len(resources), start=start))


@scim_endpoint({"GET", "POST", "PUT", "PATCH", "DELETE"})
def unknown(request: HttpRequest, rest: str) -> HttpResponse:
    raise ScimError(404, f"There is no SCIM resource at /scim/v2/{rest[:100]}.")


@scim_endpoint({"GET", "PUT", "PATCH", "DELETE"})
def user(request: HttpRequest, user_id: str) -> HttpResponse:
    base = _base(request)
    person = provisioning.scim_user(user_id)
    if request.method == "DELETE":
        provisioning.scim_user_delete(user=person)
        return HttpResponse(status=204)
    if request.method == "PUT":
        provisioning.scim_user_replace(user=person, data=_body(request))
    elif request.method == "PATCH":
        provisioning.scim_user_patch(user=person, operations=protocol.patch_operations(_body(request)))
    if request.method == "GET":
        return _answer(_shown(provisioning.user_resource(person, base), _query(request)))
    return _answer(provisioning.user_resource(provisioning.scim_user(user_id), base))  # as changed


@scim_endpoint({"GET", "POST"})
def groups(request: HttpRequest) -> HttpResponse:
    base = _base(request)
    if request.method == "POST":
        group = provisioning.scim_group_create(data=_body(request))
        return _answer(provisioning.group_resource(group, base), 201)
    with_members = "members" not in request.GET.get("excludedAttributes", "")
    return _listing(
        request, provisioning.scim_groups(), lambda g: provisioning.group_resource(g, base, members=with_members),
        GROUP_FILTERS,
    )  # fmt: skip


@scim_endpoint({"GET", "PUT", "PATCH", "DELETE"})
def group(request: HttpRequest, group_id: str) -> HttpResponse:
    base = _base(request)
    found = provisioning.scim_group(group_id)
    if request.method == "DELETE":
        provisioning.scim_group_delete(group=found)
        return HttpResponse(status=204)
    if request.method == "PUT":
        provisioning.scim_group_replace(group=found, data=_body(request))
    elif request.method == "PATCH":
        provisioning.scim_group_patch(group=found, operations=protocol.patch_operations(_body(request)))
    with_members = "members" not in request.GET.get("excludedAttributes", "")
    if request.method == "GET":
        return _answer(_shown(provisioning.group_resource(found, base, members=with_members), _query(request)))
    changed = provisioning.scim_group(group_id)
    return _answer(_shown(provisioning.group_resource(changed, base, members=with_members), {}))


@scim_endpoint({"GET"})
def service_provider_config(request: HttpRequest) -> HttpResponse:
    return _answer(protocol.service_provider_config(_base(request)))


@scim_endpoint({"GET"})
def resource_types(request: HttpRequest, name: str = "") -> HttpResponse:
    found = protocol.resource_types(_base(request))
    if name:
        match = [r for r in found if r["id"] == name]
        if not match:
            raise ScimError(404, f"No resource type {name}.")
        return _answer(match[0])
    return _answer(protocol.list_response(found, total=len(found), start=1))


@scim_endpoint({"GET"})
def schemas(request: HttpRequest, schema_id: str = "") -> HttpResponse:
    found = protocol.schemas(_base(request))
    if schema_id:
        match = [s for s in found if s["id"] == schema_id]
        if not match:
            raise ScimError(404, f"No schema {schema_id}.")
        return _answer(match[0])
    return _answer(protocol.list_response(found, total=len(found), start=1))
