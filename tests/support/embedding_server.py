"""A scripted OpenAI-compatible ``/v1/embeddings`` server on loopback.

A real HTTP server, so the client's batching, retries and parsing go through real
sockets. Each request takes the next action of ``actions`` (``ok`` once they run out):
``ok`` answers with ``embed(texts)``, ``500`` an error body, ``malformed`` a body that is
not JSON, ``wrong-dimension`` vectors of 8 dimensions, ``too-few`` one vector less.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

Embed = Callable[[Sequence[str]], np.ndarray]


def hashed_vectors(texts: Sequence[str], dimensions: int = 384) -> np.ndarray:
    """Deterministic, unnormalised vectors: a text always gets the same one."""
    rows = []
    for text in texts:
        seed = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")
        rows.append(np.random.default_rng(seed).normal(size=dimensions) * 3.0)
    return np.asarray(rows, dtype=np.float32)


class EmbeddingServer(ThreadingHTTPServer):
    def __init__(self, embed: Embed) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.embed = embed
        self.actions: list[str] = []
        self.batches: list[list[str]] = []  # every request's input, in order
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}/v1"

    def next_action(self, texts: list[str]) -> str:
        with self.lock:
            self.batches.append(texts)
            return self.actions.pop(0) if self.actions else "ok"


class _Handler(BaseHTTPRequestHandler):
    server: EmbeddingServer

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._send(200, json.dumps({"data": [{"id": "scripted-embedder"}]}).encode())

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        texts = list(request["input"])
        action = self.server.next_action(texts)
        if action == "500":
            self._send(500, json.dumps({"error": {"message": "the model is loading"}}).encode())
            return
        if action == "malformed":
            self._send(200, b'{"data": [ {"embedding": [0.1, ')
            return
        vectors = np.zeros((len(texts), 8), np.float32) + 1 if action == "wrong-dimension" else self.server.embed(texts)
        if action == "too-few":
            vectors = vectors[:-1]
        # Answered in reverse order: the client must put them back by ``index``.
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)][::-1]
        self._send(200, json.dumps({"object": "list", "data": data, "model": "scripted-embedder"}).encode())


@contextmanager
def embedding_server(embed: Embed = hashed_vectors) -> Iterator[EmbeddingServer]:
    server = EmbeddingServer(embed)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
