"""The one LLM client, against a real llama.cpp server and against failures."""

from __future__ import annotations

import asyncio

import pytest

from assistant.chat.llm import LLMClient, LLMError
from tests.support.processes import free_port
from tests.support.scripted_llm import Quiet, Stalling

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
