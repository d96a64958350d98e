"""One client for every OpenAI-compatible server: vLLM, llama.cpp, Ollama, ...

Streams ``/chat/completions`` over server-sent events with explicit connect and read
timeouts, keeps a reasoning model's thinking apart from its answer
(``assistant.chat.reasoning``), and turns every transport failure into an ``LLMError`` whose message can be
shown to the person who asked.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings

from assistant.chat.reasoning import ThinkFilter


class LLMError(Exception):
    """The language model could not answer. The message is safe to show to users."""


@dataclass(frozen=True)
class Delta:
    text: str  # answer text only
    model: str
    reasoning: str = ""  # a reasoning model's thinking, never part of ``text``


class LLMClient:
    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str = "",
        connect_timeout: float = 5.0,
        read_timeout: float = 120.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.api_key = api_key
        self.timeout = httpx.Timeout(connect=connect_timeout, read=read_timeout, write=30.0, pool=5.0)

    @classmethod
    def from_settings(cls) -> LLMClient:
        return cls(
            base_url=settings.LLM_BASE_URL,
            model=settings.LLM_MODEL,
            api_key=settings.LLM_API_KEY,
            connect_timeout=settings.LLM_CONNECT_TIMEOUT,
            read_timeout=settings.LLM_READ_TIMEOUT,
        )

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        return headers

    def _client(self) -> httpx.AsyncClient:
        # trust_env=False: proxy variables in the environment must never reroute
        # prompts that carry company documents.
        return httpx.AsyncClient(timeout=self.timeout, trust_env=False)

    async def stream_chat(
        self, messages: Sequence[dict[str, str]], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[Delta]:
        """Yield the answer's text as it arrives, each piece with the model id reported.

        A reasoning model's thinking comes in ``Delta.reasoning``, whether the server
        sent it in a field of its own or inline between ``<think>`` tags.
        """
        payload = {
            "model": self.model,
            "messages": list(messages),
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        url = f"{self.base_url}/chat/completions"
        try:
            async with (
                self._client() as client,
                client.stream("POST", url, json=payload, headers=self._headers()) as response,
            ):
                if response.status_code >= 400:
                    body = (await response.aread()).decode("utf-8", "replace")
                    reason = _server_message(body)
                    raise LLMError(f"The language model server refused the request ({response.status_code}): {reason}")
                inline = ThinkFilter()
                model = self.model
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    delta = _parse_chunk(data, default_model=self.model)
                    if delta is None:
                        continue
                    model = delta.model
                    split = inline.feed(delta.text)
                    if split.answer or split.reasoning or delta.reasoning:
                        yield Delta(text=split.answer, model=model, reasoning=delta.reasoning + split.reasoning)
                rest = inline.close()
                if rest.answer or rest.reasoning:
                    yield Delta(text=rest.answer, model=model, reasoning=rest.reasoning)
        except httpx.ConnectError as exc:
            raise LLMError(
                f"The language model server at {self.base_url} is not reachable. "
                "Ask an administrator to start it or check LLM_BASE_URL."
            ) from exc
        except httpx.TimeoutException as exc:
            raise LLMError(f"The language model server at {self.base_url} did not answer in time.") from exc
        except httpx.HTTPError as exc:
            raise LLMError(f"The connection to the language model server failed: {exc}") from exc

    async def models(self) -> list[str]:
        try:
            async with self._client() as client:
                response = await client.get(f"{self.base_url}/models", headers=self._headers())
                response.raise_for_status()
        except httpx.HTTPError as exc:
            raise LLMError(f"The language model server at {self.base_url} is not reachable.") from exc
        return [m["id"] for m in response.json().get("data", [])]


def _server_message(body: str) -> str:
    try:
        error = json.loads(body).get("error", body)
    except (ValueError, AttributeError):
        return body[:300]
    if isinstance(error, dict):
        return str(error.get("message", error))[:300]
    return str(error)[:300]


def _parse_chunk(data: str, *, default_model: str) -> Delta | None:
    try:
        chunk: dict[str, Any] = json.loads(data)
    except ValueError:
        return None
    if "error" in chunk:
        raise LLMError(f"The language model failed while answering: {_server_message(data)}")
    choices = chunk.get("choices") or []
    if not choices:
        return None
    delta = choices[0].get("delta") or {}
    text = delta.get("content") or ""
    # vLLM's reasoning parsers: ``reasoning_content``, renamed ``reasoning`` in later versions.
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    if not text and not reasoning:
        return None
    return Delta(text=str(text), model=str(chunk.get("model") or default_model), reasoning=str(reasoning))
