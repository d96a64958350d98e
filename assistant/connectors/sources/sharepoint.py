"""A SharePoint Online document library or a OneDrive (Microsoft Graph) as a connector's source.

Settings: ``tenant`` (the directory's id or domain), ``drive_id`` (the library's drive;
``site_id`` is kept for the record), ``client_id`` (the app registration), ``groups``
(Entra ID or SharePoint group -> product groups, ``sources.groupmap``), and
``graph_url``/``login_url`` (defaults: Microsoft's public cloud; a national cloud, or
a test's local server, sets them). Credentials: ``secret``, the app's client secret;
a token comes from the login endpoint (OAuth 2.0 client credentials) and is fetched
again when it expires.

Changes come from the drive's delta query: the first run enumerates the drive
(``/drives/{id}/root/delta``, following ``@odata.nextLink``), and the
``@odata.deltaLink`` it ends with is the connector's cursor, so the next run asks
only for what changed since. Items with the ``deleted`` facet are deletions; an
item's id is stable across renames and moves, so those keep their document. The
version is the content tag (``cTag``): a rename or a permission change alone reads
no bytes. Sharing changes are asked for (``Prefer: deltashowsharingchanges``) so a
changed permission shows up in the delta too. A delta link the service no longer
accepts (410 Gone) starts over with a full enumeration.

Who may read an item: the groups among its permissions (``grantedToV2`` and
``grantedToIdentitiesV2``), mapped; users alone and sharing links grant nothing here
(least permissive).
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import IO, Any
from urllib.parse import quote, urlsplit

from assistant.connectors.http import HttpClient, HttpError
from assistant.connectors.sources import Changes, ItemError, SourceError, SourceItem
from assistant.connectors.sources.groupmap import groupmap_apply, groupmap_clean

GRAPH_URL = "https://graph.microsoft.com/v1.0"
LOGIN_URL = "https://login.microsoftonline.com"
SCOPE = "https://graph.microsoft.com/.default"
_ID = re.compile(r"^[A-Za-z0-9!._:,-]+$")
_READ_ROLES = {"read", "write", "owner", "sp.full control"}


def _segment(value: str) -> str:
    """An id as a path segment (drive ids start with ``b!``, which Graph takes as it is)."""
    return quote(value, safe="!")


def _url(value: Any, default: str, name: str) -> str:
    url = str(value or default).strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"'{name}' must be an http(s) address, not {url!r}.")
    return url


class SharePointSource:
    def __init__(self, settings: dict[str, Any], credentials: dict[str, str]) -> None:
        self.settings = settings
        self.drive_id: str = settings["drive_id"]
        self.mapping: dict[str, list[str]] = settings.get("groups") or {}
        self.secret = credentials.get("secret", "")
        self._token = ""
        self._token_until = 0.0
        self.http = HttpClient(base_url=settings["graph_url"], service="Microsoft Graph", auth_headers=self._auth)
        self.login = HttpClient(base_url=settings["login_url"], service="the Microsoft login")

    @staticmethod
    def clean_settings(settings: dict[str, Any]) -> dict[str, Any]:
        cleaned: dict[str, Any] = {}
        for name, flag in (("tenant", "--tenant"), ("drive_id", "--drive"), ("client_id", "--client-id")):
            value = str(settings.get(name) or "").strip()
            if not value or not _ID.match(value):
                raise ValueError(f"A SharePoint connector needs {flag} (letters, digits and . _ - ! : , only).")
            cleaned[name] = value
        site = str(settings.get("site_id") or "").strip()
        if site and not _ID.match(site):
            raise ValueError("--site is a site id (letters, digits and . _ - ! : , only).")
        cleaned["site_id"] = site
        cleaned["graph_url"] = _url(settings.get("graph_url"), GRAPH_URL, "graph_url")
        cleaned["login_url"] = _url(settings.get("login_url"), LOGIN_URL, "login_url")
        cleaned["groups"] = groupmap_clean(settings.get("groups"))
        return cleaned

    def _auth(self, refresh: bool) -> dict[str, str]:
        if refresh or not self._token or time.monotonic() >= self._token_until:
            try:
                found = self.login.request(
                    "POST", f"{quote(self.settings['tenant'])}/oauth2/v2.0/token",
                    data={"client_id": self.settings["client_id"], "client_secret": self.secret, "scope": SCOPE,
                          "grant_type": "client_credentials"},
                ).json()  # fmt: skip
            except (HttpError, ValueError) as exc:
                raise SourceError(f"The Microsoft login refused the app's credentials: {exc}") from None
            self._token = str(found.get("access_token") or "")
            if not self._token:
                raise SourceError("The Microsoft login answered without a token.")
            self._token_until = time.monotonic() + max(60.0, float(found.get("expires_in") or 3600) - 120)
        return {"Authorization": f"Bearer {self._token}"}

    # --- listing -----------------------------------------------------------------------

    def list_items(self) -> Iterator[SourceItem]:
        yield from self.list_changes("").items

    def list_changes(self, cursor: str) -> Changes:
        try:
            return self._delta(cursor)
        except HttpError as exc:
            if cursor and exc.status == 410:  # the delta link expired: enumerate again
                try:
                    return self._delta("")
                except HttpError as again:
                    exc = again
            raise SourceError(f"Cannot list the drive's changes: {exc}") from None

    def _delta(self, cursor: str) -> Changes:
        url: str | None = cursor or f"drives/{_segment(self.drive_id)}/root/delta"
        seen: dict[str, SourceItem | None] = {}  # id -> item, None: deleted (the last word counts)
        delta = ""
        while url:
            page = self.http.get_json(url, headers={"Prefer": "deltashowremovedasdeleted, deltashowsharingchanges"})
            for entry in page.get("value", []):
                item_id = str(entry.get("id") or "")
                if not item_id:
                    continue
                if entry.get("deleted") is not None:
                    seen[item_id] = None
                elif entry.get("file") is not None:
                    seen[item_id] = SourceItem(
                        source_id=item_id, name=str(entry.get("name") or item_id),
                        link=str(entry.get("webUrl") or ""), version=str(entry.get("cTag") or entry.get("eTag") or ""),
                        size=int(entry.get("size") or 0),
                    )  # fmt: skip
            url = page.get("@odata.nextLink")
            delta = page.get("@odata.deltaLink") or delta
        if not delta:
            raise HttpError("the delta query ended without a delta link")
        self.http.url(delta)  # a link to another site is refused now, not at the next run
        items = sorted((i for i in seen.values() if i is not None), key=lambda i: i.source_id)
        deleted = sorted(k for k, v in seen.items() if v is None)
        return Changes(items=items, cursor=delta, full=not cursor, deleted=deleted)

    # --- content -------------------------------------------------------------------------

    def open_item(self, item: SourceItem) -> AbstractContextManager[IO[bytes]]:
        # Graph answers 302 to a pre-authenticated download URL; the client follows it
        # (and drops the Authorization header on the way to another host).
        return _guarded(
            self.http.stream(f"drives/{_segment(self.drive_id)}/items/{_segment(item.source_id)}/content"), item
        )

    def access(self, item: SourceItem) -> list[str]:
        names: list[str] = []
        url: str | None = f"drives/{_segment(self.drive_id)}/items/{_segment(item.source_id)}/permissions"
        try:
            while url:
                page = self.http.get_json(url)
                for permission in page.get("value", []):
                    if not _READ_ROLES.intersection(r.lower() for r in permission.get("roles", [])):
                        continue
                    identities = [permission.get("grantedToV2") or {}, *(permission.get("grantedToIdentitiesV2") or [])]
                    for identity in identities:
                        for kind in ("group", "siteGroup"):
                            group = identity.get(kind) or {}
                            names += [str(group[k]) for k in ("displayName", "id", "loginName") if group.get(k)]
                url = page.get("@odata.nextLink")
        except HttpError as exc:
            raise ItemError(f"Cannot read who may see {item.name}: {exc}") from None
        return sorted(groupmap_apply(self.mapping, names))


class _guarded(AbstractContextManager[IO[bytes]]):
    """The stream of an item's content, with a failed request as that item's ``ItemError``."""

    def __init__(self, inner: AbstractContextManager[IO[bytes]], item: SourceItem) -> None:
        self.inner, self.item = inner, item

    def __enter__(self) -> IO[bytes]:
        try:
            return self.inner.__enter__()
        except HttpError as exc:
            raise ItemError(f"Cannot read {self.item.name}: {exc}") from None

    def __exit__(self, *exc: Any) -> Any:
        return self.inner.__exit__(*exc)
