"""What the web and WebDAV sources share: one client with polite limits, its login, safe XML, streamed bodies.

Every request names the product in its User-Agent (a site's owner can see who is
reading, and allow or block it by name), has a timeout, and sends the connector's
login: ``username`` in the settings with the sealed secret as its password (basic),
or the secret alone as a bearer token. Every request goes through the connectors'
back-off (``connectors.http.send``): a 429 or 503 (its ``Retry-After`` honoured), a
502/504 or a connection that fails is tried again within the same bounds as for
Confluence and SharePoint, and ends as ``HttpError`` with the reason if it never
succeeds; any other answer comes back to the source as it is.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from assistant.connectors.http import Backoff, HttpError, send

USER_AGENT = "PrivateAssistant-Connector/1.0 (document assistant; +connector)"
DEFAULT_TIMEOUT_S = 20.0


class Client:
    """Requests of one web or WebDAV source, each sent through the back-off; redirects are not followed."""

    def __init__(self, client: Any) -> None:
        self._client = client  # an httpx.Client
        self.backoff = Backoff.from_settings()

    def request(self, method: str, url: str, **kwargs: Any) -> Any:
        """The answer, its body read (``content``, ``text``)."""
        return self._send(method, url, stream=False, **kwargs)

    def open(self, method: str, url: str, **kwargs: Any) -> Any:
        """The answer, its body still to read (``iter_bytes``); the caller closes it."""
        return self._send(method, url, stream=True, **kwargs)

    @contextmanager
    def stream(self, method: str, url: str, **kwargs: Any) -> Iterator[Any]:
        response = self.open(method, url, **kwargs)
        try:
            yield response
        finally:
            response.close()

    def close(self) -> None:
        self._client.close()

    def _send(self, method: str, url: str, *, stream: bool, **kwargs: Any) -> Any:
        request = self._client.build_request(method, url, **kwargs)
        return send(self._client, request, service=urlsplit(url).netloc, backoff=self.backoff, stream=stream)


def client(settings: dict[str, Any], credentials: dict[str, str]) -> Client:
    """A client with the connector's login, timeout and User-Agent."""
    import httpx

    secret = credentials.get("secret", "")
    username = str(settings.get("username") or "")
    auth: Any = None
    headers = {"User-Agent": USER_AGENT}
    if username:
        auth = httpx.BasicAuth(username, secret)
    elif secret:
        headers["Authorization"] = f"Bearer {secret}"
    timeout = float(settings.get("timeout_s") or DEFAULT_TIMEOUT_S)
    return Client(httpx.Client(auth=auth, headers=headers, timeout=timeout, follow_redirects=False))


def reason(exc: Exception) -> str:
    """Why a request failed, for a person: the back-off's own words, else the error's kind and message."""
    return str(exc) if isinstance(exc, HttpError) else f"{type(exc).__name__}: {exc}"


def timeout_clean(value: Any) -> float:
    try:
        timeout = float(value if value not in (None, "") else DEFAULT_TIMEOUT_S)
    except (TypeError, ValueError):
        raise ValueError("The timeout must be a number of seconds.") from None
    if not 0 < timeout <= 600:
        raise ValueError("The timeout must be between 0 and 600 seconds.")
    return timeout


def xml_parse(data: bytes) -> Any:
    """An XML document from a server (a PROPFIND answer, a sitemap): no entities, no network."""
    from lxml import etree

    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, load_dtd=False)
    return etree.fromstring(data, parser=parser)


class ResponseStream(io.RawIOBase):
    """A streamed response body as a readable file; closing it closes the response."""

    def __init__(self, response: Any) -> None:
        self.response = response
        self.chunks: Iterator[bytes] = response.iter_bytes(1024 * 1024)
        self.pending = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.pending:
            chunk = next(self.chunks, None)
            if chunk is None:
                return 0
            self.pending = chunk
        size = min(len(buffer), len(self.pending))
        buffer[:size] = self.pending[:size]
        self.pending = self.pending[size:]
        return size

    def close(self) -> None:
        if not self.closed:
            self.response.close()
        super().close()
