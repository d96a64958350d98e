"""A recording relay in front of a real LLM server.

Requests are forwarded byte for byte to the server and its (streamed) answer is
passed back as it comes; the relay keeps a copy of every request body, so a test
can assert what the product sent to the model.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx


class RecordingRelay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.requests: list[dict[str, Any]] = []
        relay = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                self._forward("GET", b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                relay.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
                self._forward("POST", body)

            def _forward(self, method: str, body: bytes) -> None:
                headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "accept")}
                with (
                    httpx.Client(timeout=300, trust_env=False) as client,
                    client.stream(method, relay.upstream + self.path, content=body, headers=headers) as response,
                ):
                    self.send_response(response.status_code)
                    self.send_header("Content-Type", response.headers.get("content-type", "application/json"))
                    self.end_headers()
                    for block in response.iter_raw():
                        self.wfile.write(block)
                        self.wfile.flush()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    @contextmanager
    def running(self) -> Iterator[RecordingRelay]:
        thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.server.shutdown()
            self.server.server_close()
            thread.join(timeout=5)
