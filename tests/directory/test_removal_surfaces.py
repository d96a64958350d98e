"""A person taken out of a group, in the directory or by SCIM, stops seeing its restricted
document in chat and through MCP as well as in the REST API (tests/directory/test_ldap.py and
test_scim_providers.py); a control still in the group keeps seeing it.

Chat: the answer service every chat surface calls, against a scripted LLM server (what the
model says does not matter; the citations are what retrieval let through). MCP: the live
application with the official client SDK and the person's own API token, ``search`` and ``ask``.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.test import Client

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.chat import services as chat
from assistant.directory.scim.tokens import scim_token_create
from ingest.models import Collection, Document
from tests.api.test_adversarial import HANDBOOK, MERGER, process, store
from tests.directory.test_ldap import LDIF, _uid, sign_in
from tests.directory.test_scim_providers import GROUP, PATCH_OP, USER, Scim
from tests.mcp.conftest import live_url, read_token, structured, with_client  # noqa: F401 (live_url: a fixture)
from tests.support import slapd as slapd_support
from tests.support.scripted_llm import MODEL, ScriptedLLM
from tests.support.slapd import READER_DN, READER_PASSWORD, SUFFIX, Slapd

pytestmark = pytest.mark.django_db(transaction=True)
QUESTION = "What is the merger code name?"


@pytest.fixture(scope="module")
def scripted_llm():
    server = ScriptedLLM().start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _answers(settings, scripted_llm: ScriptedLLM) -> None:
    settings.LLM_BASE_URL = scripted_llm.base_url
    settings.LLM_BASE_URLS = [scripted_llm.base_url]
    settings.LLM_MODEL = MODEL
    # Every passage is a candidate: a leak cannot hide behind the relevance floor.
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    settings.INGEST_HEARTBEAT_S = 3600


def _library(board: Group, staff: Group) -> tuple[Collection, Document]:
    collection = Collection.objects.create(name="Library")
    collection_grant(collection=collection, role=Role.READ, group=staff)
    minutes, _ = process(
        store(collection, "board-minutes.txt", MERGER, groups=[board]), store(collection, "handbook.txt", HANDBOOK)
    )
    return collection, minutes


def _chat_cites(user: Any, collection: Collection) -> set[int]:
    user.refresh_from_db()
    answer = chat.answer_question(user=user, collection=collection, question=QUESTION)
    assert not answer.error, answer.error
    return {c["document_id"] for c in answer.citations}


def _mcp_sees(url: str, user: Any) -> set[int]:
    """Document ids an agent with this person's token is shown by ``search`` and ``ask``."""

    async def script(client) -> set[int]:
        found = structured(await client.call_tool("search", {"collection": "Library", "query": QUESTION, "k": 10}))
        asked = structured(await client.call_tool("ask", {"collection": "Library", "question": QUESTION}))
        return {p["document_id"] for p in found["passages"]} | {c["document_id"] for c in asked["citations"]}

    return with_client(url, read_token(user), script)


def _sees_everywhere(url: str, user: Any, collection: Collection, minutes: Document) -> bool:
    in_chat = minutes.pk in _chat_cites(user, collection)
    through_mcp = minutes.pk in _mcp_sees(url, user)
    assert in_chat == through_mcp, (user.username, in_chat, through_mcp)
    return in_chat


@pytest.mark.once  # its own slapd, no pass-specific settings
@pytest.mark.skipif(bool(slapd_support.available()), reason=slapd_support.available() or "slapd")
def test_removed_in_the_directory_loses_the_document_in_chat_and_mcp(settings, live_url) -> None:  # noqa: F811
    server = Slapd(LDIF)
    try:
        settings.LDAP_SERVER_URI = server.uri
        settings.LDAP_ENABLED = True
        settings.LDAP_BIND_DN, settings.LDAP_BIND_PASSWORD = READER_DN, READER_PASSWORD
        settings.LDAP_USER_SEARCH_BASE = f"ou=people,{SUFFIX}"
        settings.LDAP_GROUP_SEARCH_BASE = f"ou=groups,{SUFFIX}"
        settings.LDAP_USER_DN_TEMPLATE = ""
        settings.LDAP_GROUP_MAP = {}
        settings.LDAP_GROUP_PREFIX = "ldap:"
        settings.AUTHENTICATION_BACKENDS = [
            *settings.AUTHENTICATION_BACKENDS, "assistant.directory.backends.DirectoryBackend",
        ]  # fmt: skip
        collection, minutes = _library(Group.objects.create(name="ldap:board"), Group.objects.create(name="ldap:staff"))
        _, hank = sign_in("hank")
        _, dave = sign_in("dave")  # the control: stays a director
        assert _sees_everywhere(live_url, hank, collection, minutes)
        server.modify(
            f"dn: cn=directors,ou=groups,{SUFFIX}\nchangetype: modify\ndelete: member\nmember: {_uid('hank')}\n"
        )
        call_command("directory", "sync")
        assert not _sees_everywhere(live_url, hank, collection, minutes)
        assert _sees_everywhere(live_url, dave, collection, minutes)
    finally:
        server.stop()


def test_removed_or_deactivated_by_scim_loses_the_document_in_chat_and_mcp(live_url) -> None:  # noqa: F811
    scim = Scim(scim_token_create(name="idp").plaintext)
    people = {
        name: scim.call("post", "/Users", {"schemas": [USER], "userName": f"{name}@example.com"}, expect=201)["id"]
        for name in ("ann", "ben", "cid")
    }
    board = scim.call("post", "/Groups", {"schemas": [GROUP], "displayName": "Board"}, expect=201)["id"]
    staff = Group.objects.create(name="staff")
    users = {name: get_user_model().objects.get(pk=int(pk)) for name, pk in people.items()}
    for user in users.values():
        user.groups.add(staff)
    collection, minutes = _library(Group.objects.get(pk=int(board)), staff)
    scim.call(
        "patch", f"/Groups/{board}",
        {"schemas": [PATCH_OP], "Operations": [
            {"op": "add", "path": "members", "value": [{"value": pk} for pk in people.values()]},
        ]},
    )  # fmt: skip
    ann, ben, cid = users["ann"], users["ben"], users["cid"]
    assert _sees_everywhere(live_url, ann, collection, minutes)
    scim.call(
        "patch", f"/Groups/{board}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "remove", "path": f'members[value eq "{people["ann"]}"]'}]},
    )  # fmt: skip
    assert not _sees_everywhere(live_url, ann, collection, minutes)
    assert _sees_everywhere(live_url, ben, collection, minutes)  # the control

    # Deactivated: the person's token no longer opens MCP, and their chat session is over.
    token = read_token(cid)
    browser = Client()
    browser.force_login(cid)
    assert browser.get("/").status_code == 200
    scim.call(
        "patch", f"/Users/{people['cid']}",
        {"schemas": [PATCH_OP], "Operations": [{"op": "replace", "value": {"active": False}}]},
    )  # fmt: skip
    hello = {"jsonrpc": "2.0", "id": 1, "method": "ping"}
    headers = {"Accept": "application/json, text/event-stream", "Authorization": f"Bearer {token}"}
    assert httpx.post(f"{live_url}/mcp", json=hello, headers=headers, trust_env=False, timeout=30).status_code == 401
    assert browser.get("/").status_code == 302  # back to the sign-in page
    assert _sees_everywhere(live_url, ben, collection, minutes)  # the control, still in the group
