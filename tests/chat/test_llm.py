"""The one LLM client, against a real llama.cpp server and against failures."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest

from assistant.chat.llm import LLMClient, LLMError
from tests.support.processes import free_port
from tests.support.scripted_llm import ANSWER, Quiet, ScriptedLLM, Stalling

MESSAGES = [{"role": "user", "content": "Count from one to five."}]


def collect(client: LLMClient) -> list:
    async def run() -> list:
        return [d async for d in client.stream_chat(MESSAGES, max_tokens=24, temperature=0)]

    return asyncio.run(run())


def test_streams_many_pieces_with_the_served_model_id(llm) -> None:
    deltas = collect(LLMClient(base_url=llm.base_url, model=llm.model))
    assert len(deltas) > 3
    assert "".join(d.text for d in deltas).strip()
    assert {d.model for d in deltas} == {llm.model}


def test_lists_models(llm) -> None:
    assert llm.model in asyncio.run(LLMClient(base_url=llm.base_url, model=llm.model).models())


def test_server_down_is_a_readable_error() -> None:
    client = LLMClient(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", connect_timeout=1)
    with pytest.raises(LLMError, match="not reachable"):
        collect(client)


class _Refusing(Quiet):
    def do_POST(self) -> None:
        body = b'{"error": {"message": "model \\"m\\" not found"}}'
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.parametrize("http_server", [Stalling], indirect=True)
def test_a_server_that_stalls_times_out(http_server) -> None:
    client = LLMClient(base_url=http_server, model="m", read_timeout=0.5)
    with pytest.raises(LLMError, match="did not answer in time"):
        collect(client)


@pytest.mark.parametrize("http_server", [_Refusing], indirect=True)
def test_a_refusal_carries_the_server_message(http_server) -> None:
    with pytest.raises(LLMError, match=r'refused the request \(404\): model "m" not found'):
        collect(LLMClient(base_url=http_server, model="m"))


class _CloseDelimited(Quiet):
    """HTTP/1.0: the body ends when the connection closes, here before ``[DONE]``."""

    def do_POST(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunk = {"model": "m", "choices": [{"delta": {"content": "Half an"}}]}
        self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())


@pytest.mark.parametrize("http_server", [_CloseDelimited], indirect=True)
def test_a_stream_that_ends_without_its_end_is_broken_off_not_whole(http_server) -> None:
    with pytest.raises(LLMError, match="broke off its answer"):
        collect(LLMClient(base_url=http_server, model="m"))


@pytest.fixture(scope="module")
def scripted() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM().start()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("script", "message", "pieces"),
    [
        ("answer", None, ANSWER),
        ("bad_json", "malformed piece of its answer", ANSWER[:1]),
        ("cut", "broke off its answer", ANSWER[:1]),
        ("html", r"did not stream its answer \(it sent text/html\)", []),
        ("error500", r"refused the request \(500\): CUDA out of memory", []),
    ],
)
def test_malformed_streams_are_readable_errors_after_what_came(scripted, script, message, pieces) -> None:
    scripted.script = script
    seen: list[str] = []

    async def run() -> None:
        client = LLMClient(base_url=scripted.base_url, model="m")
        async for delta in client.stream_chat(MESSAGES, max_tokens=8, temperature=0):
            seen.append(delta.text)

    if message is None:
        asyncio.run(run())
    else:
        with pytest.raises(LLMError, match=message):
            asyncio.run(run())
    assert seen == pieces


def test_the_tls_settings_are_built_once_per_process(scripted, monkeypatch) -> None:
    """Loading the CA bundle for every answer cost more CPU than anything else in it."""
    import ssl

    from assistant.chat import llm as llm_module

    built: list[object] = []
    real = ssl.create_default_context

    def counting(*args, **kwargs):
        built.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(ssl, "create_default_context", counting)
    llm_module._tls.cache_clear()
    scripted.script = "answer"
    client = LLMClient(base_url=scripted.base_url, model="m")
    for _ in range(3):
        assert "".join(d.text for d in collect(client)) == "".join(ANSWER)
    assert len(built) == 1
