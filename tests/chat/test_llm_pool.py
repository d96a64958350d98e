"""Several LLM servers (``LLM_BASE_URL`` with commas): choice, fail-over and rejoining.

Scripted OpenAI-compatible servers on loopback, each told how to behave: states are
forced (answers in flight, a server taken out, the pool's clock), never waited for.
The same behaviour against two real llama.cpp servers, one killed and restarted, is in
``test_llm_pool_llamacpp.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync

from assistant.chat.llm import LLMClient, LLMError
from assistant.chat.llm_pool import PooledLLMClient, ServerPool, pool_for, settings_pool
from tests.support.scripted_llm import ANSWER, MODEL, ScriptedLLM

WHOLE = "".join(ANSWER)
PROMPT = [{"role": "user", "content": "What is the meal allowance abroad?"}]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def servers() -> Iterator[tuple[ScriptedLLM, ScriptedLLM]]:
    first, second = ScriptedLLM().start(), ScriptedLLM().start()
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def pooled(servers: tuple[ScriptedLLM, ...], clock: Clock) -> PooledLLMClient:
    pool = ServerPool([s.base_url for s in servers], retry_down_after=10.0, clock=clock)
    return PooledLLMClient(pool=pool, model=MODEL, connect_timeout=2.0, read_timeout=30.0)


def ask(client: LLMClient) -> str:
    async def collect() -> str:
        return "".join([d.text async for d in client.stream_chat(PROMPT, max_tokens=32, temperature=0.0)])

    return async_to_sync(collect)()


def test_each_answer_goes_to_the_server_with_fewest_in_flight(servers, clock) -> None:
    first, second = servers
    client = pooled(servers, clock)
    client.pool.started(first.base_url)  # an answer is streaming from the first
    assert ask(client) == WHOLE
    assert (first.requests, second.requests) == (0, 1)
    client.pool.finished(first.base_url)
    # Both idle now; the first has been given fewer answers in all (1 against 1, then order).
    assert ask(client) == WHOLE and ask(client) == WHOLE
    assert first.requests + second.requests == 3
    assert all(state.in_flight == 0 for state in client.pool.states())


def test_a_server_down_before_the_first_token_is_taken_out_and_the_next_answers(servers, clock) -> None:
    first, second = servers
    client = pooled(servers, clock)
    first.stop()  # connection refused
    assert ask(client) == WHOLE
    assert second.requests == 1
    state = client.pool.state(first.base_url)
    assert not state.up and "not reachable" in state.error
    # Taken out: the next answers skip it without trying.
    ask(client)
    assert client.pool.order() == [second.base_url, first.base_url]


def test_a_500_before_the_first_token_is_asked_again_elsewhere(servers, clock) -> None:
    first, second = servers
    first.script = "error500"
    client = pooled(servers, clock)
    assert ask(client) == WHOLE
    assert (first.requests, second.requests) == (1, 1)
    assert not client.pool.state(first.base_url).up


def test_a_refusal_that_is_not_the_servers_fault_is_not_retried(servers, clock) -> None:
    """A 4xx (the prompt too long, say) would be refused by every server alike."""
    first, second = servers
    first.script = second.script = "answer"
    client = pooled(servers, clock)

    class Refusing(LLMClient):
        async def stream_chat(self, messages, *, max_tokens, temperature):
            raise LLMError("The language model server refused the request (400): too long")
            yield  # pragma: no cover

    client.client_for = lambda url: Refusing(base_url=url, model=MODEL)  # type: ignore[method-assign]
    with pytest.raises(LLMError, match="400"):
        ask(client)
    assert all(state.up for state in client.pool.states())


def test_a_failure_after_the_first_token_ends_that_answer(servers, clock) -> None:
    """Text already shown cannot be taken back: the answer fails, the server is taken out."""
    first, second = servers
    first.script = "cut"  # one piece, then the connection closes
    client = pooled(servers, clock)
    pieces: list[str] = []

    async def collect() -> None:
        async for delta in client.stream_chat(PROMPT, max_tokens=32, temperature=0.0):
            pieces.append(delta.text)

    with pytest.raises(LLMError, match="broke off"):
        async_to_sync(collect)()
    assert pieces == [ANSWER[0]] and second.requests == 0
    assert not client.pool.state(first.base_url).up
    assert client.pool.state(first.base_url).in_flight == 0
    assert ask(client) == WHOLE  # the next answer comes from the other


def test_a_server_taken_out_rejoins_when_its_probe_passes(servers, clock) -> None:
    first, second = servers
    client = pooled(servers, clock)
    first.stop()
    ask(client)
    assert not client.pool.state(first.base_url).up
    first.start()  # back on the same port
    ask(client)
    assert not client.pool.state(first.base_url).up  # not probed before LLM_RETRY_DOWN_AFTER_S
    clock.now += 10.0
    client.pool.started(second.base_url)  # the second is busy: the first, back, takes the answer
    before = first.requests
    assert ask(client) == WHOLE
    assert client.pool.state(first.base_url).up
    assert first.requests == before + 1


def test_a_probe_that_fails_keeps_the_server_out(servers, clock) -> None:
    first, _ = servers
    client = pooled(servers, clock)
    first.stop()
    ask(client)
    clock.now += 10.0
    down_at = client.pool.state(first.base_url).down_at
    ask(client)
    assert not client.pool.state(first.base_url).up
    assert client.pool.state(first.base_url).down_at > down_at  # probed again, later


def test_when_every_server_is_out_each_is_still_tried(servers, clock) -> None:
    first, second = servers
    client = pooled(servers, clock)
    first.stop()
    second.stop()
    with pytest.raises(LLMError, match="not reachable"):
        ask(client)
    assert not any(state.up for state in client.pool.states())
    second.start()
    assert ask(client) == WHOLE  # no wait for a probe: out or not, it is asked
    assert client.pool.state(second.base_url).up


def test_one_url_keeps_the_plain_client(settings) -> None:
    settings.LLM_BASE_URLS = ["http://127.0.0.1:1/v1"]
    settings.LLM_BASE_URL = "http://127.0.0.1:1/v1"
    client = LLMClient.from_settings()
    assert type(client) is LLMClient


@pytest.fixture
def configured(settings, servers) -> Iterator[tuple[ScriptedLLM, ScriptedLLM]]:
    pool_for.cache_clear()
    settings.LLM_BASE_URLS = [s.base_url for s in servers]
    settings.LLM_BASE_URL = servers[0].base_url
    settings.LLM_MODEL = MODEL
    yield servers
    pool_for.cache_clear()


def test_several_urls_give_a_pooled_client_sharing_this_processs_state(configured) -> None:
    client = LLMClient.from_settings()
    assert isinstance(client, PooledLLMClient)
    assert client.pool is LLMClient.from_settings().pool is settings_pool()  # type: ignore[attr-defined]


@pytest.mark.django_db
def test_readyz_names_each_servers_state(client, configured) -> None:
    first, second = configured
    first.stop()
    body = client.get("/readyz").json()
    llm = body["checks"]["llm"]
    assert llm["status"] == "ok", body  # one server answers: ready
    assert f"{first.base_url}: out" in llm["detail"]
    assert f"{second.base_url}: up, 0 answers in flight" in llm["detail"]
    assert not settings_pool().state(first.base_url).up  # the probe took it out
    first.start()
    body = client.get("/readyz").json()
    assert f"{first.base_url}: up" in body["checks"]["llm"]["detail"]
    assert settings_pool().state(first.base_url).up  # and brought it back
    first.stop()
    second.stop()
    response = client.get("/readyz")
    assert response.status_code == 503 and "llm" in response.json()["failing"]


@pytest.mark.django_db
def test_metrics_show_each_servers_state(client, settings, configured) -> None:
    first, second = configured
    settings.METRICS_ENABLED = True
    settings_pool().mark_down(first.base_url, "test")
    settings_pool().started(second.base_url)
    text = client.get("/metrics").content.decode()
    assert f'assistant_llm_server_up{{server="{first.base_url}"}} 0.0' in text
    assert f'assistant_llm_server_up{{server="{second.base_url}"}} 1.0' in text
    assert f'assistant_llm_server_in_flight{{server="{second.base_url}"}} 1.0' in text
