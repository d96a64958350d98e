"""A real WebDAV server on loopback (WsgiDAV on cheroot) with one user and a password.

``throttle`` puts a busy front in the way of some requests (429 or 503 before WsgiDAV
sees them), as a proxy or a loaded server answers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

USER, PASSWORD = "alice", "wonderland-42"


class DavServer:
    def __init__(self, root: Path) -> None:
        from cheroot import wsgi
        from wsgidav.wsgidav_app import WsgiDAVApp

        self.root = root
        app = WsgiDAVApp({
            "provider_mapping": {"/dav": str(root)},
            "simple_dc": {"user_mapping": {"*": {USER: {"password": PASSWORD}}}},
            "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
            "verbose": 0,
            "logging": {"enable": False},
            "lock_storage": True,
            "property_manager": True,
        })  # fmt: skip
        self.throttles: list[list[Any]] = []  # [method, path suffix, answers left, status, Retry-After]
        self.lock = threading.Lock()
        self.server = wsgi.Server(("127.0.0.1", 0), self._front(app), numthreads=4)
        self.server.prepare()
        self.url = f"http://127.0.0.1:{self.server.bind_addr[1]}/dav/"
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    def throttle(
        self, method: str, path: str, *, times: int = 1, status: int = 429, retry_after: str | None = "2"
    ) -> None:
        """The next ``times`` ``method`` requests whose path ends with ``path`` answer ``status``."""
        with self.lock:
            self.throttles.append([method, path, times, status, retry_after])

    def _front(self, app: Callable[..., Iterable[bytes]]) -> Callable[..., Iterable[bytes]]:
        reasons = {429: "Too Many Requests", 502: "Bad Gateway", 503: "Service Unavailable"}

        def front(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
            with self.lock:
                found = next(
                    (t for t in self.throttles if t[2] > 0 and t[0] == environ["REQUEST_METHOD"]
                     and environ.get("PATH_INFO", "").rstrip("/").endswith(t[1].rstrip("/"))),
                    None,
                )  # fmt: skip
                if found is not None:
                    found[2] -= 1
            if found is None:
                return app(environ, start_response)
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            headers = [("Content-Type", "text/plain"), ("Content-Length", "4")]
            if found[4] is not None:
                headers.append(("Retry-After", found[4]))
            start_response(f"{found[3]} {reasons.get(found[3], 'Busy')}", headers)
            return [b"busy"]

        return front

    def move(self, source: str, target: str) -> None:
        response = httpx.request(
            "MOVE", self.url + source, headers={"Destination": self.url + target}, auth=(USER, PASSWORD)
        )
        assert response.status_code in (201, 204), response.text

    def close(self) -> None:
        self.server.stop()
