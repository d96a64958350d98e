"""A local stand-in for Confluence (Cloud and Data Center): the documented REST API, on loopback.

Confluence Cloud REST v2 (spaces, pages with cursor pagination and their parents, a
page's ancestors and attachments, space permissions) and v1 (restrictions by
operation, group by id), Confluence Data Center REST (content with start/limit and
``expand=ancestors``, a page's attachments, space permissions), and the attachments'
download links. docs/connectors.md cites the pages the payloads follow.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

from tests.connectors.vendor_fakes import FakeService


@dataclass
class Attachment:
    id: str
    title: str
    data: bytes
    media_type: str = "application/octet-stream"
    version: int = 1


@dataclass
class Page:
    id: str
    space: str
    title: str
    body: str
    version: int = 1
    restricted_groups: list[str] = field(default_factory=list)
    restricted_users: list[str] = field(default_factory=list)
    parent: str = ""  # the parent page's id ("": at the space's top)
    folder: str = ""  # Cloud: the id of a folder the page is in (its parent then, not a page)
    attachments: dict[str, Attachment] = field(default_factory=dict)


class FakeConfluence(FakeService):
    """Confluence Cloud (under ``/wiki``) or Data Center (under ``/confluence``)."""

    EMAIL, TOKEN, PAT = "bot@example.com", "api-token-123", "pat-456"

    def __init__(self, *, cloud: bool, page_size: int = 2) -> None:
        super().__init__()
        self.cloud = cloud
        self.page_size = page_size
        self.context = "/wiki" if cloud else "/confluence"
        self.spaces: dict[str, dict[str, Any]] = {}
        self.pages: dict[str, Page] = {}
        self.groups = {"g-1": "confluence-users", "g-2": "hr-team", "g-3": "board"}  # Cloud ids -> names
        self.folders: dict[str, list[str]] = {}  # Cloud folder id -> the groups its read restriction names

    @property
    def site(self) -> str:
        return self.base + self.context

    def add_space(self, key: str, readers: list[str]) -> None:
        self.spaces[key] = {"id": str(65536 + len(self.spaces)), "readers": readers}

    def put_page(self, page_id: str, space: str, title: str, body: str, **kwargs: Any) -> Page:
        old = self.pages.get(page_id)
        if old is not None:  # an edit keeps the page's place and attachments unless told otherwise
            kwargs = {"parent": old.parent, "attachments": old.attachments, **kwargs}
        page = Page(page_id, space, title, body, version=(old.version + 1 if old else 1), **kwargs)
        self.pages[page_id] = page
        return page

    def attach(self, page_id: str, attachment_id: str, title: str, data: bytes, media_type: str = "") -> Attachment:
        """Upload a file to a page (a new version of it when the title is already there); the page's version stays."""
        attachments = self.pages[page_id].attachments
        old = attachments.get(attachment_id)
        found = Attachment(attachment_id, title, data, media_type or "application/octet-stream",
                           version=old.version + 1 if old else 1)  # fmt: skip
        attachments[attachment_id] = found
        return found

    def _ancestors(self, page: Page) -> list[Page]:
        chain: list[Page] = []
        parent = self.pages.get(page.parent)
        while parent is not None and parent not in chain:
            chain.insert(0, parent)
            parent = self.pages.get(parent.parent)
        return chain

    def _download(self, page: Page, attachment: Attachment) -> str:
        return (
            f"/download/attachments/{page.id}/{quote(attachment.title)}?version={attachment.version}"
            "&modificationDate=1764496800000&api=v2"
        )

    def _attachment(self, page: Page, attachment: Attachment) -> dict[str, Any]:
        webui = f"/pages/viewpageattachments.action?pageId={page.id}&preview=%2F{page.id}%2F{attachment.id}"
        if self.cloud:  # GET /wiki/api/v2/pages/{id}/attachments
            return {
                "id": attachment.id, "status": "current", "title": attachment.title,
                "createdAt": "2026-11-30T10:00:00.000Z", "pageId": page.id, "mediaType": attachment.media_type,
                "mediaTypeDescription": "", "comment": "", "fileId": f"file-{attachment.id}",
                "fileSize": len(attachment.data), "webuiLink": webui, "downloadLink": self._download(page, attachment),
                "version": {**self._version(page), "number": attachment.version},
                "_links": {"webui": webui, "download": self._download(page, attachment)},
            }  # fmt: skip
        return {  # GET /rest/api/content/{id}/child/attachment
            "id": attachment.id, "type": "attachment", "status": "current", "title": attachment.title,
            "version": {**self._version(page), "number": attachment.version},
            "metadata": {"mediaType": attachment.media_type, "comment": ""},
            "extensions": {"mediaType": attachment.media_type, "fileSize": len(attachment.data)},
            "_links": {"webui": webui, "download": self._download(page, attachment),
                       "self": f"{self.site}/rest/api/content/{attachment.id}"},
        }  # fmt: skip

    def _attachments(self, page: Page, q: dict[str, str]) -> dict[str, Any]:
        attachments = sorted(page.attachments.values(), key=lambda a: a.id)
        results = [self._attachment(page, a) for a in attachments]
        if self.cloud:
            return {"results": results, "_links": {"base": self.site}}
        return {
            "results": results, "start": 0, "limit": int(q.get("limit", "25")), "size": len(results),
            "_links": {"base": self.site, "context": self.context,
                       "self": f"{self.site}/rest/api/content/{page.id}/child/attachment"},
        }  # fmt: skip

    def _file(self, parts: list[str], q: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        """``/download/attachments/{page id}/{file name}?version=N``: the attachment's bytes."""
        page = self.pages.get(parts[2])
        found = next((a for a in (page.attachments.values() if page else []) if a.title == parts[3]), None)
        if found is None or str(found.version) != q.get("version", str(found.version)):
            return 404, {"message": "No such attachment"}, {}
        return 200, found.data, {}

    def _authorized(self, headers: Any) -> bool:
        given = headers.get("Authorization", "")
        if self.cloud:
            return given == "Basic " + base64.b64encode(f"{self.EMAIL}:{self.TOKEN}".encode()).decode()
        return given == f"Bearer {self.PAT}"

    def _version(self, page: Page) -> dict[str, Any]:
        if self.cloud:
            return {
                "createdAt": "2026-11-30T10:00:00.000Z",
                "message": "",
                "number": page.version,
                "minorEdit": False,
                "authorId": "5b10ac8d82e05b22cc7d4ef5",
            }
        return {
            "by": {"type": "known", "username": "admin", "displayName": "Admin"},
            "when": "2026-11-30T10:00:00.000Z",
            "message": "",
            "number": page.version,
            "minorEdit": False,
        }

    def _page(self, page: Page, *, body: bool, ancestors: bool = False) -> dict[str, Any]:
        if self.cloud:
            space_id = self.spaces[page.space]["id"]
            found: dict[str, Any] = {
                "id": page.id,
                "status": "current",
                "title": page.title,
                "spaceId": space_id,
                "parentId": page.folder or page.parent,
                "parentType": "folder" if page.folder else "page",
                "position": 0,
                "authorId": "5b10ac8d82e05b22cc7d4ef5",
                "ownerId": "5b10ac8d82e05b22cc7d4ef5",
                "createdAt": "2026-11-30T10:00:00.000Z",
                "version": self._version(page),
                "_links": {
                    "webui": f"/spaces/{page.space}/pages/{page.id}/{quote(page.title.replace(' ', '+'))}",
                    "editui": f"/pages/resumedraft.action?draftId={page.id}",
                    "tinyui": f"/x/{page.id}",
                },
            }
            if body:
                found["body"] = {"storage": {"representation": "storage", "value": page.body}}
            return found
        found = {
            "id": page.id,
            "type": "page",
            "status": "current",
            "title": page.title,
            "version": self._version(page),
            "_links": {
                "webui": f"/pages/viewpage.action?pageId={page.id}",
                "edit": f"/pages/resumedraft.action?draftId={page.id}",
                "tinyui": f"/x/{page.id}",
                "self": f"{self.site}/rest/api/content/{page.id}",
            },
            "_expandable": {
                "space": f"/rest/api/space/{page.space}",
                "children": "/rest/api/content/{page.id}/child",
            },
        }
        if ancestors:
            found["ancestors"] = [
                {"id": a.id, "type": "page", "status": "current", "title": a.title} for a in self._ancestors(page)
            ]
        else:
            found["_expandable"]["ancestors"] = ""
        if body:
            found["body"] = {"storage": {"value": page.body, "representation": "storage"}}
        return found

    def answer(self, method: str, path: str, query: dict[str, list[str]], headers: Any, body: bytes) -> Any:
        if not path.startswith(self.context + "/"):
            return 404, {"message": "No such page"}, {}
        if not self._authorized(headers):
            return 401, {"message": "Unauthorized"}, {}
        path = path[len(self.context) :]
        q = {k: v[0] for k, v in query.items()}
        parts = path.strip("/").split("/")
        if path.startswith("/rest/api/content/") and path.endswith("/restriction/byOperation/read"):
            return 200, self._restrictions(parts[3]), {}
        if len(parts) == 4 and parts[:2] == ["download", "attachments"]:
            return self._file(parts, q)
        if self.cloud:
            return self._cloud(path, parts, q)
        return self._datacenter(path, parts, q)

    def _restrictions(self, page_id: str) -> dict[str, Any]:
        page = self.pages.get(page_id)
        groups = page.restricted_groups if page else self.folders.get(page_id, [])
        users = page.restricted_users if page else []
        ids = {name: gid for gid, name in self.groups.items()}
        group_results = [
            {"type": "group", "name": g, **({"id": ids[g]} if self.cloud and g in ids else {})} for g in groups
        ]
        user_results = [{"type": "known", "username": u, "displayName": u} for u in users]
        return {
            "operation": "read",
            "restrictions": {
                "user": {"results": user_results, "start": 0, "limit": 200, "size": len(user_results)},
                "group": {"results": group_results, "start": 0, "limit": 200, "size": len(group_results)},
            },
            "_expandable": {"content": f"/rest/api/content/{page_id}"},
            "_links": {
                "base": self.site,
                "context": self.context,
                "self": f"{self.site}/rest/api/content/{page_id}/restriction/byOperation/read",
            },
        }

    def _cloud(self, path: str, parts: list[str], q: dict[str, str]) -> Any:
        links = {"base": self.site}
        if path == "/api/v2/spaces":
            found = [
                {
                    "id": s["id"],
                    "key": k,
                    "name": f"Space {k}",
                    "type": "global",
                    "status": "current",
                    "_links": {"webui": f"/spaces/{k}"},
                }
                for k, s in self.spaces.items()
                if k in q.get("keys", "").split(",")
            ]
            return 200, {"results": found, "_links": links}, {}
        if len(parts) == 5 and parts[:3] == ["api", "v2", "spaces"] and parts[4] == "pages":
            key = next(k for k, s in self.spaces.items() if s["id"] == parts[3])
            pages = sorted((p for p in self.pages.values() if p.space == key), key=lambda p: p.id)
            start = int(q.get("cursor", "0") or 0)
            size = min(int(q.get("limit", "25")), self.page_size)
            chunk = pages[start : start + size]
            if start + size < len(pages):
                links = {
                    **links,
                    "next": f"/wiki/api/v2/spaces/{parts[3]}/pages?"
                    + urlencode({"limit": q.get("limit", "25"), "status": "current", "cursor": str(start + size)}),
                }
            return 200, {"results": [self._page(p, body=False) for p in chunk], "_links": links}, {}
        if len(parts) == 5 and parts[:3] == ["api", "v2", "spaces"] and parts[4] == "permissions":
            key = next(k for k, s in self.spaces.items() if s["id"] == parts[3])
            ids = {name: gid for gid, name in self.groups.items()}
            results = [
                {
                    "id": str(n),
                    "principal": {"type": "group", "id": ids[g]},
                    "operation": {"key": "read", "targetType": "space"},
                }
                for n, g in enumerate(self.spaces[key]["readers"])
            ]
            results.append(
                {
                    "id": "99",
                    "principal": {"type": "user", "id": "5b10ac8d82e05b22cc7d4ef5"},
                    "operation": {"key": "administer", "targetType": "space"},
                }
            )
            return 200, {"results": results, "_links": links}, {}
        if len(parts) == 5 and parts[:3] == ["api", "v2", "pages"] and parts[3] in self.pages:
            if parts[4] == "attachments":
                return 200, self._attachments(self.pages[parts[3]], q), {}
            if parts[4] == "ancestors":  # the highest first
                child = self.pages[parts[3]]
                folder = [{"id": child.folder, "type": "folder"}] if child.folder else []
                found = [{"id": a.id, "type": "page"} for a in self._ancestors(child)] + folder
                return 200, {"results": found, "_links": {"base": self.site}}, {}
        if len(parts) == 4 and parts[:3] == ["api", "v2", "pages"]:
            page = self.pages.get(parts[3])
            if page is None:
                return 404, {"errors": [{"status": 404, "code": "NOT_FOUND", "title": "Not Found"}]}, {}
            return 200, self._page(page, body=q.get("body-format") == "storage"), {}
        if path == "/rest/api/group/by-id":
            gid = q.get("id", "")
            return 200, {"type": "group", "name": self.groups[gid], "id": gid, "_links": {"self": ""}}, {}
        return 404, {"message": f"No route {path}"}, {}

    def _datacenter(self, path: str, parts: list[str], q: dict[str, str]) -> Any:
        if path == "/rest/api/content":
            key = q.get("spaceKey", "")
            pages = sorted((p for p in self.pages.values() if p.space == key), key=lambda p: p.id)
            start = int(q.get("start", "0"))
            limit = min(int(q.get("limit", "25")), self.page_size)
            chunk = pages[start : start + limit]
            links: dict[str, str] = {
                "self": f"{self.site}/rest/api/content",
                "base": self.site,
                "context": self.context,
            }
            if start + limit < len(pages):
                links["next"] = "/rest/api/content?" + urlencode(
                    {
                        "spaceKey": key,
                        "type": "page",
                        "status": "current",
                        "expand": q.get("expand", ""),
                        "limit": limit,
                        "start": start + limit,
                    }
                )
            expand = q.get("expand", "").split(",")
            return (
                200,
                {
                    "results": [self._page(p, body=False, ancestors="ancestors" in expand) for p in chunk],
                    "start": start,
                    "limit": limit,
                    "size": len(chunk),
                    "_links": links,
                },
                {},
            )
        if len(parts) == 6 and parts[:3] == ["rest", "api", "content"] and parts[4:] == ["child", "attachment"]:
            if parts[3] not in self.pages:
                return 404, {"statusCode": 404, "message": "No content found"}, {}
            return 200, self._attachments(self.pages[parts[3]], q), {}
        if len(parts) == 4 and parts[:3] == ["rest", "api", "content"]:
            page = self.pages.get(parts[3])
            if page is None:
                return 404, {"statusCode": 404, "message": "No content found"}, {}
            expand = q.get("expand", "").split(",")
            return 200, self._page(page, body="body.storage" in expand, ancestors="ancestors" in expand), {}
        if len(parts) == 5 and parts[:3] == ["rest", "api", "space"] and parts[4] == "permissions":
            key = parts[3]
            found = [
                {
                    "operation": {"targetType": "space", "operationKey": "read"},
                    "subject": {"displayName": g, "type": "group"},
                    "spaceKey": key,
                    "spaceId": 2154,
                }
                for g in self.spaces[key]["readers"]
            ]
            found.append(
                {
                    "operation": {"targetType": "space", "operationKey": "administer"},
                    "subject": {"displayName": "confluence-administrators", "type": "group"},
                    "spaceKey": key,
                    "spaceId": 2154,
                }
            )
            return 200, found, {}
        return 404, {"statusCode": 404, "message": f"No route {path}"}, {}
