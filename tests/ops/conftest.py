from __future__ import annotations

import json
from collections.abc import Iterator
from typing import ClassVar

import pytest

from tests.support.scripted_llm import Quiet, serving

MODEL = "scripted-model"


class Recording(Quiet):
    """An OpenAI-compatible server that lists one model, streams a short answer and keeps each request's headers."""

    seen: ClassVar[list[dict[str, str]]] = []

    def do_GET(self) -> None:
        self.seen.append(dict(self.headers.items()))
        body = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:
        self.seen.append(dict(self.headers.items()))
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in ("Meals ", "abroad ", "are ", "covered [1]."):
            chunk = {"model": MODEL, "choices": [{"delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()


@pytest.fixture
def recording_llm(settings) -> Iterator[type[Recording]]:
    """The scripted server, with the settings pointing at it; yields the handler class (``.seen``)."""
    Recording.seen = []
    with serving(Recording) as base_url:
        settings.LLM_BASE_URL = base_url
        settings.LLM_MODEL = MODEL
        yield Recording
