"""The SCIM 2.0 wire format (RFC 7643, 7644): resources, filters, PATCH paths, errors.

Pure functions over dicts; nothing here touches the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

USER = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
LIST = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
CONFIG = "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"
RESOURCE_TYPE = "urn:ietf:params:scim:schemas:core:2.0:ResourceType"
SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:Schema"
MAX_COUNT = 200


class ScimError(Exception):
    """An error the client gets as a SCIM error document."""

    def __init__(self, status: int, detail: str, scim_type: str = "") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.scim_type = scim_type

    def document(self) -> dict[str, Any]:
        body: dict[str, Any] = {"schemas": [ERROR], "status": str(self.status), "detail": self.detail}
        if self.scim_type:
            body["scimType"] = self.scim_type
        return body


@dataclass(frozen=True)
class Filter:
    attribute: str  # lower case
    value: str


_FILTER = re.compile(r'^\s*([A-Za-z][\w.:]*)\s+eq\s+"((?:[^"\\]|\\.)*)"\s*$', re.IGNORECASE)


def filter_parse(text: str, allowed: set[str]) -> Filter | None:
    """``attr eq "value"`` (the filters Entra ID and Okta send), or None for no filter."""
    if not text or not text.strip():
        return None
    match = _FILTER.match(text)
    if match is None:
        raise ScimError(400, f"Only 'attribute eq \"value\"' filters are supported, not: {text[:100]}", "invalidFilter")
    attribute = match.group(1).lower()
    if attribute not in allowed:
        raise ScimError(400, f"Filtering on '{match.group(1)}' is not supported.", "invalidFilter")
    return Filter(attribute, re.sub(r"\\(.)", r"\1", match.group(2)))


def page_parse(start_index: str | None, count: str | None) -> tuple[int, int]:
    """1-based startIndex and count, clamped as RFC 7644 3.4.2.4 says."""
    try:
        start = max(1, int(start_index or 1))
        size = min(MAX_COUNT, max(0, int(count if count not in (None, "") else MAX_COUNT)))
    except ValueError as exc:
        raise ScimError(400, "startIndex and count must be integers.", "invalidValue") from exc
    return start, size


def list_response(resources: list[dict[str, Any]], *, total: int, start: int) -> dict[str, Any]:
    return {
        "schemas": [LIST], "totalResults": total, "itemsPerPage": len(resources),
        "startIndex": start, "Resources": resources,
    }  # fmt: skip


_MEMBER_PATH = re.compile(r'^members\[\s*value\s+eq\s+"([^"]*)"\s*\]$', re.IGNORECASE)


def member_path_value(path: str) -> str | None:
    """The member id in a path like ``members[value eq "42"]``, or None."""
    match = _MEMBER_PATH.match(path.strip())
    return match.group(1) if match else None


def _names(text: str) -> set[str]:
    """Top-level attribute names of an ``attributes`` list (URN prefixes and sub-attributes dropped)."""
    return {part.strip().split(":")[-1].split(".")[0].lower() for part in text.split(",") if part.strip()}


def project(resource: dict[str, Any], attributes: str, excluded: str) -> dict[str, Any]:
    """``resource`` with only the ``attributes`` asked for, or without the ``excluded`` ones (RFC 7644 3.9)."""
    always = {"id", "schemas"}
    if attributes.strip():
        keep = _names(attributes) | always
        return {k: v for k, v in resource.items() if k.lower() in keep}
    if excluded.strip():
        drop = _names(excluded) - always
        return {k: v for k, v in resource.items() if k.lower() not in drop}
    return resource


def boolean(value: Any) -> bool:
    """Entra ID sends ``"False"`` (a string) where Okta sends ``false``."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise ScimError(400, f"Expected a boolean, got {value!r}.", "invalidValue")


def patch_operations(body: Any) -> list[tuple[str, str, Any]]:
    """The ``(op, path, value)`` of a PatchOp request, op in lower case."""
    if not isinstance(body, dict) or not isinstance(body.get("Operations"), list):
        raise ScimError(400, "A PATCH needs a PatchOp body with Operations.", "invalidSyntax")
    result = []
    for operation in body["Operations"]:
        if not isinstance(operation, dict):
            raise ScimError(400, "Each operation must be an object.", "invalidSyntax")
        op = str(operation.get("op", "")).lower()
        if op not in ("add", "replace", "remove"):
            raise ScimError(400, f"Unknown operation {operation.get('op')!r}.", "invalidSyntax")
        result.append((op, str(operation.get("path") or ""), operation.get("value")))
    return result


def service_provider_config(base: str) -> dict[str, Any]:
    return {
        "schemas": [CONFIG],
        "patch": {"supported": True},
        "bulk": {"supported": False, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": True, "maxResults": MAX_COUNT},
        "changePassword": {"supported": False},
        "sort": {"supported": False},
        "etag": {"supported": False},
        "authenticationSchemes": [
            {
                "type": "oauthbearertoken", "name": "Bearer token", "primary": True,
                "description": "A token from 'manage.py directory scim-token'.",
            }
        ],
        "meta": {"resourceType": "ServiceProviderConfig", "location": f"{base}/ServiceProviderConfig"},
    }  # fmt: skip


def resource_types(base: str) -> list[dict[str, Any]]:
    return [
        {
            "schemas": [RESOURCE_TYPE], "id": name, "name": name, "endpoint": f"/{name}s",
            "description": f"{name} account" if name == "User" else "Group", "schema": schema,
            "schemaExtensions": [],
            "meta": {"resourceType": "ResourceType", "location": f"{base}/ResourceTypes/{name}"},
        }
        for name, schema in (("User", USER), ("Group", GROUP))
    ]  # fmt: skip


def _attribute(name: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {
        "name": name, "type": kind, "multiValued": False, "description": name, "required": False,
        "caseExact": False, "mutability": "readWrite", "returned": "default", "uniqueness": "none", **extra,
    }  # fmt: skip


def schemas(base: str) -> list[dict[str, Any]]:
    sub_value = [_attribute("value"), _attribute("display", mutability="readOnly")]
    user = [
        _attribute("userName", required=True, uniqueness="server"),
        _attribute("displayName"),
        _attribute("externalId"),
        _attribute("active", "boolean"),
        _attribute("name", "complex", subAttributes=[_attribute("givenName"), _attribute("familyName"),
                                                      _attribute("formatted")]),
        _attribute("emails", "complex", multiValued=True,
                   subAttributes=[_attribute("value"), _attribute("type"), _attribute("primary", "boolean")]),
        _attribute("groups", "complex", multiValued=True, mutability="readOnly", subAttributes=sub_value),
    ]  # fmt: skip
    group = [
        _attribute("displayName", required=True, uniqueness="server"),
        _attribute("externalId"),
        _attribute("members", "complex", multiValued=True, subAttributes=sub_value),
    ]
    return [
        {"schemas": [SCHEMA], "id": USER, "name": "User", "description": "User account", "attributes": user,
         "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{USER}"}},
        {"schemas": [SCHEMA], "id": GROUP, "name": "Group", "description": "Group", "attributes": group,
         "meta": {"resourceType": "Schema", "location": f"{base}/Schemas/{GROUP}"}},
    ]  # fmt: skip
