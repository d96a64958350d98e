"""Every connector document keeps where it came from: citations and the source panel show it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from django.urls import reverse

from assistant.chat import services
from assistant.chat.llm import LLMClient
from assistant.connectors.models import ConnectorItem
from tests.connectors.conftest import folder_connector, run, write
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db


def dead_llm() -> LLMClient:
    # No answer is needed: the citations are made before the model is asked.
    return LLMClient(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", connect_timeout=1)


def test_citations_and_the_source_panel_show_the_path_to_readers_only(
    client, source: Path, collection, readers
) -> None:
    outsider, member = readers["outsider"], readers["member"]
    write(source, "hr/allowance.md", "# Allowance\n\nThe meal allowance abroad is 85 euros per day.")
    write(source, "public/canteen.md", "# Canteen\n\nThe canteen serves a meal from noon to two.")
    mapping = [{"glob": "hr/**", "groups": ["hr"]}, {"glob": "**", "groups": ["*"]}]
    run(folder_connector(collection, source, groups=mapping))
    hr_path = str(source / "hr" / "allowance.md")

    answer = services.answer_question(
        user=member, collection=collection, question="What is the meal allowance abroad?", llm=dead_llm()
    )
    cited = {c["document"]: c for c in answer.citations}
    assert cited["allowance.md"]["source_link"] == hr_path
    client.force_login(member)
    panel = client.get(reverse("chat:source", args=[answer.message_id, cited["allowance.md"]["n"]]))
    assert panel.status_code == 200 and hr_path in panel.content.decode()

    theirs = services.answer_question(
        user=outsider, collection=collection, question="What is the meal allowance abroad?", llm=dead_llm()
    )
    assert all(hr_path != c.get("source_link") for c in theirs.citations)
    assert {c["document"] for c in theirs.citations} <= {"canteen.md"}
    client.force_login(outsider)
    assert client.get(reverse("chat:source", args=[answer.message_id, cited["allowance.md"]["n"]])).status_code == 404


WIKI = "https://wiki.example.com/spaces/HR/pages/7/Allowance?from=search"
HOSTILE = "javascript://wiki.example.com/%0Aalert(document.cookie)"


def _open_in_source(html: str) -> list[str]:
    """Every "Open in source" anchor on a page, as written."""
    return [
        "<a" + part.split(">", 1)[0] + ">"
        for part in html.split("<a")[1:]
        if 'class="open-in-source"' in part.split(">", 1)[0]
    ]


def _streamed(user, conversation_id: int, question: str) -> list[dict]:
    """The events the chat page reads while an answer streams."""

    async def ask() -> list[dict]:
        client = AsyncClient()
        await client.aforce_login(user)
        response = await client.post(reverse("chat:ask", args=[conversation_id]), {"question": question})
        body = b"".join([part async for part in response.streaming_content]).decode()  # type: ignore[attr-defined]
        return [json.loads(line[5:]) for line in body.splitlines() if line.startswith("data:")]

    return async_to_sync(ask)()


@pytest.fixture
def linked(source: Path, collection, readers, settings):
    """A restricted wiki page (a web address), a public page whose link is hostile, and a readers' pair."""
    settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"  # citations come before the model is asked
    settings.LLM_BASE_URLS = [settings.LLM_BASE_URL]
    settings.LLM_CONNECT_TIMEOUT = 1
    write(source, "hr/allowance.md", "# Allowance\n\nThe meal allowance abroad is 85 euros per day.")
    write(source, "public/meals.md", "# Meals abroad\n\nA meal abroad is paid from the allowance for meals.")
    mapping = [{"glob": "hr/**", "groups": ["hr"]}, {"glob": "**", "groups": ["*"]}]
    run(folder_connector(collection, source, groups=mapping))
    # As a web or wiki connector records them: where a person opens each document.
    ConnectorItem.objects.filter(source_id__endswith="allowance.md").update(link=WIKI)
    ConnectorItem.objects.filter(source_id__endswith="meals.md").update(link=HOSTILE)
    return {"collection": collection, "outsider": readers["outsider"], "member": readers["member"]}


def test_a_web_source_opens_from_the_citation_list_and_the_panel_for_a_reader(client, linked) -> None:
    member = linked["member"]
    conversation = services.conversation_start(user=member, collection=linked["collection"])
    events = _streamed(member, conversation.pk, "What is the meal allowance abroad?")
    streamed = {c["document"]: c for c in events[0]["citations"]}
    assert events[0]["event"] == "sources" and set(streamed) == {"allowance.md", "meals.md"}
    assert streamed["allowance.md"]["source_url"] == WIKI  # what chat.js makes the link of
    assert streamed["meals.md"]["source_link"] == HOSTILE and "source_url" not in streamed["meals.md"]
    assert {c["document"]: c.get("source_url") for c in events[-1]["citations"]} == {
        "allowance.md": WIKI,
        "meals.md": None,
    }

    client.force_login(member)
    html = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    escaped = WIKI.replace("&", "&amp;")
    assert _open_in_source(html) == [
        f'<a class="open-in-source" href="{escaped}" target="_blank" rel="noopener noreferrer">'
    ]
    assert 'href="javascript' not in html and '<code class="copyable"' in html and HOSTILE in html

    numbers = {c["document"]: c["n"] for c in events[-1]["citations"]}
    message_id = events[-1]["message_id"]
    panel = client.get(reverse("chat:source", args=[message_id, numbers["allowance.md"]])).content.decode()
    assert _open_in_source(panel) == [
        f'<a class="open-in-source" href="{escaped}" target="_blank" rel="noopener noreferrer">'
    ]
    hostile = client.get(reverse("chat:source", args=[message_id, numbers["meals.md"]])).content.decode()
    assert _open_in_source(hostile) == [] and 'href="javascript' not in hostile
    assert f'<code class="copyable" title="Copy this path to open the file in its share">{HOSTILE}</code>' in hostile


def test_a_file_address_is_text_to_copy(client, linked) -> None:
    ConnectorItem.objects.filter(source_id__endswith="allowance.md").update(link="file:///srv/share/hr/allowance.md")
    member = linked["member"]
    conversation = services.conversation_start(user=member, collection=linked["collection"])
    events = _streamed(member, conversation.pk, "What is the meal allowance abroad?")
    assert not any("source_url" in c for c in events[0]["citations"])
    client.force_login(member)
    html = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert _open_in_source(html) == [] and 'href="file:' not in html
    assert ">file:///srv/share/hr/allowance.md</code>" in html


def test_an_outsider_never_sees_a_restricted_documents_link(client, linked) -> None:
    outsider = linked["outsider"]
    conversation = services.conversation_start(user=outsider, collection=linked["collection"])
    events = _streamed(outsider, conversation.pk, "What is the meal allowance abroad?")
    assert {c["document"] for c in events[0]["citations"]} == {"meals.md"}
    assert WIKI not in json.dumps(events)
    client.force_login(outsider)
    html = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert "wiki.example.com/spaces" not in html and _open_in_source(html) == []
