"""The chat pages: conversation list, rename, delete, one-document chats, sources and originals.

Each surface that shows a document is tried with a restricted document: an outsider
who must not see it, and a control who must.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse
from django.utils import timezone

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.chat import services
from assistant.chat.conversations import conversations_by_day, conversations_of
from assistant.chat.llm import LLMClient
from assistant.chat.models import Conversation, Message
from tests.factories import CollectionFactory, DocumentFactory, GroupFactory, UserFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db

BOARD_MINUTES = ["Board minutes. The merger with Contoso closes in March; the meal allowance is not discussed."]


def dead_llm() -> LLMClient:
    return LLMClient(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", connect_timeout=1)


@pytest.fixture
def library():
    collection = CollectionFactory.create(name="Library")
    board = GroupFactory.create(name="board")
    handbook = DocumentFactory.create(
        collection=collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True
    )
    minutes = DocumentFactory.create(
        collection=collection, name="minutes.pdf", content=make_pdf(BOARD_MINUTES), groups=[board], processed=True
    )
    outsider = UserFactory.create(username="outsider")
    member = UserFactory.create(username="member")
    member.groups.add(board)
    for user in (outsider, member):
        collection_grant(collection=collection, user=user, role=Role.READ)
    return {"collection": collection, "handbook": handbook, "minutes": minutes, "outsider": outsider, "member": member}


def test_the_list_shows_only_my_conversations_newest_first_and_searches_titles(library) -> None:
    mine_old = services.conversation_start(user=library["member"], collection=library["collection"], title="Meals")
    Conversation.objects.filter(pk=mine_old.pk).update(updated_at=timezone.now() - dt.timedelta(days=1))
    mine_new = services.conversation_start(user=library["member"], collection=library["collection"], title="Hotels")
    services.conversation_start(user=library["outsider"], collection=library["collection"], title="Not mine")
    found = conversations_of(user=library["member"])
    assert list(found) == [mine_new, mine_old]
    assert [c.title for c in conversations_of(user=library["member"], search="meal")] == ["Meals"]
    days = conversations_by_day(found)
    assert [d.label for d in days] == ["Today", "Yesterday"]


def test_rename_and_delete_need_a_post_and_the_owner(client, library) -> None:
    conversation = services.conversation_start(user=library["member"], collection=library["collection"], title="Old")
    client.force_login(library["outsider"])
    assert client.post(reverse("chat:rename", args=[conversation.pk]), {"title": "Mine now"}).status_code == 404
    assert client.post(reverse("chat:delete", args=[conversation.pk])).status_code == 404
    client.force_login(library["member"])
    client.post(reverse("chat:rename", args=[conversation.pk]), {"title": "  Travel   rules "})
    conversation.refresh_from_db()
    assert conversation.title == "Travel rules"
    # One click on Delete only asks; the confirming POST deletes.
    page = client.get(reverse("chat:delete", args=[conversation.pk]))
    assert page.status_code == 200 and "Delete this conversation?" in page.content.decode()
    assert Conversation.objects.filter(pk=conversation.pk).exists()
    assert client.post(reverse("chat:delete", args=[conversation.pk])).status_code == 302
    assert not Conversation.objects.filter(pk=conversation.pk).exists()


def test_a_restricted_document_cannot_be_chatted_with_by_an_outsider(client, library) -> None:
    minutes = library["minutes"]
    client.force_login(library["outsider"])
    assert client.post(reverse("chat:new"), {"document": minutes.pk}).status_code == 404
    assert client.get(reverse("chat:document", args=[minutes.pk])).status_code == 404
    assert client.get(reverse("chat:document_original", args=[minutes.pk])).status_code == 404
    assert not Conversation.objects.filter(document=minutes).exists()
    client.force_login(library["member"])
    response = client.post(reverse("chat:new"), {"document": minutes.pk})
    assert response.status_code == 302
    assert Conversation.objects.get(user=library["member"]).document == minutes
    original = client.get(reverse("chat:document_original", args=[minutes.pk]))
    assert original.status_code == 200 and original["Content-Type"] == "application/pdf"
    assert b"".join(original.streaming_content).startswith(b"%PDF")


def test_a_document_chat_cites_only_that_document(library) -> None:
    member, handbook = library["member"], library["handbook"]
    conversation = services.conversation_start(
        user=member, collection=library["collection"], document=library["minutes"]
    )
    answer = services.answer_question(
        user=member,
        collection=library["collection"],
        question="What is the meal allowance abroad?",
        llm=dead_llm(),
        conversation=conversation,
    )
    assert {c["document"] for c in answer.citations} <= {"minutes.pdf"}
    # The same question on the whole collection finds the handbook.
    whole = services.answer_question(
        user=member, collection=library["collection"], question="What is the meal allowance abroad?", llm=dead_llm()
    )
    assert handbook.name in {c["document"] for c in whole.citations}
    on_handbook = services.conversation_start(user=member, collection=library["collection"], document=handbook)
    found = services.answer_question(
        user=member,
        collection=library["collection"],
        question="What is the meal allowance abroad?",
        llm=dead_llm(),
        conversation=on_handbook,
    )
    assert found.citations and {c["document"] for c in found.citations} == {"handbook.pdf"}


def test_a_source_opens_for_its_reader_only_and_points_at_the_page(client, library) -> None:
    member = library["member"]
    answer = services.answer_question(
        user=member, collection=library["collection"], question="What is the meal allowance abroad?", llm=dead_llm()
    )
    assert answer.message_id is not None
    Message.objects.filter(pk=answer.message_id).update(content="Abroad it is 85 euros per day [1].")
    first = answer.citations[0]
    client.force_login(member)
    url = reverse("chat:source", args=[answer.message_id, first["n"]])
    panel = client.get(url)
    assert panel.status_code == 200
    html = panel.content.decode()
    original = reverse("chat:document_original", args=[first["document_id"]])
    assert f'href="{original}#page={first["page"]}"' in html
    assert first["document"] in html
    # Someone else's answer: nothing, whatever they may read.
    client.force_login(library["outsider"])
    assert client.get(url).status_code == 404


def test_the_conversation_page_renders_markdown_and_the_search_text(client, library) -> None:
    member = library["member"]
    conversation = services.conversation_start(user=member, collection=library["collection"], title="Meals")
    Message.objects.create(
        conversation=conversation, role="user", content="And abroad?", retrieval_query="Meal allowance abroad?"
    )
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="| a |\n|---|\n| 85 [1] |\n\n![x](http://attacker.example/p.png)",
        citations=[{"n": 1, "document": "handbook.pdf", "chunk_id": 1, "document_id": library["handbook"].pk}],
        reasoning="Thinking about page 2.",
    )
    client.force_login(member)
    html = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert "<table>" in html and 'class="cite"' in html
    assert "attacker.example/p.png" in html and 'src="http://attacker' not in html
    assert "Searched for: Meal allowance abroad? · And abroad?" in html
    assert "<summary>Reasoning</summary>" in html
    assert '<label for="question">' in html and "maxlength" not in html.split('id="question"')[1].split(">")[0]


def test_ask_streams_html_and_replace_last_drops_the_last_turn(library, settings) -> None:
    from django.test import AsyncClient

    settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    settings.LLM_CONNECT_TIMEOUT = 1
    member = library["member"]
    conversation = services.conversation_start(user=member, collection=library["collection"])
    client = AsyncClient()

    async def ask(question: str, **extra: str) -> list[dict]:
        await client.aforce_login(member)
        response = await client.post(reverse("chat:ask", args=[conversation.pk]), {"question": question, **extra})
        body = b"".join([part async for part in response.streaming_content]).decode()  # type: ignore[attr-defined]
        return [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:")]

    events = async_to_sync(ask)("What is the meal allowance abroad?")
    assert events[-1]["event"] == "error" and "html" in events[-1]
    assert Message.objects.filter(conversation=conversation).count() == 2
    async_to_sync(ask)("What is the hotel limit?", replace_last="1")
    questions = list(Message.objects.filter(conversation=conversation, role="user").values_list("content", flat=True))
    assert questions == ["What is the hotel limit?"]
