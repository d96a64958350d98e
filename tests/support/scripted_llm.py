"""Scripted OpenAI-compatible servers on loopback, for the LLM client's failure paths.

A real HTTP server answers the client, so timeouts and refusals go through the same
sockets and parsing as with a real LLM server; only what it says is scripted.
"""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer, ThreadingHTTPServer

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


MODEL = "scripted-model"
ANSWER = ["The meal allowance ", "abroad is ", "85 euros [1]."]


class _Programmed(BaseHTTPRequestHandler):
    """Answers as its ``ScriptedLLM`` is told to right now (``script``), over HTTP/1.1 chunks."""

    protocol_version = "HTTP/1.1"
    server: _ProgrammedServer

    def log_message(self, *args) -> None:
        pass

    def _body(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _piece(self, text: str) -> None:
        chunk = {"model": MODEL, "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": None}]}
        self._chunk(f"data: {json.dumps(chunk)}\n\n".encode())

    def _stream_start(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _cut(self) -> None:
        """The server goes away mid-body: no closing chunk, the socket just closes."""
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)

    def do_GET(self) -> None:
        self._body(200, "application/json", json.dumps({"object": "list", "data": [{"id": MODEL}]}).encode())

    def do_POST(self) -> None:
        owner = self.server.owner
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        owner.requests += 1
        script = owner.script
        try:
            if script == "error500":
                body = json.dumps({"error": {"message": "CUDA out of memory", "type": "server_error"}})
                self._body(500, "application/json", body.encode())
            elif script == "html":
                self._body(200, "text/html", b"<html><body>502 Bad Gateway</body></html>")
            elif script == "stall":  # headers, then never a token
                self._stream_start()
                owner.wait_released(ping=None, stream=self)
                self._cut()
            elif script == "bad_json":
                self._stream_start()
                self._piece(ANSWER[0])
                self._chunk(b'data: {"choices": [{"delta": {"content": "oops"\n\n')
                self._chunk(b"")
            elif script == "cut":
                self._stream_start()
                self._piece(ANSWER[0])
                self._cut()
            else:  # "answer", or "hold": wait (pinging) for the test's release, then answer
                self._stream_start()
                if script == "hold":
                    owner.wait_released(ping=b": ping\n\n", stream=self)
                for piece in ANSWER:
                    self._piece(piece)
                self._chunk(b"data: [DONE]\n\n")
                self._chunk(b"")
        except OSError:
            self.close_connection = True  # the client went away


class _ProgrammedServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: ScriptedLLM


class ScriptedLLM:
    """An OpenAI-compatible server on a fixed loopback port whose behaviour a test sets.

    ``script``: "answer" (streams ``ANSWER`` at once), "hold" (keeps each request
    waiting, with keep-alive comments, until ``release()``; ``held`` counts those
    waiting), "stall" (headers, then never a token), "bad_json" (a piece, then a
    chunk that is not JSON), "cut" (a piece, then the connection closes mid-body),
    "html" (200 with a web page), "error500" (500 with an error body).
    ``stop()`` takes it off its port (connection refused), ``start()`` puts it back.
    """

    def __init__(self) -> None:
        self.port = 0
        self.script = "answer"
        self.requests = 0
        self._waiting: list[threading.Event] = []
        self._lock = threading.Lock()
        self._server: _ProgrammedServer | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def held(self) -> int:
        """How many requests are waiting for ``release()`` now."""
        with self._lock:
            return len(self._waiting)

    def start(self) -> ScriptedLLM:
        server = _ProgrammedServer(("127.0.0.1", self.port), _Programmed)
        server.owner = self
        self.port = server.server_port
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Off its port: a client's connection is refused until ``start()``."""
        self.release()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def release(self) -> None:
        """Let every request held now go on (later ones are held again while the script says so)."""
        with self._lock:
            waiting, self._waiting = self._waiting, []
        for event in waiting:
            event.set()

    def wait_released(self, *, ping: bytes | None, stream: _Programmed) -> None:
        event = threading.Event()
        with self._lock:
            self._waiting.append(event)
        try:
            while not event.wait(0.2):
                if ping:
                    stream._chunk(ping)
        finally:
            with self._lock:
                if event in self._waiting:
                    self._waiting.remove(event)
