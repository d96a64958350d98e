"""Confluence pages (Cloud, REST v2 and v1; Data Center, REST v1) as a connector's source.

Settings: ``base_url`` (Cloud: ``https://SITE.atlassian.net/wiki``; Data Center: the
site with its context path, ``https://wiki.example.com/confluence``), ``deployment``
(``cloud`` or ``datacenter``), ``spaces`` (space keys), ``email`` (Cloud: the account
the API token belongs to) and ``groups`` (Confluence group -> product groups,
``sources.groupmap``). Credentials: ``secret``, the Cloud API token (HTTP basic with
the email) or a Data Center personal access token (bearer).

Each current page is an item: its id is stable across renames and moves, its version
is the page's version number, its bytes are the storage format (XHTML) wrapped as an
HTML document the parsers read, its link is the page's ``webui`` link. Each of a
page's current attachments (setting ``attachments``, on by default) is an item too,
a child of the page's item (``SourceItem.parent``): versioned by the attachment's
version number, read from its download link, and read by whoever reads the page.

Who may read a page: the groups with the space's read permission, narrowed by the
page's read restriction (``restriction/byOperation/read``) and by that of every
ancestor page (Confluence lets a reader see a page only if they pass every
ancestor's read restriction too). Users named alone in a restriction, and groups the
mapping does not name, grant nothing (least permissive).
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import IO, Any
from urllib.parse import urlencode, urlsplit

from assistant.connectors.http import HttpClient, HttpError
from assistant.connectors.sources import EVERYONE, ItemError, SourceError, SourceItem
from assistant.connectors.sources.groupmap import groupmap_apply, groupmap_clean

DEPLOYMENTS = ("cloud", "datacenter")
PAGE_SIZE = 100
_KEY = re.compile(r"^[A-Za-z0-9~_-]+$")
# Macro parameters are settings, not text (a colour, a page id); their bodies stay.
_PARAMETERS = re.compile(r"<ac:parameter\b[^>]*>.*?</ac:parameter>", re.DOTALL)


def _spaces(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v for v in re.split(r"[,\s]+", value) if v]
    if not isinstance(value, list) or not value:
        raise ValueError("A Confluence connector needs --space, the key of a space to read (repeatable).")
    keys = []
    for key in value:
        if not isinstance(key, str) or not _KEY.match(key.strip()):
            raise ValueError(f"Not a Confluence space key: {key!r}")
        keys.append(key.strip())
    return sorted(set(keys))


def page_html(title: str, storage: str) -> bytes:
    """A page's storage-format body as an HTML document (the title as its heading)."""
    body = _PARAMETERS.sub("", storage)
    escaped = html.escape(title)
    document = (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>{escaped}</title></head>'
        f"<body><h1>{escaped}</h1>\n{body}\n</body></html>\n"
    )
    return document.encode("utf-8")


def _file_name(title: str, suffix: str = ".html") -> str:
    cleaned = re.sub(r'[\\/:*?"<>|\x00-\x1f]+', " ", title).strip() or "page"
    return f"{cleaned[:200]}{suffix}"


class ConfluenceSource:
    def __init__(self, settings: dict[str, Any], credentials: dict[str, str]) -> None:
        import httpx

        self.base_url = settings["base_url"].rstrip("/")
        self.cloud = settings.get("deployment", "cloud") == "cloud"
        self.spaces: list[str] = settings["spaces"]
        self.mapping: dict[str, list[str]] = settings.get("groups") or {}
        secret = credentials.get("secret", "")
        if self.cloud:
            auth: Any = httpx.BasicAuth(settings.get("email", ""), secret)
            self.http = HttpClient(base_url=self.base_url, service="Confluence", auth=auth)
        else:
            bearer = {"Authorization": f"Bearer {secret}"}
            self.http = HttpClient(base_url=self.base_url, service="Confluence", auth_headers=lambda _: bearer)
        self.attachments = settings.get("attachments", True) is not False
        self._space_access: dict[str, set[str]] = {}
        self._group_names: dict[str, str] = {}
        self._restrictions: dict[str, set[str] | None] = {}  # content id -> its read restriction, per run
        self._parents: dict[str, str] = {}  # Cloud: page id -> its parent's id, from the listing
        self._ancestors: dict[str, list[str]] = {}  # page id -> its ancestors' ids

    @staticmethod
    def clean_settings(settings: dict[str, Any]) -> dict[str, Any]:
        base_url = str(settings.get("base_url") or settings.get("url") or "").strip().rstrip("/")
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("A Confluence connector needs --url, the site's address (https://...).")
        deployment = str(settings.get("deployment") or "cloud").strip().lower().replace(" ", "")
        if deployment not in DEPLOYMENTS:
            raise ValueError("--deployment must be 'cloud' or 'datacenter'.")
        email = str(settings.get("email") or "").strip()
        if deployment == "cloud" and not email:
            raise ValueError("Confluence Cloud needs --email, the account its API token belongs to.")
        return {
            "base_url": base_url, "deployment": deployment, "spaces": _spaces(settings.get("spaces")),
            "email": email, "groups": groupmap_clean(settings.get("groups")),
            "attachments": settings.get("attachments", True) not in (False, "false", "no", "0", 0),
        }  # fmt: skip

    # --- listing -------------------------------------------------------------------

    def list_items(self) -> Iterator[SourceItem]:
        for key in self.spaces:
            try:
                pages = list(self._pages_cloud(key) if self.cloud else self._pages_datacenter(key))
                if self.attachments:
                    pages += [found for page in pages for found in self._attachments(page)]
            except HttpError as exc:
                raise SourceError(f"Cannot list the pages of the Confluence space {key}: {exc}") from None
            # A page sorts before its attachments ("ENG/1" < "ENG/1/attachments/..."): stored first.
            yield from sorted(pages, key=lambda item: item.source_id)

    def _pages_cloud(self, key: str) -> Iterator[SourceItem]:
        found = self.http.get_json("api/v2/spaces?" + urlencode({"keys": key}))
        spaces = [s for s in found.get("results", []) if s.get("key") == key]
        if not spaces:
            raise HttpError(f"no space with the key {key} (or the account may not read it)")
        space_id = str(spaces[0]["id"])
        url: str | None = f"api/v2/spaces/{space_id}/pages?" + urlencode({"limit": PAGE_SIZE, "status": "current"})
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.base_url))
        while url:
            page = self.http.get_json(url)
            base = page.get("_links", {}).get("base") or self.base_url
            for result in page.get("results", []):
                yield self._item(key, space_id, result, result.get("_links", {}).get("webui", ""), base)
            following = page.get("_links", {}).get("next")
            # v2 "next" links start at the site's root (/wiki/api/v2/...).
            url = origin + following if following and following.startswith("/") else following

    def _pages_datacenter(self, key: str) -> Iterator[SourceItem]:
        start = 0
        url: str | None = "rest/api/content?" + urlencode(
            {"spaceKey": key, "type": "page", "status": "current", "expand": "version,ancestors", "start": start,
             "limit": PAGE_SIZE}
        )  # fmt: skip
        while url:
            page = self.http.get_json(url)
            links = page.get("_links", {})
            base = links.get("base") or self.base_url
            for result in page.get("results", []):
                yield self._item(key, key, result, result.get("_links", {}).get("webui", ""), base)
            following = links.get("next")
            # v1 "next" links are relative to the site's base (with its context path).
            url = base.rstrip("/") + following if following and following.startswith("/") else following

    def _item(self, key: str, space_id: str, result: dict[str, Any], webui: str, base: str) -> SourceItem:
        title = str(result.get("title") or result["id"])
        link = base.rstrip("/") + webui if webui.startswith("/") else (webui or self.base_url)
        page_id = str(result["id"])
        if self.cloud:  # v2 names the parent; the chain is walked through the listing (``_ancestors_of``)
            self._parents[page_id] = (
                str(result.get("parentId") or "") if result.get("parentType", "page") == "page" else "?"
            )
        elif "ancestors" in result:  # v1 with expand=ancestors lists them all, the highest first
            self._ancestors[page_id] = [str(a["id"]) for a in result["ancestors"] or [] if a.get("id")]
        return SourceItem(
            source_id=f"{key}/{result['id']}", name=_file_name(title), link=link,
            version=str((result.get("version") or {}).get("number", "")),
            extra={"space": key, "space_id": space_id, "page_id": str(result["id"]), "title": title},
        )  # fmt: skip

    # --- content ---------------------------------------------------------------------

    def _attachments(self, page: SourceItem) -> Iterator[SourceItem]:
        """The page's current attachments, as items belonging to the page."""
        page_id = page.extra["page_id"]
        if self.cloud:
            url: str | None = f"api/v2/pages/{page_id}/attachments?" + urlencode(
                {"limit": PAGE_SIZE, "status": "current"}
            )
        else:
            url = f"rest/api/content/{page_id}/child/attachment?" + urlencode(
                {"expand": "version", "start": 0, "limit": PAGE_SIZE}
            )
        origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.base_url))
        while url:
            found = self.http.get_json(url)
            links = found.get("_links") or {}
            base = str(links.get("base") or self.base_url).rstrip("/")
            for result in found.get("results", []):
                own = result.get("_links") or {}
                download = str(result.get("downloadLink") or own.get("download") or "")
                webui = str(result.get("webuiLink") or own.get("webui") or "")
                if not download:
                    continue
                yield SourceItem(
                    source_id=f"{page.source_id}/attachments/{result['id']}",
                    name=_file_name(str(result.get("title") or result["id"]), suffix=""),
                    link=base + webui if webui.startswith("/") else page.link,
                    version=str((result.get("version") or {}).get("number", "")),
                    size=int(result.get("fileSize") or (result.get("extensions") or {}).get("fileSize") or 0),
                    parent=page.source_id,
                    extra={**page.extra, "download": base + download if download.startswith("/") else download,
                           "attachment": str(result.get("title") or "")},
                )  # fmt: skip
            following = links.get("next")
            if not following or not following.startswith("/"):
                url = following
            else:  # v2 "next" links start at the site's root; v1 ones at its base
                url = (origin if self.cloud else base) + following

    def open_item(self, item: SourceItem) -> AbstractContextManager[IO[bytes]]:
        if item.extra.get("download"):
            return self._download(item)
        page_id = item.extra.get("page_id") or item.source_id.rpartition("/")[2]
        try:
            if self.cloud:
                found = self.http.get_json(f"api/v2/pages/{page_id}?body-format=storage")
            else:
                found = self.http.get_json(f"rest/api/content/{page_id}?expand=body.storage,version")
        except HttpError as exc:
            raise ItemError(f"Cannot read the page {item.extra.get('title', page_id)}: {exc}") from None
        storage = ((found.get("body") or {}).get("storage") or {}).get("value", "")
        return _opened(page_html(str(found.get("title") or item.extra.get("title", "")), storage))

    @contextmanager
    def _download(self, item: SourceItem) -> Iterator[IO[bytes]]:
        try:
            with self.http.stream(item.extra["download"]) as stream:
                yield stream
        except HttpError as exc:
            raise ItemError(f"Cannot read the attachment {item.extra.get('attachment')}: {exc}") from None

    # --- who may read ------------------------------------------------------------------

    def access(self, item: SourceItem) -> list[str]:
        """The page's readers (an attachment's too): the space's, within every restriction on the way down."""
        page_id = item.extra["page_id"]
        try:
            allowed = self._space_readers(item.extra["space"], item.extra["space_id"])
            for content_id in [*self._ancestors_of(page_id), page_id]:
                restricted = self._restricted_to(content_id)
                if restricted is None or EVERYONE in restricted:
                    continue
                # Each restriction must let a reader in; a group in both is the safe reading of that.
                allowed = restricted if EVERYONE in allowed else allowed & restricted
        except HttpError as exc:
            raise ItemError(f"Cannot read who may see {item.extra.get('title')}: {exc}") from None
        return sorted(allowed)  # empty: unknown, the collection's managers only

    def _ancestors_of(self, page_id: str) -> list[str]:
        """The ids of the page's ancestors. Cloud: through the listing's parent ids, else asked."""
        if page_id in self._ancestors:
            return self._ancestors[page_id]
        if not self.cloud:  # not expanded in the listing (never left out: that would open the page)
            found = self.http.get_json(f"rest/api/content/{page_id}?expand=ancestors")
            self._ancestors[page_id] = [str(a["id"]) for a in found.get("ancestors") or [] if a.get("id")]
            return self._ancestors[page_id]
        chain: list[str] = []
        parent = self._parents.get(page_id, "?")
        while parent and parent not in chain:
            if parent == "?" or parent not in self._parents:
                # A parent that is not a listed page (a folder, another type): ask for the chain.
                found = self.http.get_json(f"api/v2/pages/{page_id}/ancestors?limit=250")
                chain = [str(a["id"]) for a in found.get("results", []) if a.get("id")]
                break
            chain.insert(0, parent)
            parent = self._parents[parent]
        self._ancestors[page_id] = chain
        return chain

    def _space_readers(self, key: str, space_id: str) -> set[str]:
        """Product groups mapped from the groups with read permission on the space (cached per run)."""
        if key not in self._space_access:
            names: list[str] = []
            if self.cloud:
                url: str | None = f"api/v2/spaces/{space_id}/permissions?limit=250"
                origin = "{0.scheme}://{0.netloc}".format(urlsplit(self.base_url))
                while url:
                    found = self.http.get_json(url)
                    for entry in found.get("results", []):
                        operation = entry.get("operation") or {}
                        principal = entry.get("principal") or {}
                        if operation.get("key") != "read" or operation.get("targetType") != "space":
                            continue
                        if principal.get("type") == "group":
                            names += [str(principal.get("id")), self._group_name(str(principal.get("id")))]
                    following = (found.get("_links") or {}).get("next")
                    url = origin + following if following and following.startswith("/") else following
            else:
                for entry in self.http.get_json(f"rest/api/space/{key}/permissions"):
                    operation = entry.get("operation") or {}
                    subject = entry.get("subject") or {}
                    if operation.get("operationKey") != "read" or operation.get("targetType") != "space":
                        continue
                    if subject.get("type") == "group":
                        names += [str(subject.get(k)) for k in ("displayName", "name", "identifier") if subject.get(k)]
            self._space_access[key] = groupmap_apply(self.mapping, names)
        return self._space_access[key]

    def _group_name(self, group_id: str) -> str:
        if group_id not in self._group_names:
            found = self.http.get_json("rest/api/group/by-id?" + urlencode({"id": group_id}))
            self._group_names[group_id] = str(found.get("name") or group_id)
        return self._group_names[group_id]

    def _restricted_to(self, page_id: str) -> set[str] | None:
        """None for a page without read restrictions, else the product groups its restriction names."""
        if page_id in self._restrictions:
            return self._restrictions[page_id]
        found = self.http.get_json(f"rest/api/content/{page_id}/restriction/byOperation/read")
        restrictions = found.get("restrictions") or {}
        users = (restrictions.get("user") or {}).get("results") or []
        groups = (restrictions.get("group") or {}).get("results") or []
        names = [str(g.get(k)) for g in groups for k in ("name", "id") if g.get(k)]
        self._restrictions[page_id] = groupmap_apply(self.mapping, names) if users or groups else None
        return self._restrictions[page_id]


@contextmanager
def _opened(data: bytes) -> Iterator[IO[bytes]]:
    yield io.BytesIO(data)
