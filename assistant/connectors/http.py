"""HTTP for the sources read over the network: one back-off for every request they send.

``send`` is the one retry loop: Confluence and SharePoint go through it with
``HttpClient`` (a web API: JSON, a token, errors raised), a web site and a WebDAV
folder with the plain client of ``sources/http.py`` (every status handed back to the
source, which reads a 304 or a 207 itself).

A transient failure is retried: an answer 429 (throttled) or 503 (unavailable), which
usually names its wait in ``Retry-After`` (seconds or an HTTP date), a 502/504 from a
proxy, or a connection that failed or timed out. The wait is the ``Retry-After`` when
given (capped), otherwise capped exponential back-off with full jitter. Each request
has a bounded number of tries (``CONNECTOR_RETRY_ATTEMPTS``) and a bounded total wait
(``CONNECTOR_RETRY_MAX_WAIT_S``): a service that asks for more gets no more, and the
request raises ``HttpError`` with a readable reason. A source turns that into an
``ItemError`` (that item fails, the sync goes on) or a ``SourceError`` (the listing).

Waiting goes through the module's ``sleep``: tests replace it to record the waits, so
nothing really waits and no test depends on timing.

A link the service hands back (a next page, a delta link) is followed only to the
origin the connector was configured with: credentials never travel to another host.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import IO, Any, cast
from urllib.parse import urljoin, urlsplit

from django.conf import settings

# Replaced by tests (``monkeypatch.setattr(http, "sleep", waits.append)``).
sleep: Callable[[float], None] = time.sleep

RETRY_STATUSES = frozenset({429, 502, 503, 504})


class HttpError(Exception):
    """A request that failed for good (after its retries); ``status`` is the last answer's, if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def retry_after_s(value: str | None, now: datetime | None = None) -> float | None:
    """``Retry-After`` in seconds (a number or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class Backoff:
    attempts: int = 6
    max_wait_s: float = 300.0
    base_s: float = 1.0
    cap_s: float = 60.0  # one wait, computed or asked for

    @classmethod
    def from_settings(cls) -> Backoff:
        return cls(attempts=max(1, settings.CONNECTOR_RETRY_ATTEMPTS), max_wait_s=settings.CONNECTOR_RETRY_MAX_WAIT_S)

    def delay(self, retry: int, asked: float | None) -> float:
        """The wait before try ``retry + 1`` (``retry`` counts from 0)."""
        if asked is not None:
            return min(asked, self.cap_s)
        return random.uniform(0, min(self.cap_s, self.base_s * 2**retry))  # noqa: S311 (jitter, not secrecy)


def same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


class HttpClient:
    """Requests to one service, with retries; ``auth_headers(refresh)`` gives the authorization.

    ``auth_headers`` is called before each request, and once more with ``refresh=True``
    after a 401 (an expired token is fetched again; a refused one fails).
    """

    def __init__(
        self,
        *,
        base_url: str,
        service: str,
        auth: Any = None,
        auth_headers: Callable[[bool], dict[str, str]] | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        import httpx

        self.base_url = base_url.rstrip("/") + "/"
        self.service = service
        self.auth_headers = auth_headers
        self.backoff = backoff or Backoff.from_settings()
        self._client = httpx.Client(
            auth=auth, timeout=settings.CONNECTOR_HTTP_TIMEOUT_S, follow_redirects=True,
            headers={"Accept": "application/json", "User-Agent": "assistant-connector"},
        )  # fmt: skip

    def url(self, path_or_url: str) -> str:
        """An absolute URL on the service; refuses a link to another origin."""
        url = urljoin(self.base_url, path_or_url.lstrip("/")) if "://" not in path_or_url else path_or_url
        if not same_origin(url, self.base_url):
            raise HttpError(f"{self.service} sent a link to another site ({urlsplit(url).netloc}); it is not followed.")
        return url

    def close(self) -> None:
        self._client.close()

    def get_json(self, path_or_url: str, **kwargs: Any) -> Any:
        response = self.request("GET", path_or_url, **kwargs)
        try:
            return response.json()
        except ValueError:
            raise HttpError(
                f"{self.service} answered {self.url(path_or_url)} with something that is not JSON."
            ) from None

    def request(self, method: str, path_or_url: str, **kwargs: Any) -> Any:
        with self._retrying(method, path_or_url, stream=False, **kwargs) as response:
            return response

    @contextmanager
    def stream(self, path_or_url: str, **kwargs: Any) -> Iterator[IO[bytes]]:
        """The body of a GET as a byte stream (read while it arrives)."""
        with self._retrying("GET", path_or_url, stream=True, **kwargs) as response:
            yield cast(IO[bytes], _ResponseStream(response.iter_bytes()))

    @contextmanager
    def _retrying(self, method: str, path_or_url: str, *, stream: bool, **kwargs: Any) -> Iterator[Any]:
        url = self.url(path_or_url)
        refreshed = False
        while True:
            headers = {**kwargs.pop("headers", {})} if "headers" in kwargs else {}
            kwargs["headers"] = headers
            if self.auth_headers is not None:
                headers.update(self.auth_headers(False))
            request = self._client.build_request(method, url, **kwargs)
            response = send(self._client, request, service=self.service, backoff=self.backoff, stream=stream)
            if response.status_code == 401 and self.auth_headers is not None and not refreshed:
                response.close()
                refreshed = True
                self.auth_headers(True)
                continue
            if response.status_code >= 400:
                status = response.status_code
                detail = _detail(response, stream)
                response.close()
                raise HttpError(f"{self.service} answered {status} for {url}{detail}", status=status)
            try:
                yield response
            finally:
                response.close()
            return


def send(client: Any, request: Any, *, service: str, backoff: Backoff | None = None, stream: bool = False) -> Any:
    """``client.send(request)``, sent again after a wait while the answer is transient.

    Returns the first answer that is not transient, whatever its status (the caller
    reads it); raises ``HttpError`` with the reason once the tries or the total wait
    run out. ``client`` is an ``httpx.Client``; the request's body must be bytes (it
    may travel more than once).
    """
    import httpx

    backoff = backoff or Backoff.from_settings()
    waited = 0.0
    retry = 0
    while True:
        asked: float | None = None
        try:
            response = client.send(request, stream=stream)
        except httpx.TransportError as exc:
            reason = f"cannot reach {service} ({type(exc).__name__}: {exc or 'no answer'})"
        else:
            if response.status_code not in RETRY_STATUSES:
                return response
            asked = retry_after_s(response.headers.get("Retry-After"))
            reason = f"{service} answered {response.status_code}" + (
                f" (Retry-After {response.headers['Retry-After']})" if asked is not None else ""
            )
            response.close()
        retry += 1
        delay = backoff.delay(retry - 1, asked)
        if retry >= backoff.attempts:
            raise HttpError(f"{reason}; gave up after {retry} tries ({waited:.0f} s waited).")
        if waited + delay > backoff.max_wait_s:
            raise HttpError(
                f"{reason}; gave up after {retry} tries: waiting {delay:.0f} s more would pass the limit of "
                f"{backoff.max_wait_s:.0f} s (CONNECTOR_RETRY_MAX_WAIT_S)."
            )
        sleep(delay)
        waited += delay


def _detail(response: Any, streamed: bool) -> str:
    try:
        text = (response.read() if streamed else response.content)[:300].decode("utf-8", "replace").strip()
    except Exception:  # the reason is a courtesy; the status says enough
        return ""
    return f": {text}" if text else ""


class _ResponseStream:
    """``read(n)`` over an iterator of byte blocks (what the sync reads items through)."""

    def __init__(self, blocks: Iterator[bytes]) -> None:
        self._blocks = blocks
        self._buffer = b""

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            block = next(self._blocks, None)
            if block is None:
                break
            self._buffer += block
        if size < 0:
            found, self._buffer = self._buffer, b""
        else:
            found, self._buffer = self._buffer[:size], self._buffer[size:]
        return found
