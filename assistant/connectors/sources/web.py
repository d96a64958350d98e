"""An intranet site: pages found from start URLs or a sitemap, and the documents they link to.

Settings: ``start_urls`` and/or ``sitemap`` (its URLs are start pages too),
``depth`` (link hops followed from a start page; default 2), ``include`` and
``exclude`` (globs on the URL's path, ``connectors.sources.globs``), ``groups``
(the same glob -> groups mapping as a folder, on the path), ``max_pages`` (items
listed at most; default 1000) and ``timeout_s`` (per request). ``username`` with
the sealed secret logs in with basic auth; the secret alone is a bearer token.

What is read, and how politely:

* only the sites (host and port) of the start URLs and the sitemap; a link
  elsewhere is never requested;
* ``robots.txt`` is honoured for every URL before it is requested (for the
  product's User-Agent); a page's ``<meta name="robots">`` too: ``noindex`` is
  not ingested, ``nofollow`` is not followed;
* every request is conditional once an item is known: its ETag and
  Last-Modified come back as ``If-None-Match`` / ``If-Modified-Since``, and a 304
  means unchanged, nothing transferred. What a 304 page linked to is remembered
  (``recall``), so an unchanged site costs one small request per item;
* linked documents (PDF, Office, text ...) are asked for with ``HEAD`` while
  listing; their bytes travel only when the sync reads a new version.

A page becomes a document as its main content only (``html_main``): the version
is its ETag (else Last-Modified, else the hash of that content). A start page
that cannot be read stops the sync (nothing is deleted); a known page that fails
for a while (a timeout, a 500) stays as it was, and only a 404 or 410, a page no
longer linked, or a robots.txt that now forbids it removes it.
"""

from __future__ import annotations

import hashlib
import io
import logging
import tempfile
from collections import deque
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, Any
from urllib.parse import unquote, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

from assistant.connectors.sources import EVERYONE, ItemError, SourceError, SourceItem
from assistant.connectors.sources import http as web_http
from assistant.connectors.sources.folder import _mapping, _patterns
from assistant.connectors.sources.globs import first_match, glob_matches
from assistant.connectors.sources.html_main import page_read

logger = logging.getLogger(__name__)

# Links to these are documents (fetched as they are), not pages to read links from.
DOCUMENT_SUFFIXES = (
    ".pdf", ".docx", ".doc", ".pptx", ".ppt", ".xlsx", ".xls", ".odt", ".ods", ".odp", ".rtf", ".txt", ".md",
    ".csv", ".eml", ".msg", ".epub", ".zip",
)  # fmt: skip
_PAGE_TYPES = ("text/html", "application/xhtml+xml")
_MAX_PAGE_BYTES = 5 * 1024 * 1024
_REDIRECTS = ("301", "302", "303", "307", "308")


def url_normal(url: str) -> str:
    """One spelling per URL: no fragment, lower-case scheme and host, no default port, ``/`` for an empty path."""
    parts = urlsplit(url.strip())
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    port = parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def _site(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _relative(url: str) -> str:
    parts = urlsplit(url)
    path = unquote(parts.path).lstrip("/")
    return f"{path}?{parts.query}" if parts.query else path


def _http_url(value: Any, name: str) -> str:
    url = str(value or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{name} must be an http(s) URL, not '{url}'.")
    if parts.password:
        raise ValueError(f"{name} must not carry a password; store it as the connector's secret.")
    return url_normal(url)


def _validators(response: Any) -> dict[str, str]:
    found = {}
    if response.headers.get("etag"):
        found["etag"] = response.headers["etag"]
    if response.headers.get("last-modified"):
        found["modified"] = response.headers["last-modified"]
    return found


@dataclass
class _Fetched:
    """What one request says about a URL."""

    status: str  # "new" (a body came), "same" (304), "gone", "failed", "moved", "skip"
    memo: dict[str, Any] = field(default_factory=dict)
    body: Any = None  # bytes of a page's main content, or a spooled file of a document
    location: str = ""
    error: str = ""


class WebSource:
    def __init__(self, settings: dict[str, Any], credentials: dict[str, str]) -> None:
        self.settings = settings
        self.credentials = credentials
        self.start_urls: list[str] = list(settings.get("start_urls") or [])
        self.sitemap: str = settings.get("sitemap") or ""
        self.depth = int(settings.get("depth", 2))
        self.max_pages = int(settings.get("max_pages") or 1000)
        self.include = settings.get("include") or ["**"]
        self.exclude = settings.get("exclude") or []
        self.mapping = settings.get("groups") or []
        self.sites = {_site(u) for u in [*self.start_urls, *([self.sitemap] if self.sitemap else [])]}
        self.memos: dict[str, dict[str, Any]] = {}
        self.bodies: dict[str, Any] = {}
        self.robots: dict[str, RobotFileParser] = {}
        self._client: web_http.Client | None = None

    @staticmethod
    def clean_settings(settings: dict[str, Any]) -> dict[str, Any]:
        starts = settings.get("start_urls") or []
        if isinstance(starts, str):
            starts = [starts]
        start_urls = [_http_url(u, "A start URL") for u in starts if str(u).strip()]
        sitemap = _http_url(settings["sitemap"], "The sitemap") if settings.get("sitemap") else ""
        if not start_urls and not sitemap:
            raise ValueError("A web connector needs --url (a start page, repeatable) or --sitemap.")
        try:
            raw_depth = settings.get("depth")
            depth = 2 if raw_depth in (None, "") else int(raw_depth)
            max_pages = int(settings.get("max_pages") or 1000)
        except (TypeError, ValueError):
            raise ValueError("--depth and --max-pages must be whole numbers.") from None
        if not 0 <= depth <= 20:
            raise ValueError("--depth must be between 0 and 20 link hops.")
        if not 1 <= max_pages <= 100_000:
            raise ValueError("--max-pages must be between 1 and 100000.")
        return {
            "start_urls": start_urls, "sitemap": sitemap, "depth": depth, "max_pages": max_pages,
            "timeout_s": web_http.timeout_clean(settings.get("timeout_s")),
            "username": str(settings.get("username") or "").strip(),
            "include": _patterns(settings.get("include"), "include"),
            "exclude": _patterns(settings.get("exclude"), "exclude"),
            "groups": _mapping(settings.get("groups")),
        }  # fmt: skip

    @property
    def client(self) -> web_http.Client:
        if self._client is None:
            self._client = web_http.client(self.settings, self.credentials)
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def recall(self, memos: dict[str, dict[str, Any]]) -> None:
        """What the last run learnt about each item (validators, a page's links)."""
        self.memos = dict(memos)

    # -- What may be requested -------------------------------------------------

    def _same_site(self, url: str) -> bool:
        return urlsplit(url).scheme in ("http", "https") and _site(url) in self.sites

    def _wanted(self, url: str) -> bool:
        relative = _relative(url)
        return first_match(self.include, relative) is not None and first_match(self.exclude, relative) is None

    def _robots(self, url: str) -> RobotFileParser:
        site = _site(url)
        if site not in self.robots:
            parser = RobotFileParser()
            try:
                response = self.client.request("GET", f"{site}/robots.txt")
            except Exception as exc:
                raise SourceError(f"Cannot read {site}/robots.txt: {exc}") from None
            if response.status_code == 401:
                raise SourceError(f"{site} refused the login (401): check --username and the secret.")
            if response.status_code == 403:  # as urllib.robotparser reads it: nothing may be read
                parser.parse(["User-agent: *", "Disallow: /"])
            elif response.status_code >= 500:
                raise SourceError(f"{site}/robots.txt answered {response.status_code}; the site is not read now.")
            elif response.status_code < 400:
                parser.parse(response.text.splitlines())
            else:  # none: everything is allowed
                parser.parse([])
            self.robots[site] = parser
        return self.robots[site]

    def _allowed(self, url: str) -> bool:
        return self._robots(url).can_fetch(web_http.USER_AGENT, url)

    # -- Listing ------------------------------------------------------------------

    def _sitemap_urls(self) -> list[str]:
        found: list[str] = []
        todo, done = deque([self.sitemap]), set[str]()
        while todo and len(done) < 50:
            url = todo.popleft()
            if url in done or not self._same_site(url) or not self._allowed(url):
                continue
            done.add(url)
            try:
                response = self.client.request("GET", url)
            except Exception as exc:
                raise SourceError(f"Cannot read the sitemap {url}: {exc}") from None
            if response.status_code != 200:
                raise SourceError(f"The sitemap {url} answered {response.status_code}.")
            try:
                root = web_http.xml_parse(response.content)
            except Exception:
                raise SourceError(f"The sitemap {url} is not valid XML.") from None
            for loc in root.iter("{*}loc"):
                target = url_normal(loc.text or "")
                if root.tag.endswith("sitemapindex"):
                    todo.append(target)
                else:
                    found.append(target)
        return found

    def list_items(self) -> Iterator[SourceItem]:
        starts = list(self.start_urls)
        if self.sitemap:
            starts += self._sitemap_urls()
        queue: deque[tuple[str, int, bool]] = deque((u, 0, True) for u in dict.fromkeys(starts))
        queued = {u for u, _, _ in queue}
        listed = requests = 0
        while queue and listed < self.max_pages and requests < 3 * self.max_pages + 10:
            url, depth, start = queue.popleft()
            if not self._same_site(url) or not self._wanted(url):
                continue
            if not self._allowed(url):
                if url in self.start_urls:
                    raise SourceError(f"robots.txt of {_site(url)} forbids the start page {url}.")
                continue
            requests += 1
            fetched = self._fetch(url)
            if fetched.status == "moved":
                if fetched.location not in queued:
                    queued.add(fetched.location)
                    queue.appendleft((fetched.location, depth, start))
                continue
            if fetched.status in ("gone", "failed", "skip") and start and url not in self.memos:
                raise SourceError(f"The start page {url} cannot be read: {fetched.error or fetched.status}.")
            if fetched.status == "failed":
                if url not in self.memos:  # new and failing: tried again next run
                    logger.warning("Web connector: %s: %s", url, fetched.error)
                    continue
                fetched.memo = self.memos[url]  # known: kept as it was until it answers again
            elif fetched.status in ("gone", "skip"):
                continue
            memo = fetched.memo
            if fetched.body is not None:
                self.bodies[url] = fetched.body
            if memo.get("kind") == "page" and not memo.get("nofollow"):
                for link in memo.get("links", []):
                    is_document = urlsplit(link).path.lower().endswith(DOCUMENT_SUFFIXES)
                    if link not in queued and (depth < self.depth or is_document):
                        queued.add(link)
                        queue.append((link, depth + 1, False))
            if memo.get("noindex"):
                continue
            listed += 1
            yield SourceItem(
                source_id=url, name=self._name(url, memo), link=url, version=str(memo.get("version", "")),
                size=int(memo.get("size", 0)), memo=memo,
            )  # fmt: skip
        if queue and listed >= self.max_pages:
            logger.warning("Web connector: stopped at %s items (max_pages); %s more not listed", listed, len(queue))

    @staticmethod
    def _name(url: str, memo: dict[str, Any]) -> str:
        segment = unquote(urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]) or "index"
        if memo.get("kind") == "page" and not segment.lower().endswith((".html", ".htm")):
            segment += ".html"
        return segment[:200]

    # -- Requests -------------------------------------------------------------------

    def _conditional(self, url: str) -> dict[str, str]:
        memo = self.memos.get(url, {})
        headers = {}
        if memo.get("etag"):
            headers["If-None-Match"] = memo["etag"]
        if memo.get("modified"):
            headers["If-Modified-Since"] = memo["modified"]
        return headers

    def _moved(self, url: str, response: Any) -> _Fetched:
        location = url_normal(str(response.url.join(response.headers.get("location", ""))))
        if location == url or not self._same_site(location):
            return _Fetched("skip", error=f"redirected off the site to {location}")
        return _Fetched("moved", location=location)

    def _fetch(self, url: str) -> _Fetched:
        if urlsplit(url).path.lower().endswith(DOCUMENT_SUFFIXES):
            found = self._head(url)
            if found is not None:
                return found
        headers = self._conditional(url)
        try:
            with self.client.stream("GET", url, headers=headers) as response:
                return self._answer(url, response)
        except ItemError as exc:
            return _Fetched("failed", error=str(exc))
        except Exception as exc:  # a timeout, a refused connection
            return _Fetched("failed", error=web_http.reason(exc))

    def _head(self, url: str) -> _Fetched | None:
        """A linked document's version without its bytes; None: ask with GET instead."""
        try:
            response = self.client.request("HEAD", url, headers=self._conditional(url))
        except Exception as exc:
            return _Fetched("failed", error=web_http.reason(exc))
        status = response.status_code
        if status == 304 and url in self.memos:
            return _Fetched("same", memo=self.memos[url])
        if str(status) in _REDIRECTS:
            return self._moved(url, response)
        if status in (404, 410, 401, 403):
            return _Fetched("gone", error=str(status))
        validators = _validators(response)
        if status != 200 or not validators:
            return None
        size = int(response.headers.get("content-length") or 0)
        version = validators.get("etag") or f"{validators['modified']}:{size}"
        return _Fetched("new", memo={"kind": "file", "version": version, "size": size, **validators})

    def _answer(self, url: str, response: Any) -> _Fetched:
        status = response.status_code
        if status == 304 and url in self.memos:
            return _Fetched("same", memo=self.memos[url])
        if str(status) in _REDIRECTS:
            return self._moved(url, response)
        if status in (404, 410, 401, 403):
            return _Fetched("gone", error=f"HTTP {status}")
        if status != 200:
            return _Fetched("failed", error=f"HTTP {status}")
        validators = _validators(response)
        kind = (response.headers.get("content-type") or "").split(";", 1)[0].strip().lower()
        if kind in _PAGE_TYPES and not urlsplit(url).path.lower().endswith(DOCUMENT_SUFFIXES):
            content = b"".join(_limited(response, _MAX_PAGE_BYTES))
            page = page_read(content, str(response.url))
            links = [url_normal(link) for link in page.links]
            links = [link for link in links if self._same_site(link)]
            version = validators.get("etag") or validators.get("modified") or _digest(page.html)
            memo = {
                "kind": "page", "version": version, "size": len(page.html), "links": list(dict.fromkeys(links)),
                "noindex": page.noindex or not page.text, "nofollow": page.nofollow, **validators,
            }  # fmt: skip
            return _Fetched("new", memo=memo, body=page.html)
        spooled: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 (kept for open_item)
        digest, size = hashlib.sha256(), 0
        for block in _limited(response, _max_document_bytes()):
            digest.update(block)
            size += len(block)
            spooled.write(block)
        spooled.seek(0)
        version = validators.get("etag") or (f"{validators['modified']}:{size}" if "modified" in validators else "")
        memo = {"kind": "file", "version": version or f"sha256:{digest.hexdigest()}", "size": size, **validators}
        return _Fetched("new", memo=memo, body=spooled)

    def open_item(self, item: SourceItem) -> AbstractContextManager[IO[bytes]]:
        body = self.bodies.pop(item.source_id, None)
        if body is None:
            # Not read while listing (a 304, a HEAD, or a failed read that is due again): read it now, in full.
            self.memos.pop(item.source_id, None)
            try:
                with self.client.stream("GET", item.source_id) as response:
                    fetched = self._answer(item.source_id, response)
            except ItemError:
                raise
            except Exception as exc:
                raise ItemError(f"Cannot read {item.source_id}: {web_http.reason(exc)}") from None
            if fetched.status != "new":
                raise ItemError(f"Cannot read {item.source_id}: {fetched.error or fetched.status}")
            body = fetched.body
        if isinstance(body, bytes):
            return io.BytesIO(body)
        stream: IO[bytes] = body
        return stream

    def access(self, item: SourceItem) -> list[str]:
        relative = _relative(item.source_id)
        for entry in self.mapping:
            if glob_matches(entry["glob"], relative):
                groups: list[str] = entry["groups"]
                return [EVERYONE] if EVERYONE in groups else sorted(set(groups))
        return []


def _max_document_bytes() -> int:
    from django.conf import settings

    return int(settings.MAX_UPLOAD_BYTES)


def _limited(response: Any, limit: int) -> Iterator[bytes]:
    size = 0
    for block in response.iter_bytes(1024 * 1024):
        size += len(block)
        if size > limit:
            raise ItemError(f"{response.url} is larger than {limit // (1024 * 1024)} MB; it is not read.")
        yield block


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
