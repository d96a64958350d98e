"""One client for every OpenAI-compatible server: vLLM, llama.cpp, Ollama, ...

Streams ``/chat/completions`` over server-sent events with explicit connect and read
timeouts, keeps a reasoning model's thinking apart from its answer
(``assistant.chat.reasoning``), and turns every transport failure into an ``LLMError`` whose message can be
shown to the person who asked.
"""

from __future__ import annotations

import functools
import json
import ssl
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
from django.conf import settings
from django.utils.translation import gettext

from assistant.chat.reasoning import ThinkFilter
from assistant.ops.context import current_request_id


class LLMError(Exception):
    """The language model could not answer. The message is safe to show to users (in their language)."""


class LLMUnavailable(LLMError):
    """The server itself failed (unreachable, timed out, a 5xx, cut off): another server may answer."""


def _broken_off() -> LLMError:
    return LLMUnavailable(gettext("The language model server broke off its answer before it was complete."))


@dataclass(frozen=True)
class Delta:
    text: str  # answer text only
    model: str
    reasoning: str = ""  # a reasoning model's thinking, never part of ``text``
    server: str = ""  # the base URL of the server that sent it (with several, the one that answered)


@functools.cache
def _tls() -> ssl.SSLContext:
    """The TLS settings every request to the model shares (httpx's defaults).

    Made once per process: building them loads the whole CA bundle, which cost more
    CPU than anything else in an answer when each request made its own.
    """
    return httpx.create_ssl_context(trust_env=False)


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
        """The configured server's client; with several servers in ``LLM_BASE_URL``, a pooled one over them."""
        if len(settings.LLM_BASE_URLS) > 1:
            from assistant.chat.llm_pool import PooledLLMClient

            return PooledLLMClient.from_pool_settings()
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
        # The model server's logs can then be matched with ours (vLLM logs it).
        if request_id := current_request_id():
            headers["X-Request-ID"] = request_id
        return headers

    def _client(self) -> httpx.AsyncClient:
        # trust_env=False: proxy variables in the environment must never reroute
        # prompts that carry company documents.
        return httpx.AsyncClient(timeout=self.timeout, trust_env=False, verify=_tls())

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
                    failure = LLMUnavailable if response.status_code >= 500 else LLMError
                    raise failure(
                        gettext("The language model server refused the request (%(status)s): %(reason)s")
                        % {"status": response.status_code, "reason": reason}
                    )
                content_type = response.headers.get("content-type", "")
                if not content_type.lower().startswith("text/event-stream"):
                    # A page of HTML from a proxy, or a whole JSON answer: not a stream of tokens.
                    raise LLMError(
                        gettext("The language model server did not stream its answer (it sent %(type)s).")
                        % {"type": content_type or "no content type"}
                    )
                inline = ThinkFilter()
                model = self.model
                finished = False  # "[DONE]" or a finish reason: the server ended the answer itself
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue  # comments (keep-alive pings), event names, blank lines
                    data = line[5:].strip()
                    if data == "[DONE]":
                        finished = True
                        break
                    delta, ended = _parse_chunk(data, default_model=self.model)
                    finished = finished or ended
                    if delta is None:
                        continue
                    model = delta.model
                    split = inline.feed(delta.text)
                    if split.answer or split.reasoning or delta.reasoning:
                        yield Delta(
                            text=split.answer,
                            model=model,
                            reasoning=delta.reasoning + split.reasoning,
                            server=self.base_url,
                        )
                if not finished:
                    # The connection closed without the end of the answer: what came is kept,
                    # never passed off as a whole answer.
                    raise _broken_off()
                rest = inline.close()
                if rest.answer or rest.reasoning:
                    yield Delta(text=rest.answer, model=model, reasoning=rest.reasoning, server=self.base_url)
        except httpx.ConnectError as exc:
            raise LLMUnavailable(
                gettext(
                    "The language model server at %(url)s is not reachable. "
                    "Ask an administrator to start it or check LLM_BASE_URL."
                )
                % {"url": self.base_url}
            ) from exc
        except httpx.TimeoutException as exc:
            raise LLMUnavailable(
                gettext("The language model server at %(url)s did not answer in time.") % {"url": self.base_url}
            ) from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:  # a body cut off, a connection reset
            raise _broken_off() from exc
        except httpx.HTTPError as exc:
            raise LLMUnavailable(
                gettext("The connection to the language model server failed: %(reason)s")
                % {"reason": str(exc) or type(exc).__name__}
            ) from exc

    async def models(self) -> list[str]:
        try:
            async with self._client() as client:
                response = await client.get(f"{self.base_url}/models", headers=self._headers())
                response.raise_for_status()
        except httpx.HTTPError as exc:
            raise LLMError(
                gettext("The language model server at %(url)s is not reachable.") % {"url": self.base_url}
            ) from exc
        return [m["id"] for m in response.json().get("data", [])]


@dataclass(frozen=True)
class ReportedModel:
    """A model as the server's ``/models`` describes it."""

    id: str
    context_length: int | None  # None: the server does not say


def reported_models(*, base_url: str, api_key: str = "", timeout: float = 5.0) -> list[ReportedModel]:
    """What the server at ``base_url`` says it serves, synchronously (for a page); ``LLMError`` when it cannot be asked.

    The context length is vLLM's ``max_model_len``; llama.cpp's own server says only
    the length the model was trained with (``meta.n_ctx_train``), shown when nothing
    better is known.
    """
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = f"{base_url.rstrip('/')}/models"
    try:
        # trust_env=False: as for answers, proxy variables never reroute a request.
        with httpx.Client(timeout=timeout, trust_env=False, verify=_tls()) as client:
            response = client.get(url, headers=headers)
            response.raise_for_status()
            data = response.json().get("data") or []
    except httpx.HTTPStatusError as exc:
        raise LLMError(f"The language model server at {base_url} refused ({exc.response.status_code}).") from exc
    except httpx.HTTPError as exc:
        raise LLMError(f"The language model server at {base_url} is not reachable.") from exc
    except (ValueError, AttributeError) as exc:
        raise LLMError(f"The language model server at {base_url} did not answer as an OpenAI-compatible one.") from exc
    found = []
    for entry in data:
        if not isinstance(entry, dict) or "id" not in entry:
            continue
        found.append(ReportedModel(id=str(entry["id"]), context_length=_context_length(entry)))
    return found


def _context_length(entry: dict[str, Any]) -> int | None:
    meta = entry.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    for value in (entry.get("max_model_len"), entry.get("context_length"), meta.get("n_ctx_train")):
        if isinstance(value, int) and value > 0:
            return value
    return None


def _server_message(body: str) -> str:
    try:
        error = json.loads(body).get("error", body)
    except (ValueError, AttributeError):
        return body[:300]
    if isinstance(error, dict):
        return str(error.get("message", error))[:300]
    return str(error)[:300]


def _malformed() -> LLMError:
    return LLMError(gettext("The language model server sent a malformed piece of its answer."))


def _parse_chunk(data: str, *, default_model: str) -> tuple[Delta | None, bool]:
    """One ``data:`` line: (its text, if any; whether it ends the answer). ``LLMError`` if malformed."""
    try:
        chunk: Any = json.loads(data)
    except ValueError:
        raise _malformed() from None
    if not isinstance(chunk, dict):
        raise _malformed()
    if "error" in chunk:
        raise LLMError(
            gettext("The language model failed while answering: %(reason)s") % {"reason": _server_message(data)}
        )
    choices = chunk.get("choices") or []
    if not isinstance(choices, list):
        raise _malformed()
    if not choices:
        return None, False
    choice = choices[0]
    delta = choice.get("delta") if isinstance(choice, dict) else None
    if not isinstance(choice, dict) or not isinstance(delta or {}, dict):
        raise _malformed()
    ended = bool(choice.get("finish_reason"))
    delta = delta or {}
    text = delta.get("content") or ""
    # vLLM's reasoning parsers: ``reasoning_content``, renamed ``reasoning`` in later versions.
    reasoning = delta.get("reasoning_content") or delta.get("reasoning") or ""
    if not text and not reasoning:
        return None, ended
    return Delta(text=str(text), model=str(chunk.get("model") or default_model), reasoning=str(reasoning)), ended
