"""The MCP server over streamable HTTP, driven by the official MCP client SDK against the
live application: the tools, the resources, and who may see what through each of them.

The company of tests/api/test_adversarial.py: board minutes restricted to the ``board``
group inside the ``Company`` collection. Bob (staff) must not find them through any
tool or resource; Alice (staff and board) is the control who does.
"""

from __future__ import annotations

import anyio
import httpx
import pytest
from asgiref.sync import sync_to_async
from django.db import connection

from assistant.audit.models import AuditEvent
from tests.api.test_adversarial import Company, leaks
from tests.mcp.conftest import as_text, error_text, read_token, structured, with_client

pytestmark = pytest.mark.django_db(transaction=True)

TOOLS = {"list_collections", "search", "ask", "get_document", "list_documents"}
# What a client sends over plain HTTP: the headers the transport wants, and an opening request.
HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
OPENING = {
    "jsonrpc": "2.0", "id": 1, "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}},
}  # fmt: skip


@pytest.fixture(autouse=True)
def _quiet(settings) -> None:
    # Fishing queries are unrelated to every document: no floor, so a leak cannot hide behind it.
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    settings.INGEST_HEARTBEAT_S = 3600


@pytest.fixture
def company(transactional_db) -> Company:
    return Company()


def _everything(company: Company):
    """What one agent session sees through every read tool and resource."""
    collection = company.collection

    async def script(client):
        seen = {}
        seen["tools"] = (await client.list_tools()).tools
        seen["collections"] = await client.call_tool("list_collections", {})
        seen["search"] = await client.call_tool(
            "search", {"collection": "Company", "query": "merger code name BLUEHERON Heron Logistics", "k": 10}
        )
        seen["search_by_id"] = await client.call_tool(
            "search", {"collection": str(collection.pk), "query": "confidential board minutes", "k": 10}
        )
        seen["documents"] = await client.call_tool("list_documents", {"collection": "Company"})
        seen["merger"] = await client.call_tool("get_document", {"document_id": company.merger.pk, "page": 1})
        seen["missing"] = await client.call_tool("get_document", {"document_id": 10**9, "page": 1})
        seen["handbook"] = await client.call_tool("get_document", {"document_id": company.handbook.pk, "page": 1})
        seen["board_room"] = await client.call_tool("list_documents", {"collection": "Board room"})
        seen["nowhere"] = await client.call_tool("list_documents", {"collection": "Nowhere"})
        seen["resources"] = (await client.list_resources()).resources
        seen["handbook_text"] = await client.read_resource(f"assistant://documents/{company.handbook.pk}")
        for name, uri in (
            ("merger_text", f"assistant://documents/{company.merger.pk}"),
            ("merger_page", f"assistant://documents/{company.merger.pk}/pages/1"),
            ("missing_text", "assistant://documents/999999999"),
        ):
            try:
                seen[name] = await client.read_resource(uri)
            except Exception as exc:  # the SDK raises the server's error
                seen[name] = exc
        return seen

    return script


def test_a_restricted_document_is_invisible_through_every_tool_and_resource(live_url, company) -> None:
    bob = with_client(live_url, read_token(company.bob), _everything(company))

    tools = {t.name: t for t in bob["tools"]}
    assert set(tools) == TOOLS
    for tool in tools.values():  # typed, described: an agent can act on them
        assert tool.description and tool.input_schema["type"] == "object" and tool.output_schema
    assert tools["search"].input_schema["required"] == ["collection", "query"]

    assert [c["name"] for c in structured(bob["collections"])["collections"]] == ["Company"]
    [row] = structured(bob["collections"])["collections"]
    assert (row["documents"], row["ready"], row["role"]) == (1, 1, "write")

    for key in ("search", "search_by_id"):
        found = structured(bob[key])
        assert found["passages"], key  # the handbook still answers
        assert {p["document_id"] for p in found["passages"]} == {company.handbook.pk}
        assert leaks(found) == []
    listed = structured(bob["documents"])
    assert [d["id"] for d in listed["documents"]] == [company.handbook.pk] and listed["total"] == 1
    # Hidden, or absent: the same answer.
    assert error_text(bob["merger"]) == error_text(bob["missing"])
    assert leaks(error_text(bob["merger"])) == []
    assert "Staff handbook" in as_text(structured(bob["handbook"])["passages"])
    assert error_text(bob["board_room"]) == error_text(bob["nowhere"])

    uris = {str(r.uri) for r in bob["resources"]}
    assert uris == {f"assistant://documents/{company.handbook.pk}"}
    assert "Travel meal allowance" in bob["handbook_text"].contents[0].text
    assert isinstance(bob["merger_text"], Exception) and isinstance(bob["merger_page"], Exception)
    assert str(bob["merger_text"]) == str(bob["merger_page"]) == str(bob["missing_text"])
    assert leaks(str(bob["merger_text"])) == [] and leaks(str(bob["merger_page"])) == []

    # The control: Alice, in the board group, finds the minutes through the same calls.
    alice = with_client(live_url, read_token(company.alice), _everything(company))
    assert "Board room" in [c["name"] for c in structured(alice["collections"])["collections"]]
    assert company.merger.pk in {p["document_id"] for p in structured(alice["search"])["passages"]}
    assert company.merger.pk in {d["id"] for d in structured(alice["documents"])["documents"]}
    merger = structured(alice["merger"])
    assert merger["document"]["name"] == "merger.txt" and "BLUEHERON" in as_text(merger["passages"])
    assert f"assistant://documents/{company.merger.pk}" in {str(r.uri) for r in alice["resources"]}
    assert "BLUEHERON" in alice["merger_page"].contents[0].text


def test_every_tool_call_is_audited_with_the_chunks_it_returned(live_url, company) -> None:
    token = read_token(company.bob)

    async def script(client):
        found = await client.call_tool("search", {"collection": "Company", "query": "meal allowance", "k": 3})
        page = await client.call_tool("get_document", {"document_id": company.handbook.pk, "page": 1})
        await client.call_tool("list_collections", {})
        return structured(found), structured(page)

    found, page = with_client(live_url, token, script)
    events = {e.details["tool"]: e for e in AuditEvent.objects.filter(action="mcp.tool_called", actor=company.bob)}
    assert set(events) == {"search", "get_document", "list_collections"}
    search = events["search"]
    assert search.collection_id == company.collection.pk and search.details["question"] == "meal allowance"
    assert search.details["chunk_ids"] == [p["chunk_id"] for p in found["passages"]]
    assert search.details["transport"] == "http" and token.startswith(f"ast_{search.details['token']}_")
    assert search.ip == "127.0.0.1"
    assert events["get_document"].details["chunk_ids"] == [p["chunk_id"] for p in page["passages"]]
    assert events["get_document"].target_id == str(company.handbook.pk)


def test_the_ask_tool_answers_with_citations_and_no_hidden_source(live_url, company, settings, llm) -> None:
    settings.LLM_MAX_TOKENS = 24
    settings.LLM_TEMPERATURE = 0.0

    def ask(user, question: str):
        async def script(client):
            first = await client.call_tool("ask", {"collection": "Company", "question": question})
            follow = await client.call_tool(
                "ask", {"conversation_id": first.structured_content["conversation_id"], "question": "And at home?"}
            )
            neither = await client.call_tool("ask", {"question": question})
            return structured(first), structured(follow), error_text(neither)

        return with_client(live_url, read_token(user), script)

    answer, follow, neither = ask(company.bob, "What is the merger code name BLUEHERON?")
    assert answer["answer"] and answer["citations"] and follow["conversation_id"] == answer["conversation_id"]
    assert company.merger.pk not in {c["document_id"] for c in answer["citations"] + follow["citations"]}
    assert leaks(answer["citations"]) == [] and "conversation_id" in neither
    recorded = AuditEvent.objects.filter(action="mcp.tool_called", actor=company.bob, details__tool="ask").first()
    assert recorded is not None
    assert recorded.details["chunk_ids"] == [c["chunk_id"] for c in answer["citations"]]
    assert AuditEvent.objects.filter(action="question.answered", actor=company.bob).count() == 2

    control, _, _ = ask(company.alice, "What is the merger code name BLUEHERON?")
    assert company.merger.pk in {c["document_id"] for c in control["citations"]}


def test_the_endpoint_wants_a_valid_token_and_limits_each_one(live_url, company, settings) -> None:
    settings.MCP_REQUESTS_PER_MINUTE = 3
    hello = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    with httpx.Client(base_url=live_url, trust_env=False, timeout=30) as http:
        missing = http.post("/mcp", json=hello, headers=HEADERS)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        wrong = http.post("/mcp", json=hello, headers={**HEADERS, "Authorization": "Bearer ast_0000_nope"})
        assert wrong.status_code == 401
        spoofed = http.post("/mcp", json=hello, headers={**HEADERS, "Host": "evil.example"})
        assert spoofed.status_code == 400
        token = {**HEADERS, "Authorization": f"Bearer {read_token(company.bob)}"}
        statuses = [http.post("/mcp", json=hello, headers=token).status_code for _ in range(4)]
        assert statuses[:3] != [429] * 3 and statuses[3] == 429
        other = http.post(
            "/mcp", json=hello, headers={**HEADERS, "Authorization": f"Bearer {read_token(company.alice)}"}
        )
        assert other.status_code != 429  # the limit is per token
        # The web app beside it is Django as before, with its security headers.
        page = http.get("/accounts/login/")
        assert page.status_code == 200 and "content-security-policy" in page.headers


def test_a_session_belongs_to_the_token_that_opened_it(live_url, company) -> None:
    bob = {**HEADERS, "Authorization": f"Bearer {read_token(company.bob)}"}
    alice = {**HEADERS, "Authorization": f"Bearer {read_token(company.alice)}"}
    with httpx.Client(base_url=live_url, trust_env=False, timeout=30) as http:
        opened = http.post("/mcp", json=OPENING, headers=bob)
        assert opened.status_code == 200, opened.text
        session = {"Mcp-Session-Id": opened.headers["mcp-session-id"], "MCP-Protocol-Version": "2025-06-18"}
        listing = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
        assert http.post("/mcp", json=listing, headers={**alice, **session}).status_code == 404
        assert http.post("/mcp", json=listing, headers={**bob, **session}).status_code == 200  # the control


def test_a_connection_the_database_dropped_is_replaced_on_the_next_request(live_url, company) -> None:
    """A database restart or failover drops the connection the MCP thread holds; the next
    request opens a new one instead of failing until the process restarts."""
    bob = {**HEADERS, "Authorization": f"Bearer {read_token(company.bob)}"}

    def drop() -> None:  # in the one thread that runs the server's database calls
        connection.ensure_connection()
        connection.connection.close()  # under Django, as a database restart would

    with httpx.Client(base_url=live_url, trust_env=False, timeout=30) as http:
        assert http.post("/mcp", json=OPENING, headers=bob).status_code == 200
        anyio.run(sync_to_async(drop))
        again = http.post("/mcp", json=OPENING, headers=bob)
        assert again.status_code == 200, again.text
