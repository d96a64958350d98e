"""A WebDAV folder (Nextcloud, ownCloud, SharePoint, Apache mod_dav): files under a URL, filtered by globs.

Settings: ``url`` (the folder, e.g.
``https://cloud.example.com/remote.php/dav/files/alice/Shared``), ``username``
(the password or app token is the sealed secret), ``include``/``exclude`` and
``groups`` as for a folder (globs on the path relative to ``url``), ``timeout_s``.

The folder is walked one level at a time (``PROPFIND`` with ``Depth: 1``: many
servers refuse ``Depth: infinity``). A file's version is its ``getetag`` (else
``getlastmodified`` and ``getcontentlength``); its bytes come with a plain ``GET``
only when the sync reads a new version. A refused login or a missing folder at the
root stops the sync with a message saying so; a sub-folder that cannot be listed
does too, since half a listing would read as deletions.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import IO, Any
from urllib.parse import quote, unquote, urlsplit

from assistant.connectors.sources import EVERYONE, ItemError, SourceError, SourceItem
from assistant.connectors.sources import http as web_http
from assistant.connectors.sources.folder import _mapping, _patterns
from assistant.connectors.sources.globs import first_match, glob_matches

_PROPFIND = (
    b'<?xml version="1.0" encoding="utf-8"?>'
    b'<d:propfind xmlns:d="DAV:"><d:prop><d:resourcetype/><d:getetag/><d:getlastmodified/>'
    b"<d:getcontentlength/></d:prop></d:propfind>"
)
DAV = "{DAV:}"


class WebDavSource:
    def __init__(self, settings: dict[str, Any], credentials: dict[str, str]) -> None:
        self.settings = settings
        self.credentials = credentials
        self.url = settings["url"].rstrip("/") + "/"
        self.root_path = unquote(urlsplit(self.url).path)
        self.include = settings.get("include") or ["**"]
        self.exclude = settings.get("exclude") or []
        self.mapping = settings.get("groups") or []
        self._client: web_http.Client | None = None

    @staticmethod
    def clean_settings(settings: dict[str, Any]) -> dict[str, Any]:
        url = str(settings.get("url") or "").strip()
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("A WebDAV connector needs --url, the folder's http(s) URL.")
        if parts.password or parts.username:
            raise ValueError("Give the user with --username and the password as the secret, not in the URL.")
        return {
            "url": url.rstrip("/") + "/",
            "username": str(settings.get("username") or "").strip(),
            "timeout_s": web_http.timeout_clean(settings.get("timeout_s")),
            "include": _patterns(settings.get("include"), "include"),
            "exclude": _patterns(settings.get("exclude"), "exclude"),
            "groups": _mapping(settings.get("groups")),
        }

    @property
    def client(self) -> web_http.Client:
        if self._client is None:
            self._client = web_http.client(self.settings, self.credentials)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def _wanted(self, relative: str) -> bool:
        name = relative.rsplit("/", 1)[-1]
        if name.startswith(("~$", ".")):
            return False
        return first_match(self.include, relative) is not None and first_match(self.exclude, relative) is None

    def _url_of(self, relative: str) -> str:
        return self.url + quote(relative)

    def _propfind(self, relative: str) -> Any:
        url = self._url_of(relative) if relative else self.url
        try:
            response = self.client.request(
                "PROPFIND", url, content=_PROPFIND, headers={"Depth": "1", "Content-Type": "application/xml"}
            )
        except Exception as exc:
            raise SourceError(f"Cannot list {url} on the WebDAV server: {web_http.reason(exc)}") from None
        status = response.status_code
        if status == 401:
            raise SourceError(f"The WebDAV server refused the login for {url} (401): check --username and the secret.")
        if status == 403:
            raise SourceError(f"The WebDAV server forbids listing {url} (403).")
        if status == 404:
            raise SourceError(f"No such WebDAV folder: {url} (404).")
        if status != 207:
            raise SourceError(f"Listing {url} failed: the server answered {status} (a WebDAV folder answers 207).")
        try:
            return web_http.xml_parse(response.content)
        except Exception:
            raise SourceError(f"The answer to listing {url} is not valid WebDAV XML.") from None

    def list_items(self) -> Iterator[SourceItem]:
        folders = [""]
        while folders:
            folder = folders.pop(0)
            entries = []
            for response in self._propfind(folder).iter(f"{DAV}response"):
                href = response.findtext(f"{DAV}href") or ""
                path = unquote(urlsplit(href).path)
                if not path.startswith(self.root_path.rstrip("/")):
                    continue
                relative = path[len(self.root_path) :].strip("/") if path.startswith(self.root_path) else ""
                if not relative or relative == folder.strip("/"):
                    continue  # the folder itself
                props: dict[str, Any] = {}
                for propstat in response.iter(f"{DAV}propstat"):
                    if " 200 " not in f" {propstat.findtext(f'{DAV}status') or ''} ":
                        continue
                    for prop in propstat.iter(f"{DAV}prop"):
                        is_folder = prop.find(f"{DAV}resourcetype/{DAV}collection") is not None
                        props["folder"] = props.get("folder") or is_folder
                        for key in ("getetag", "getlastmodified", "getcontentlength"):
                            if prop.findtext(f"{DAV}{key}"):
                                props[key] = prop.findtext(f"{DAV}{key}")
                entries.append((relative, props))
            for relative, props in sorted(entries):
                name = relative.rsplit("/", 1)[-1]
                if props.get("folder"):
                    if not name.startswith("."):
                        folders.append(relative + "/")
                    continue
                if not self._wanted(relative):
                    continue
                size = int(props.get("getcontentlength") or 0)
                version = props.get("getetag") or f"{props.get('getlastmodified', '')}:{size}"
                yield SourceItem(source_id=relative, name=name, link=self._url_of(relative), version=version, size=size)

    def open_item(self, item: SourceItem) -> AbstractContextManager[IO[bytes]]:
        try:
            response = self.client.open("GET", self._url_of(item.source_id))
        except Exception as exc:
            raise ItemError(f"Cannot read {item.source_id}: {web_http.reason(exc)}") from None
        if response.status_code != 200:
            response.close()
            raise ItemError(f"Cannot read {item.source_id}: the server answered {response.status_code}.")
        stream: IO[bytes] = web_http.ResponseStream(response)  # type: ignore[assignment]
        return stream

    def access(self, item: SourceItem) -> list[str]:
        for entry in self.mapping:
            if glob_matches(entry["glob"], item.source_id):
                groups: list[str] = entry["groups"]
                return [EVERYONE] if EVERYONE in groups else sorted(set(groups))
        return []
