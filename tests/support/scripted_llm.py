"""Scripted OpenAI-compatible servers on loopback, for the LLM client's failure paths.

A real HTTP server answers the client, so timeouts and refusals go through the same
sockets and parsing as with a real LLM server; only what it says is scripted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer

# Set when a test is over: a stalling server holds its request until then.
RELEASE = threading.Event()


class Quiet(BaseHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


class Stalling(Quiet):
    """Opens a stream and never sends a token, however long the client takes to give up."""

    def do_POST(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        RELEASE.wait(120)


@contextmanager
def serving(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A server answering with ``handler``; yields its ``/v1`` base URL."""
    RELEASE.clear()
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/v1"
    finally:
        RELEASE.set()
        server.shutdown()
