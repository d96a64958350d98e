"""Local stand-ins for Confluence and Microsoft Graph: the documented API, on loopback.

The vendors' services cannot run here, so these speak the parts of their published
REST APIs the connectors use, with payloads shaped like the published examples
(docs/connectors.md cites the pages): Confluence in ``fake_confluence``, and
Graph's OAuth token endpoint, drive delta (``@odata.nextLink``/``@odata.deltaLink``,
the ``deleted`` facet), item content (a 302 to a download URL) and item permissions.

Every request is recorded (method, path with query, headers) so tests can assert what
the connector asked for. ``throttle(fragment, times, retry_after)`` answers the next
matching requests 429 (or another status) with that ``Retry-After``.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit


@dataclass
class Recorded:
    method: str
    path: str  # with the query
    headers: dict[str, str]


@dataclass
class Throttle:
    fragment: str
    times: int
    retry_after: str | None
    status: int = 429


class FakeService:
    """What both fakes share: the recording, throttling and JSON answers."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.throttles: list[Throttle] = []
        self.lock = threading.Lock()
        self.base = ""  # http://127.0.0.1:PORT, set by ``serve``

    def throttle(self, fragment: str, *, times: int = 1, retry_after: str | None = "2", status: int = 429) -> None:
        self.throttles.append(Throttle(fragment, times, retry_after, status))

    def paths(self, fragment: str = "") -> list[str]:
        return [r.path for r in self.requests if fragment in r.path]

    def handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        with self.lock:
            self.requests.append(Recorded(method, handler.path, dict(handler.headers.items())))
            for throttle in self.throttles:
                if throttle.times > 0 and throttle.fragment in handler.path:
                    throttle.times -= 1
                    headers = {"Retry-After": throttle.retry_after} if throttle.retry_after is not None else {}
                    return _send(handler, throttle.status, {"error": "throttled"}, headers)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        parts = urlsplit(handler.path)
        status, payload, headers = self.answer(
            method, unquote(parts.path), parse_qs(parts.query), handler.headers, body
        )
        _send(handler, status, payload, headers)

    def answer(
        self, method: str, path: str, query: dict[str, list[str]], headers: Any, body: bytes
    ) -> tuple[int, Any, dict[str, str]]:
        raise NotImplementedError


def _send(handler: BaseHTTPRequestHandler, status: int, payload: Any, headers: dict[str, str]) -> None:
    if isinstance(payload, bytes):
        data, kind = payload, "application/octet-stream"
    else:
        data, kind = json.dumps(payload).encode(), "application/json"
    handler.send_response(status)
    handler.send_header("Content-Type", kind)
    handler.send_header("Content-Length", str(len(data)))
    for name, value in headers.items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def serve(service: FakeService) -> tuple[ThreadingHTTPServer, threading.Thread]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            service.handle(self, "GET")

        def do_POST(self) -> None:
            service.handle(self, "POST")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    service.base = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread


# --- Microsoft Graph -------------------------------------------------------------------


@dataclass
class DriveItem:
    id: str
    name: str
    content: bytes
    folder: str = ""  # the parent folder's path under the library
    groups: list[str] = field(default_factory=list)  # Entra ID group display names with read
    content_version: int = 1
    meta_version: int = 1
    changed: int = 0  # the change counter when it last changed
    deleted: bool = False


class FakeGraph(FakeService):
    """Graph v1.0 under ``/v1.0`` and the login endpoint under ``/login``, for one drive."""

    TENANT, CLIENT_ID, SECRET, DRIVE = "contoso.onmicrosoft.com", "app-1", "s3cret", "b!drive-1"

    def __init__(self, *, page_size: int = 2) -> None:
        super().__init__()
        self.page_size = page_size
        self.items: dict[str, DriveItem] = {}
        self.counter = 0
        self.sessions: dict[str, list[dict[str, Any]]] = {}
        self.tokens: set[str] = set()
        self.expired_delta_tokens: set[str] = set()
        self.group_ids = {"HR Team": "0f7e9a1c-hr", "All Staff": "2d4c8b9e-all", "Board": "7a1b2c3d-board"}

    def touch(self, item: DriveItem) -> None:
        self.counter += 1
        item.changed = self.counter

    def put(
        self, item_id: str, name: str, content: bytes, *, folder: str = "", groups: list[str] | None = None
    ) -> None:
        old = self.items.get(item_id)
        item = DriveItem(item_id, name, content, folder, list(groups if groups is not None else ["All Staff"]))
        if old is not None:
            item.content_version = old.content_version + (old.content != content)
            item.meta_version = old.meta_version + 1
        self.items[item_id] = item
        self.touch(item)

    def rename(self, item_id: str, name: str, folder: str | None = None) -> None:
        item = self.items[item_id]
        item.name, item.meta_version = name, item.meta_version + 1
        if folder is not None:
            item.folder = folder
        self.touch(item)

    def share(self, item_id: str, groups: list[str]) -> None:
        item = self.items[item_id]
        item.groups = groups
        self.touch(item)  # reported by delta with Prefer: deltashowsharingchanges

    def delete(self, item_id: str) -> None:
        item = self.items[item_id]
        item.deleted = True
        self.touch(item)

    def _drive_item(self, item: DriveItem) -> dict[str, Any]:
        parent = {"driveId": self.DRIVE, "driveType": "documentLibrary", "id": "01ROOT"}
        if item.deleted:
            return {"id": item.id, "deleted": {"state": "deleted"}, "parentReference": parent}
        where = f"{item.folder}/{item.name}".strip("/")
        return {
            "@odata.type": "#microsoft.graph.driveItem",
            "createdDateTime": "2026-11-30T10:00:00Z",
            "lastModifiedDateTime": "2026-12-01T10:00:00Z",
            "eTag": f'"{{{item.id}}},{item.meta_version}"',
            "cTag": f'"c:{{{item.id}}},{item.content_version}"',
            "id": item.id,
            "name": item.name,
            "size": len(item.content),
            "webUrl": f"{self.base}/sites/team/Shared%20Documents/{quote(where)}",
            "file": {"mimeType": "text/markdown", "hashes": {"quickXorHash": "AAAAAAAAAAAAAAAAAAAAAAAAAAA="}},
            "fileSystemInfo": {
                "createdDateTime": "2026-11-30T10:00:00Z",
                "lastModifiedDateTime": "2026-12-01T10:00:00Z",
            },
            "parentReference": parent,
        }

    def answer(self, method: str, path: str, query: dict[str, list[str]], headers: Any, body: bytes) -> Any:
        q = {k: v[0] for k, v in query.items()}
        if method == "POST" and path == f"/login/{self.TENANT}/oauth2/v2.0/token":
            form = {k: v[0] for k, v in parse_qs(body.decode()).items()}
            if (form.get("client_id"), form.get("client_secret"), form.get("grant_type")) != (
                self.CLIENT_ID,
                self.SECRET,
                "client_credentials",
            ):
                return (
                    401,
                    {"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."},
                    {},
                )
            token = f"eyJ0eXAi.{len(self.tokens) + 1}"
            self.tokens.add(token)
            return 200, {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": token}, {}
        if path.startswith("/download/"):  # the pre-authenticated download URL
            item = self.items.get(path.rsplit("/", 1)[1])
            return (200, item.content, {}) if item and not item.deleted else (404, b"", {})
        if headers.get("Authorization", "").removeprefix("Bearer ") not in self.tokens:
            return 401, {"error": {"code": "InvalidAuthenticationToken", "message": "Access token is empty."}}, {}
        drive = f"/v1.0/drives/{self.DRIVE}"
        if path == f"{drive}/root/delta":
            return self._delta(q.get("token"))
        if path.startswith(f"{drive}/items/"):
            item_id, _, what = path[len(f"{drive}/items/") :].partition("/")
            item = self.items.get(item_id)
            if item is None or item.deleted:
                return 404, {"error": {"code": "itemNotFound", "message": "The resource could not be found."}}, {}
            if what == "content":
                return 302, b"", {"Location": f"{self.base}/download/{item.id}?tempauth=abc"}
            if what == "permissions":
                return 200, self._permissions(item), {}
        return 404, {"error": {"code": "itemNotFound", "message": f"No route {path}"}}, {}

    def _delta(self, token: str | None) -> Any:
        link = f"{self.base}/v1.0/drives/{self.DRIVE}/root/delta?token="
        if token and token.startswith("page-"):
            session, _, offset = token.removeprefix("page-").partition(".")
            entries, start = self.sessions[session], int(offset)
        else:
            if token in self.expired_delta_tokens:
                return 410, {"error": {"code": "resyncRequired", "message": "Resync required."}}, {}
            since = int(token) if token else None
            if since is None:  # the whole drive: the root folder, then every live item
                entries = [{"id": "01ROOT", "name": "root", "root": {}, "folder": {"childCount": len(self.items)}}]
                entries += [
                    self._drive_item(i) for i in sorted(self.items.values(), key=lambda i: i.id) if not i.deleted
                ]
            else:
                changed = sorted((i for i in self.items.values() if i.changed > since), key=lambda i: i.changed)
                entries = [self._drive_item(i) for i in changed]
            session = str(len(self.sessions))
            self.sessions[session] = entries
            start = 0
        chunk = entries[start : start + self.page_size]
        payload: dict[str, Any] = {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(driveItem)",
            "value": chunk,
        }
        if start + self.page_size < len(entries):
            payload["@odata.nextLink"] = f"{link}page-{session}.{start + self.page_size}"
        else:
            payload["@odata.deltaLink"] = f"{link}{self.counter}"
        return 200, payload, {}

    def _permissions(self, item: DriveItem) -> dict[str, Any]:
        value: list[dict[str, Any]] = [
            {
                "id": "3",
                "roles": ["owner"],
                "grantedToV2": {
                    "siteGroup": {"displayName": "Team Site Owners", "id": "3", "loginName": "Team Site Owners"}
                },
                "grantedTo": {"user": {"displayName": "Team Site Owners"}},
                "inheritedFrom": {},
            }
        ]
        for n, group in enumerate(item.groups):
            gid = self.group_ids.get(group, f"id-{group}")
            value.append(
                {
                    "id": f"aTowIy5mfG1lbWJlcnNoaXB8{n}",
                    "roles": ["read"],
                    "grantedToV2": {"group": {"id": gid, "displayName": group, "email": f"{gid}@contoso.com"}},
                    "grantedToIdentitiesV2": [{"group": {"id": gid, "displayName": group}}],
                }
            )
        value.append(
            {
                "id": "aTowIy5mfG1lbWJlcnNoaXB8user",
                "roles": ["write"],
                "grantedToV2": {"user": {"id": "48d31887-5fad-4d73-a9f5-3c356e68a038", "displayName": "Megan Bowen"}},
            }
        )
        return {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#drives('x')/items('y')/permissions",
            "value": value,
        }
