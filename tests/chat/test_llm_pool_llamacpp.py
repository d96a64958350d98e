"""Two real llama.cpp servers (the packaged SmolLM2) behind one ``LLM_BASE_URL``.

One is killed (SIGKILL) between answers: every later answer comes from the other and
none fails, since none had sent a token yet; restarted on its port, the killed server
rejoins once its probe passes. Killed with answers in flight: the one that had shown a
token ends with the reason, the one still waiting for its first token is answered by
the other server, and the other server's own answer goes on. Which server is preferred
and when a probe is due are forced (answers in flight, the pool's clock), and a server
is frozen (SIGSTOP) before it is killed so that its answers stand where the test put
them; nothing is waited for by the clock.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

import psutil
import pytest
from asgiref.sync import async_to_sync

from assistant import local_llm
from assistant.accounts.models import CollectionGrant, Role
from assistant.chat import services
from assistant.chat.llm import Delta, LLMClient, LLMUnavailable
from assistant.chat.llm_pool import PooledLLMClient, ServerPool, pool_for
from tests.conftest import REPO, LLMServer
from tests.factories import CollectionFactory, DocumentFactory, UserFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf
from tests.support.processes import Process, free_port

pytestmark = pytest.mark.once
PROMPT = [{"role": "user", "content": "Say hello."}]
# An answer long enough to be still under way when its server is frozen after its first token.
LONG = [{"role": "user", "content": "Count from 1 to 300, one number per line."}]


@dataclass
class Llama:
    name: str
    port: int
    log_dir: object
    process: Process | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        command = local_llm.server_command(port=self.port, threads=1, context=2048)
        self.process = Process(self.name, command, env=dict(os.environ), log_dir=self.log_dir, cwd=REPO)  # type: ignore[arg-type]
        self.process.wait_http(f"{self.base_url}/models", timeout=120)

    def freeze(self) -> None:
        assert self.process is not None
        self.process.kill(signal.SIGSTOP)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.proc.wait(timeout=30)
        self.process.stop()  # closes the log

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


@dataclass(frozen=True)
class Shared:
    base_url: str


@pytest.fixture(scope="module")
def llamas(tmp_path_factory: pytest.TempPathFactory, llama_server: LLMServer) -> Iterator[tuple[Llama, Shared]]:
    """A server of this module's own (the one killed) beside the suite's shared one."""
    first = Llama("llama-a", free_port(), tmp_path_factory.mktemp("llama-a"))
    try:
        first.start()
        yield first, Shared(llama_server.base_url)
    finally:
        first.stop()


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def ask(client: LLMClient) -> str:
    async def collect() -> str:
        return "".join([d.text async for d in client.stream_chat(PROMPT, max_tokens=8, temperature=0.0)])

    return async_to_sync(collect)()


def test_a_killed_server_is_left_out_and_rejoins_once_restarted(llamas) -> None:
    first, second = llamas
    clock = Clock()
    from django.conf import settings

    pool = ServerPool([first.base_url, second.base_url], retry_down_after=30.0, clock=clock)
    client = PooledLLMClient(pool=pool, model=settings.LLM_MODEL, connect_timeout=2.0, read_timeout=120.0)

    answers = [ask(client), ask(client)]
    assert [pool.state(s.base_url).given for s in llamas] == [1, 1]  # spread over both

    first.kill()
    answers += [ask(client) for _ in range(3)]
    assert all(answer.strip() for answer in answers)  # none failed
    assert not pool.state(first.base_url).up
    assert "not reachable" in pool.state(first.base_url).error
    assert pool.state(first.base_url).given == 2  # asked once after the kill, never again
    assert pool.state(second.base_url).given == 4

    first.start()  # the same port
    ask(client)
    assert not pool.state(first.base_url).up  # its probe is not due yet
    clock.now += 30.0
    pool.started(second.base_url)  # the second is busy: a rejoined first takes the next answer
    assert ask(client).strip()
    assert pool.state(first.base_url).up
    assert pool.state(first.base_url).given == 3
    pool.finished(second.base_url)


@pytest.mark.django_db
def test_the_chat_answers_while_one_server_is_dead(llamas, settings) -> None:
    first, second = llamas
    pool_for.cache_clear()
    settings.LLM_BASE_URLS = [first.base_url, second.base_url]
    settings.LLM_BASE_URL = first.base_url
    settings.LLM_MAX_TOKENS = 16
    collection = CollectionFactory.create()
    DocumentFactory.create(collection=collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True)
    user = UserFactory.create()
    CollectionGrant.objects.create(collection=collection, user=user, role=Role.READ)
    try:
        first.kill()
        for _ in range(2):
            answer = services.answer_question(user=user, collection=collection, question="What is the meal allowance?")
            assert answer.error == "" and answer.text.strip()
    finally:
        if first.process is not None and first.process.proc.poll() is None:
            first.kill()  # the test failed before it: frozen, it would hold the port
        first.start()
        pool_for.cache_clear()


async def connections_to(port: int, *, at_least: int) -> None:
    """Until this process holds ``at_least`` open connections to ``port`` (a frozen server still accepts them)."""
    for _ in range(2400):
        found = [
            c
            for c in psutil.Process().net_connections(kind="tcp")
            if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED
        ]
        if len(found) >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {at_least} connections to port {port}")


def test_a_server_killed_with_answers_in_flight(llamas) -> None:
    first, second = llamas
    from django.conf import settings

    pool = ServerPool([first.base_url, second.base_url], retry_down_after=30.0, clock=Clock())
    client = PooledLLMClient(pool=pool, model=settings.LLM_MODEL, connect_timeout=2.0, read_timeout=120.0)

    def stream() -> AsyncIterator[Delta]:
        return client.stream_chat(LONG, max_tokens=400, temperature=0.0)

    async def scenario() -> tuple[str, str, str, str]:
        shown = stream()  # on the first server: both idle, it comes first
        shown_text = (await anext(shown)).text
        first.freeze()  # its answer stops where it is, one token shown
        other = stream()  # on the second: the first has an answer in flight
        other_text = (await anext(other)).text
        assert [pool.state(s.base_url).in_flight for s in llamas] == [1, 1]
        waiting = asyncio.create_task(collect(stream()))  # on the first again: a tie, given 1 each
        await connections_to(first.port, at_least=2)  # sent, and no token can come
        first.kill()
        with pytest.raises(LLMUnavailable) as ended:
            async for delta in shown:
                shown_text += delta.text
        other_text += await collect(other)
        return shown_text, str(ended.value), other_text, await waiting

    async def collect(answer: AsyncIterator[Delta]) -> str:
        return "".join([d.text async for d in answer])

    try:
        shown, reason, other, waited = async_to_sync(scenario)()
        assert shown  # the part shown stays, and the answer ends with why
        assert reason == "The language model server broke off its answer before it was complete."
        assert other.strip() and waited.strip()  # the other server's answer went on; the waiting one moved
        assert [pool.state(s.base_url).given for s in llamas] == [2, 2]
        assert not pool.state(first.base_url).up
        assert pool.state(second.base_url).up
        assert [pool.state(s.base_url).in_flight for s in llamas] == [0, 0]
        assert ask(client).strip()  # and the next answer comes from the second
        assert pool.state(second.base_url).given == 3
    finally:
        if first.process is not None and first.process.proc.poll() is None:
            first.kill()  # the test failed before it: frozen, it would hold the port
        first.start()
