"""A small, real intranet for the web connector's tests: an HTTP server on loopback.

Pages share the frame every intranet has (a header, navigation, a cookie banner,
a footer) around their own text; ``robots.txt`` forbids ``/private/``; a sitemap
lists some pages; a PDF is linked. The server answers conditional GETs (ETag and
Last-Modified, 304) and HEAD, and records every request, so a test can say what
a sync asked for and what it was sent. A page moved elsewhere can answer with a
permanent redirect to its new address; ``throttle`` makes a path answer 429 or 503
for a while, as a busy site does.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MEMO_PDF = Path("/work/shared/data/formats/fake-memo.pdf")

# The frame: none of these words may end up in a stored passage.
HEADER = "Northwind Intranet portal header"
NAV_WORDS = "Staff directory quicklinks"
COOKIE_TEXT = "We use cookies to improve your experience"
FOOTER_TEXT = "Copyright Northwind Traders imprint and data protection notice"
BOILERPLATE = (HEADER, NAV_WORDS, COOKIE_TEXT, FOOTER_TEXT)


def page(title: str, body: str, *, links: list[tuple[str, str]] | None = None) -> bytes:
    nav = "".join(f'<li><a href="{href}">{text}</a></li>' for href, text in links or [])
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} - Northwind Intranet</title>
<link rel="stylesheet" href="/static/site.css"></head>
<body>
<div id="cookie-banner" class="cookie-consent"><p>{COOKIE_TEXT}. <button>Accept all cookies</button></p></div>
<header class="site-header"><p>{HEADER}</p>
  <nav><ul><li><a href="/">Home</a></li><li><a href="/handbook/holidays.html">Holidays</a></li>
  <li><a href="/handbook/travel.html">Travel</a></li><li><a href="/people/">{NAV_WORDS}</a></li></ul></nav>
</header>
<div class="layout">
  <aside class="sidebar"><h3>Related</h3><ul>{nav}</ul></aside>
  <main id="content"><h1>{title}</h1>{body}</main>
</div>
<footer class="site-footer"><p>{FOOTER_TEXT}</p><a href="/imprint.html">Imprint</a></footer>
</body></html>""".encode()


@dataclass
class Resource:
    content: bytes
    content_type: str = "text/html; charset=utf-8"
    version: int = 1

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.content).hexdigest()[:16] + '"'

    @property
    def last_modified(self) -> str:
        return formatdate(1_700_000_000 + self.version * 1000, usegmt=True)


@dataclass
class Site:
    resources: dict[str, Resource] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)  # path -> where it moved (301)
    requests: list[tuple[str, str, int]] = field(default_factory=list)  # method, path, status
    agents: set[str] = field(default_factory=set)
    login: tuple[str, str] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)
    # path -> (method or "" for any, answers left, status, Retry-After or None)
    throttles: dict[str, tuple[str, int, int, str | None]] = field(default_factory=dict)

    def throttle(
        self, path: str, *, times: int = 1, status: int = 429, retry_after: str | None = "2", method: str = ""
    ) -> None:
        """The next ``times`` requests for ``path`` answer ``status`` (with ``Retry-After`` unless None)."""
        with self.lock:
            self.throttles[path] = (method, times, status, retry_after)

    def put(self, path: str, content: bytes, content_type: str = "text/html; charset=utf-8") -> None:
        with self.lock:
            old = self.resources.get(path)
            self.resources[path] = Resource(content, content_type, (old.version + 1) if old else 1)

    def remove(self, path: str) -> None:
        with self.lock:
            self.resources.pop(path, None)

    def redirect(self, path: str, to: str) -> None:
        """``path`` moved to ``to``: a 301 pointing there, whatever the request's validators."""
        with self.lock:
            self.resources.pop(path, None)
            self.redirects[path] = to

    def take_requests(self) -> list[tuple[str, str, int]]:
        with self.lock:
            taken, self.requests = self.requests, []
        return taken


def _handler(site: Site) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:  # quiet
            pass

        def _answer(self, send_body: bool) -> None:
            path = self.path.split("#", 1)[0]
            status, headers, body = self._resolve(path)
            with site.lock:
                site.requests.append((self.command, path, status))
                site.agents.add(self.headers.get("User-Agent", ""))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if send_body and status != 304:
                self.wfile.write(body)

        def _resolve(self, path: str) -> tuple[int, dict[str, str], bytes]:
            with site.lock:
                method, times, status, retry_after = site.throttles.get(path, ("", 0, 0, None))
                if times > 0 and method in ("", self.command):
                    site.throttles[path] = (method, times - 1, status, retry_after)
                    return status, {"Retry-After": retry_after} if retry_after else {}, b"busy, try again later"
            if site.login is not None:
                expected = "Basic " + base64.b64encode(":".join(site.login).encode()).decode()
                if self.headers.get("Authorization") != expected:
                    return 401, {"WWW-Authenticate": 'Basic realm="intranet"'}, b"login needed"
            with site.lock:
                resource, moved_to = site.resources.get(path), site.redirects.get(path)
            if moved_to is not None:
                return 301, {"Location": moved_to, "Content-Type": "text/plain"}, b"moved"
            if resource is None:
                return 404, {"Content-Type": "text/plain"}, b"not found"
            headers = {"Content-Type": resource.content_type, "ETag": resource.etag,
                       "Last-Modified": resource.last_modified}  # fmt: skip
            if self.headers.get("If-None-Match") == resource.etag:
                return 304, headers, b""
            if (
                not self.headers.get("If-None-Match")
                and self.headers.get("If-Modified-Since") == resource.last_modified
            ):
                return 304, headers, b""
            return 200, headers, resource.content

        def do_GET(self) -> None:
            self._answer(True)

        def do_HEAD(self) -> None:
            self._answer(False)

    return Handler


class Server:
    def __init__(self, site: Site) -> None:
        self.site = site
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(site))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def intranet(site: Site, offsite_url: str) -> None:
    """The pages of a small company intranet."""
    nav = [("/handbook/holidays.html", "Holidays"), ("/news/roadmap.html", "Roadmap")]
    site.put("/robots.txt", b"User-agent: *\nDisallow: /private/\n", "text/plain")
    site.put("/", page("Welcome", "<p>Welcome to the intranet of Northwind Traders. Read the "
                       '<a href="/handbook/holidays.html">holiday policy</a>, the '
                       '<a href="/news/roadmap.html">roadmap</a> and the <a href="/hr/bonus.html">bonus scheme</a>.</p>'
                       f'<p>Partner site: <a href="{offsite_url}/partner.html">our logistics partner</a>. '
                       'Old salary tables live <a href="/private/salaries.html">here</a>.</p>', links=nav))  # fmt: skip
    site.put("/handbook/holidays.html", page("Holiday policy", (
        "<p>Every employee has thirty days of paid holiday per calendar year.</p>"
        "<p>Holidays are requested in the HR tool at least two weeks ahead.</p>"
        '<p>The signed <a href="/files/memo.pdf">memo</a> explains the carry-over rules.</p>'), links=nav))  # fmt: skip
    site.put("/handbook/travel.html", page("Travel policy", (
        "<p>Business travel by train is preferred for trips under five hundred kilometres.</p>"
        "<p>Hotel costs are reimbursed up to the regional limit.</p>"), links=nav))  # fmt: skip
    site.put("/news/roadmap.html", page("Roadmap 2027", (
        "<p>The warehouse in Rotterdam opens in the second quarter.</p>"
        '<p>See the <a href="/handbook/travel.html">travel policy</a> for site visits.</p>'), links=nav))  # fmt: skip
    site.put("/hr/bonus.html", page("Bonus scheme", (
        "<p>The annual bonus scheme pays up to twelve percent of the base salary.</p>"
        "<p>Bonus targets are agreed with the line manager in January.</p>"), links=nav))  # fmt: skip
    site.put("/private/salaries.html", page("Salary tables", "<p>Confidential salary bands A to F.</p>"))
    site.put("/people/", page("Staff directory", "<p>Search the staff directory by name.</p>",
                              links=[("/people/?page=2", "more")]), )  # fmt: skip
    site.put("/people/?page=2", page("Staff directory", "<p>More staff directory entries.</p>"))
    site.put("/imprint.html", page("Imprint", "<p>Northwind Traders GmbH, Hamburg, registered office.</p>"))
    site.put("/files/memo.pdf", MEMO_PDF.read_bytes(), "application/pdf")
