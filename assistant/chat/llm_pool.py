"""Several servers of one model behind ``LLM_BASE_URL`` (comma-separated).

Each answer goes to the healthy server with the fewest answers in flight (ties: the one
that was given the fewest so far, then the order of ``LLM_BASE_URL``). A server that
fails before the first token of an answer (unreachable, timed out, a 5xx, cut off) is
taken out and the answer is asked of the next server, so the asker never sees that
failure; once a token was sent, a failure ends that answer as it did with one server
(the text already shown cannot be taken back). A server taken out is probed with
``GET /models`` when an answer is asked for ``LLM_RETRY_DOWN_AFTER_S`` after its last
failure, and by every ``/readyz``; it rejoins when the probe passes. When every server
is out, each is still tried in turn: a restarted server is used at once.

The state (in flight, out or in) is per process: each web process learns on its own
that a server died or came back, from its own answers and probes. Nothing is shared
through the database or Redis, so no server state can go stale there.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from contextlib import aclosing
from dataclasses import dataclass, replace
from typing import cast

from django.conf import settings
from django.utils.translation import gettext

from assistant.chat.llm import Delta, LLMClient, LLMError, LLMUnavailable


@dataclass(frozen=True)
class ServerState:
    """One server as this process last saw it."""

    url: str
    up: bool = True
    in_flight: int = 0
    given: int = 0  # answers started on it, for spreading ties
    error: str = ""  # why it was taken out
    down_at: float = 0.0  # the clock when it was taken out


class ServerPool:
    """The servers' states, shared by every request of this process (thread-safe)."""

    def __init__(
        self,
        urls: Sequence[str],
        *,
        retry_down_after: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not urls:
            raise ValueError("a pool needs at least one server")
        self.retry_down_after = retry_down_after
        self.clock = clock
        self._lock = threading.Lock()
        self._states = {url.rstrip("/"): ServerState(url=url.rstrip("/")) for url in urls}

    def states(self) -> list[ServerState]:
        with self._lock:
            return list(self._states.values())

    def state(self, url: str) -> ServerState:
        with self._lock:
            return self._states[url]

    def _update(self, url: str, **changes: object) -> None:
        with self._lock:
            self._states[url] = replace(self._states[url], **changes)  # type: ignore[arg-type]

    def mark_down(self, url: str, error: str) -> None:
        self._update(url, up=False, error=error, down_at=self.clock())

    def mark_up(self, url: str) -> None:
        self._update(url, up=True, error="")

    def order(self, *, tried: set[str] | None = None) -> list[str]:
        """Servers to ask, best first: those up by (in flight, given, order), then those out."""
        tried = tried or set()
        with self._lock:
            states = [s for s in self._states.values() if s.url not in tried]
            up = sorted((s for s in states if s.up), key=lambda s: (s.in_flight, s.given))
            down = sorted((s for s in states if not s.up), key=lambda s: s.down_at)
        return [s.url for s in up + down]

    def due_for_probe(self) -> list[str]:
        """Servers out for at least ``retry_down_after``: probe them before choosing."""
        now = self.clock()
        with self._lock:
            return [s.url for s in self._states.values() if not s.up and now - s.down_at >= self.retry_down_after]

    def started(self, url: str) -> None:
        with self._lock:
            state = self._states[url]
            self._states[url] = replace(state, in_flight=state.in_flight + 1, given=state.given + 1)

    def finished(self, url: str) -> None:
        with self._lock:
            state = self._states[url]
            self._states[url] = replace(state, in_flight=max(0, state.in_flight - 1))


@functools.cache
def pool_for(urls: tuple[str, ...], retry_down_after: float) -> ServerPool:
    """This process's pool for these servers (one per configuration, kept for the process's life)."""
    return ServerPool(urls, retry_down_after=retry_down_after)


def settings_pool() -> ServerPool:
    return pool_for(tuple(settings.LLM_BASE_URLS), float(settings.LLM_RETRY_DOWN_AFTER_S))


class PooledLLMClient(LLMClient):
    """``LLMClient`` over a ``ServerPool``: the same calls, any healthy server answering."""

    def __init__(self, *, pool: ServerPool, **kwargs: object) -> None:
        urls = [state.url for state in pool.states()]
        super().__init__(base_url=urls[0], **kwargs)  # type: ignore[arg-type]
        self.pool = pool
        self._options = kwargs

    @classmethod
    def from_pool_settings(cls) -> PooledLLMClient:
        return cls(
            pool=settings_pool(),
            model=settings.LLM_MODEL,
            api_key=settings.LLM_API_KEY,
            connect_timeout=settings.LLM_CONNECT_TIMEOUT,
            read_timeout=settings.LLM_READ_TIMEOUT,
        )

    def client_for(self, url: str) -> LLMClient:
        return LLMClient(base_url=url, **self._options)  # type: ignore[arg-type]

    async def probe(self, url: str) -> bool:
        """``GET /models`` on one server; it is taken out or brought back by the outcome."""
        try:
            await self.client_for(url).models()
        except LLMError as exc:
            self.pool.mark_down(url, str(exc))
            return False
        self.pool.mark_up(url)
        return True

    async def probe_all(self) -> list[ServerState]:
        """Probe every server now (``/readyz``) and give their states."""
        await asyncio.gather(*(self.probe(state.url) for state in self.pool.states()))
        return self.pool.states()

    async def stream_chat(
        self, messages: Sequence[dict[str, str]], *, max_tokens: int, temperature: float
    ) -> AsyncIterator[Delta]:
        due = self.pool.due_for_probe()
        if due:
            await asyncio.gather(*(self.probe(url) for url in due))
        tried: set[str] = set()
        failure: LLMError | None = None
        while url := next(iter(self.pool.order(tried=tried)), None):
            tried.add(url)
            sent = False
            self.pool.started(url)
            try:
                stream = cast(
                    AsyncGenerator[Delta, None],
                    self.client_for(url).stream_chat(messages, max_tokens=max_tokens, temperature=temperature),
                )
                async with aclosing(stream):
                    async for delta in stream:
                        sent = True
                        yield delta
                self.pool.mark_up(url)
                return
            except LLMUnavailable as exc:
                self.pool.mark_down(url, str(exc))
                if sent:
                    raise  # part of the answer was shown: it cannot come from another server now
                failure = exc
            finally:
                self.pool.finished(url)
        raise failure or LLMUnavailable(gettext("No language model server is configured."))

    async def models(self) -> list[str]:
        """The first answering server's models (they all serve the same one)."""
        failure: LLMError | None = None
        for url in self.pool.order():
            try:
                found = await self.client_for(url).models()
            except LLMError as exc:
                self.pool.mark_down(url, str(exc))
                failure = exc
                continue
            self.pool.mark_up(url)
            return found
        raise failure or LLMError(gettext("No language model server is configured."))
