"""``manage.py mcp --as USER``: the same server over stdio, started by the official client SDK
as a local client (an IDE, a desktop app) starts it, with that one user's permissions."""

from __future__ import annotations

import os
import sys
from typing import Any
from urllib.parse import urlparse, urlunparse

import anyio
import pytest
from django.conf import settings as django_settings
from django.db import connection

from assistant.audit.models import AuditEvent
from tests.api.test_adversarial import Company, leaks
from tests.conftest import REPO
from tests.mcp.conftest import as_text, error_text, structured

pytestmark = pytest.mark.django_db(transaction=True)


def _database_url() -> str:
    """The test database, for the server process to use the rows this test wrote."""
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        return f"sqlite:///{name}"
    parsed = urlparse(os.environ["DATABASE_URL"])
    # Only the path's last part is the database: before it may stand a Unix socket's
    # folder (django-environ's form, the pgvector pass's server).
    folder, _, _ = parsed.path.rpartition("/")
    return urlunparse(parsed._replace(path=f"{folder}/{name}"))


def _over_stdio(username: str, company: Company) -> dict[str, Any]:
    from mcp import Client, StdioServerParameters

    # The test's own storage folders, so the server reads the indexes this test built.
    data_dir = django_settings.MEDIA_ROOT.parent
    env = {k: v for k, v in os.environ.items() if k != "CELERY_BROKER_URL"}
    env.update(ASSISTANT_DATA_DIR=str(data_dir), DATABASE_URL=_database_url(), RETRIEVAL_MIN_RELEVANCE="-1")
    server = StdioServerParameters(
        command=sys.executable, args=["manage.py", "mcp", "--as", username], env=env, cwd=str(REPO)
    )

    async def main() -> dict[str, Any]:
        async with Client(server) as client:
            return {
                "tools": {t.name for t in (await client.list_tools()).tools},
                "collections": await client.call_tool("list_collections", {}),
                "search": await client.call_tool(
                    "search", {"collection": "Company", "query": "merger code name BLUEHERON", "k": 10}
                ),
                "merger": await client.call_tool("get_document", {"document_id": company.merger.pk, "page": 1}),
                "missing": await client.call_tool("get_document", {"document_id": 10**9, "page": 1}),
                "resources": {str(r.uri) for r in (await client.list_resources()).resources},
            }

    return anyio.run(main)


def test_the_stdio_server_acts_with_exactly_one_users_permissions(settings) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    company = Company()
    bob = _over_stdio("bob", company)
    assert bob["tools"] == {"list_collections", "search", "ask", "get_document", "list_documents"}
    assert [c["name"] for c in structured(bob["collections"])["collections"]] == ["Company"]
    found = structured(bob["search"])
    assert {p["document_id"] for p in found["passages"]} == {company.handbook.pk} and leaks(found) == []
    assert error_text(bob["merger"]) == error_text(bob["missing"])
    assert bob["resources"] == {f"assistant://documents/{company.handbook.pk}"}

    alice = _over_stdio("alice", company)  # the control
    assert company.merger.pk in {p["document_id"] for p in structured(alice["search"])["passages"]}
    assert "BLUEHERON" in as_text(structured(alice["merger"])["passages"])

    searched = AuditEvent.objects.filter(action="mcp.tool_called", actor=company.bob, details__tool="search").get()
    assert searched.details["transport"] == "stdio" and searched.details["token"] == ""


def test_the_command_refuses_an_unknown_user() -> None:
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="No active user named 'nobody'"):
        call_command("mcp", "--as", "nobody")
