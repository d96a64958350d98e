"""A live ASGI server (the product's own application: Django plus ``/mcp``) on loopback,
and the official MCP client SDK connected to it with a personal API token."""

from __future__ import annotations

import json
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import anyio
import pytest

from assistant.accounts.services import token_create
from tests.support.processes import free_port
from tests.support.waiting import wait_until

T = TypeVar("T")


@pytest.fixture
def live_url(transactional_db) -> Iterator[str]:
    """uvicorn serving a fresh copy of ``assistant.asgi.application`` in a thread of this process.

    In this process, so the test's settings (storage folders, the LLM server) and its
    database are the server's; a fresh application each time, because the SDK's
    session manager runs once per application.
    """
    import uvicorn
    from django.core.asgi import get_asgi_application

    from assistant.mcp.http import with_mcp

    port = free_port()
    config = uvicorn.Config(
        with_mcp(get_asgi_application()), host="127.0.0.1", port=port, lifespan="on", log_level="warning",
        access_log=False, proxy_headers=False,
    )  # fmt: skip
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 30, "the live server did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def read_token(user: Any) -> str:
    return token_create(user=user, name="mcp client", scope="read").plaintext


def with_client(url: str, token: str, script: Callable[[Any], Awaitable[T]]) -> T:
    """Run ``script(client)`` with the official SDK's client connected over streamable HTTP."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async def main() -> T:
        headers = {"Authorization": f"Bearer {token}"}
        timeout = httpx2.Timeout(30, read=300)
        async with (
            httpx2.AsyncClient(headers=headers, trust_env=False, timeout=timeout) as http,
            Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client,
        ):
            return await script(client)

    return anyio.run(main)


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    return dict(result.structured_content)


def error_text(result: Any) -> str:
    assert result.is_error
    return " ".join(getattr(c, "text", "") for c in result.content)


def as_text(payload: Any) -> str:
    return payload if isinstance(payload, str) else json.dumps(payload, default=str)
