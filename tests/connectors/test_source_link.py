"""Every connector document keeps where it came from: citations and the source panel show it."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.urls import reverse

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.chat import services
from assistant.chat.llm import LLMClient
from tests.connectors.conftest import folder_connector, run, write
from tests.factories import GroupFactory, UserFactory
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db


def dead_llm() -> LLMClient:
    # No answer is needed: the citations are made before the model is asked.
    return LLMClient(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", connect_timeout=1)


def test_citations_and_the_source_panel_show_the_path_to_readers_only(client, source: Path, collection) -> None:
    hr = GroupFactory.create(name="hr")
    outsider, member = UserFactory.create(), UserFactory.create()
    member.groups.add(hr)
    for user in (outsider, member):
        collection_grant(collection=collection, user=user, role=Role.READ)
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
