"""Thumbs up/down from the chat page, and the fine-tuning export."""

from __future__ import annotations

import io
import json
import re

import pytest
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from assistant.chat import services
from assistant.chat.feedback import feedback_set
from assistant.chat.models import Feedback, Message
from assistant.chat.prompts import SYSTEM_PROMPT
from assistant.chat.retrieval import Passage
from assistant.chat.services import citation_for
from ingest.models import Chunk, Document
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db


def _chunk(collection, name: str, text: str, page: int) -> Chunk:
    document = Document.objects.create(collection=collection, name=name, content_hash=name, status="ready")
    document.file.save(name, ContentFile(b"x"), save=True)
    return Chunk.objects.create(
        document=document, collection=collection, ordinal=0, text=text, page_start=page, page_end=page, embedding=b""
    )


def _answered(user, collection, question: str, answer: str, chunks: list[Chunk], error: str = "") -> Message:
    conversation = services.conversation_start(user=user, collection=collection)
    Message.objects.create(conversation=conversation, role="user", content=question)
    passages = [
        Passage(c.pk, c.document_id, c.document.name, collection.pk, "", c.text, c.page_start, c.page_end, 0.9)
        for c in chunks
    ]
    return Message.objects.create(
        conversation=conversation,
        role="assistant",
        content=answer,
        chunk_ids=[c.pk for c in chunks],
        citations=[citation_for(n, p) for n, p in enumerate(passages, start=1)],
        error=error,
    )


@pytest.fixture
def setup():
    user = UserFactory.create(is_superuser=True)
    collection = CollectionFactory.create()
    meals = _chunk(collection, "travel.pdf", "Meals abroad are paid up to 50 EUR a day.", 2)
    parking = _chunk(collection, "site.pdf", "Parking is free in garage B.", 7)
    good = _answered(user, collection, "Meal allowance abroad?", "Up to 50 EUR a day [1].", [meals])
    bad = _answered(user, collection, "Where to park?", "On the roof [1].", [parking, meals])
    failed = _answered(user, collection, "Anything?", "", [meals], error="The LLM server is not reachable.")
    return user, collection, good, bad, failed, parking


def test_thumbs_from_the_chat_page_with_csrf(setup) -> None:
    user, _, good, _, _, _ = setup
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get(reverse("chat:conversation", args=[good.conversation_id]))
    html = page.content.decode()
    assert reverse("chat:feedback", args=[good.pk]) in html
    csrf = page.cookies["csrftoken"].value
    url = reverse("chat:feedback", args=[good.pk])
    assert client.post(url, {"rating": "1"}).status_code == 403  # no CSRF token
    saved = client.post(url, {"rating": "-1", "comment": "too vague"}, headers={"X-CSRFToken": csrf})
    assert saved.status_code == 200 and saved.json()["rating"] == -1
    client.post(url, {"rating": "1"}, headers={"X-CSRFToken": csrf})
    feedback = Feedback.objects.get(message=good, user=user)
    assert feedback.rating == 1 and feedback.comment == ""
    assert client.post(url, {"rating": "2"}, headers={"X-CSRFToken": csrf}).status_code == 400
    html = client.get(reverse("chat:conversation", args=[good.conversation_id])).content.decode()
    assert re.search(r'value="1" class="link chosen"', html)


def test_no_feedback_on_other_peoples_answers_or_on_questions(setup) -> None:
    _, _, good, _, _, _ = setup
    client = Client()
    client.force_login(UserFactory.create(is_superuser=True))
    assert client.post(reverse("chat:feedback", args=[good.pk]), {"rating": "1"}).status_code == 404
    question = good.conversation.messages.get(role="user")
    owner = Client()
    owner.force_login(good.conversation.user)
    assert owner.post(reverse("chat:feedback", args=[question.pk]), {"rating": "1"}).status_code == 404
    assert not Feedback.objects.exists()


def _export(*args: str) -> list[dict]:
    out = io.StringIO()
    call_command("export_feedback", "--out", "-", *args, stdout=out, stderr=io.StringIO())
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_export_rebuilds_what_the_model_saw(setup, tmp_path) -> None:
    user, _, good, bad, failed, parking = setup
    feedback_set(user=user, message=good, rating=1, comment="exact")
    feedback_set(user=user, message=bad, rating=-1, comment="garage B, not the roof")
    feedback_set(user=user, message=failed, rating=-1)
    # A chunk deleted since the answer is rebuilt from the citation stored with it.
    parking.document.delete()
    target = tmp_path / "all.jsonl"
    call_command("export_feedback", "--out", str(target), stderr=io.StringIO())
    records = [json.loads(line) for line in target.read_text().splitlines()]
    assert len(records) == 2  # the failed answer teaches nothing
    first, second = records
    assert [m["role"] for m in first["messages"]] == ["system", "user", "assistant"]
    assert first["messages"][0]["content"] == SYSTEM_PROMPT
    user_turn = first["messages"][1]["content"]
    assert '<source id="1" document="travel.pdf" page="2">' in user_turn
    assert "Meals abroad are paid up to 50 EUR a day." in user_turn
    assert user_turn.endswith("Question: Meal allowance abroad?")
    assert first["messages"][2]["content"] == "Up to 50 EUR a day [1]."
    assert (first["rating"], first["comment"]) == (1, "exact")
    assert (
        '<source id="1" document="site.pdf" page="7">\nParking is free in garage B.' in second["messages"][1]["content"]
    )
    assert '<source id="2" document="travel.pdf"' in second["messages"][1]["content"]
    assert second["rating"] == -1
    assert [r["rating"] for r in _export("--rating", "up")] == [1]
    assert [r["comment"] for r in _export("--rating", "down")] == ["garage B, not the roof"]


def test_portal_download_is_for_superusers_only(setup) -> None:
    user, _, good, _, _, _ = setup
    feedback_set(user=user, message=good, rating=1)
    admin = Client()
    admin.force_login(user)
    response = admin.get(reverse("portal:feedback_export") + "?rating=up")
    assert response.status_code == 200
    assert response["Content-Disposition"] == 'attachment; filename="feedback-up.jsonl"'
    lines = response.getvalue().decode().splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["messages"][-1]["content"] == good.content
    staff = Client()
    staff.force_login(UserFactory.create(is_staff=True))
    assert staff.get(reverse("portal:feedback_export")).status_code == 403


def test_export_gives_the_passages_as_the_user_was_shown_them_redacted(settings) -> None:
    """Under ``PII_REDACTION=answer`` the model and the user saw placeholders: so does the export."""
    from ingest.redaction import pii_redact

    settings.PII_REDACTION = "answer"
    user = UserFactory.create(is_superuser=True)
    collection = CollectionFactory.create()
    raw = "Payroll questions go to payroll.officer@example.com or +44 20 7946 0958."
    chunk = _chunk(collection, "payroll.md", raw, 1)
    message = _answered(user, collection, "Who handles payroll?", "The payroll officer [1].", [chunk])
    shown = pii_redact(raw, ner=False)
    assert "payroll.officer@example.com" not in shown
    message.citations = [{**c, "text": shown} for c in message.citations]  # as answer_stream stores them
    message.save(update_fields=["citations"])
    feedback_set(user=user, message=message, rating=1)
    [record] = _export()
    prompt = record["messages"][1]["content"]
    assert shown in prompt
    assert "payroll.officer@example.com" not in prompt and "7946 0958" not in prompt


def test_export_leaves_out_answers_drawn_from_restricted_documents(setup) -> None:
    """A model fine-tuned on a restricted text could repeat it to anyone who asks it."""
    from django.contrib.auth.models import Group

    from ingest import services as ingest_services

    user, _, good, bad, _, parking = setup
    feedback_set(user=user, message=good, rating=1)
    feedback_set(user=user, message=bad, rating=-1)
    board = Group.objects.create(name="board")
    ingest_services.document_restrict(document=parking.document, groups=[board])
    assert [r["message_id"] for r in _export()] == [good.pk]
    ingest_services.document_delete(document=parking.document)  # deleted while restricted: still left out
    assert [r["message_id"] for r in _export()] == [good.pk]
