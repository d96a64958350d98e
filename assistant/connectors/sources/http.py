"""What the HTTP source types share: one client with polite limits, its login, safe XML, streamed bodies.

Every request names the product in its User-Agent (a site's owner can see who is
reading, and allow or block it by name), has a timeout, and sends the connector's
login: ``username`` in the settings with the sealed secret as its password (basic),
or the secret alone as a bearer token.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

USER_AGENT = "PrivateAssistant-Connector/1.0 (document assistant; +connector)"
DEFAULT_TIMEOUT_S = 20.0


def client(settings: dict[str, Any], credentials: dict[str, str]) -> Any:
    """An ``httpx.Client`` with the connector's login, timeout and User-Agent."""
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
    return httpx.Client(auth=auth, headers=headers, timeout=timeout, follow_redirects=False)


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
