"""Two real llama.cpp servers (the packaged SmolLM2) behind one ``LLM_BASE_URL``.

One is killed (SIGKILL) between answers: every later answer comes from the other and
none fails, since none had sent a token yet; restarted on its port, the killed server
rejoins once its probe passes. Which server is preferred and when a probe is due are
forced (answers in flight, the pool's clock), never waited for.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from asgiref.sync import async_to_sync

from assistant import local_llm
from assistant.accounts.models import CollectionGrant, Role
from assistant.chat import services
from assistant.chat.llm import LLMClient
from assistant.chat.llm_pool import PooledLLMClient, ServerPool, pool_for
from tests.conftest import REPO, LLMServer
from tests.factories import CollectionFactory, DocumentFactory, UserFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf
from tests.support.processes import Process, free_port

pytestmark = pytest.mark.once
PROMPT = [{"role": "user", "content": "Say hello."}]


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
        first.start()
        pool_for.cache_clear()
