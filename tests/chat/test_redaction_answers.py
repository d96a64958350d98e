"""Answer-time PII redaction, with the real local LLM: stored text stays, what leaves is redacted."""

from __future__ import annotations

import pytest

from assistant.chat import services
from assistant.chat.models import Message
from ingest.models import Chunk
from ingest.redaction import pii_find
from tests.factories import CollectionFactory, DocumentFactory
from tests.support.relay import RecordingRelay

pytestmark = pytest.mark.django_db

DIRECTORY = (
    "# Payroll contacts\n\n"
    "Payroll questions go to payroll.officer@example.com or +44 20 7946 0958. Salaries are paid "
    "from IBAN GB82 WEST 1234 5698 7654 32. The travel card is 4111 1111 1111 1111 and the "
    "officer's SSN is 123-45-6789. Payroll runs on the 25th; invoice 2024-000123 was 1,299.99 euros.\n"
)
ORIGINALS = ["payroll.officer@example.com", "7946 0958", "GB82 WEST", "4111 1111 1111 1111", "123-45-6789"]


@pytest.fixture
def directory():
    collection = CollectionFactory.create(name="HR")
    DocumentFactory.create(collection=collection, name="payroll.md", content=DIRECTORY, processed=True)
    return collection


def _all_citation_text(citations) -> str:
    return "\n".join(f"{c['heading']}\n{c['text']}" for c in citations)


def test_answer_mode_redacts_what_the_model_sees_citations_and_the_answer(llm, settings, directory) -> None:
    settings.PII_REDACTION = "answer"
    settings.LLM_TEMPERATURE = 0.0
    settings.LLM_MAX_TOKENS = 60
    stored_text = "\n".join(Chunk.objects.filter(collection=directory).values_list("text", flat=True))
    for original in ORIGINALS:
        assert original in stored_text  # the database keeps the text as it was

    relay = RecordingRelay(llm.base_url.removesuffix("/v1"))
    with relay.running():
        settings.LLM_BASE_URL = relay.url + "/v1"
        answer = services.answer_question(
            user=None, collection=directory, question="How do I contact payroll? Give the e-mail and phone number."
        )
    assert answer.error == ""
    assert answer.message_id is not None
    prompt = relay.requests[0]["json"]["messages"][1]["content"]
    shown = _all_citation_text(answer.citations)
    message = Message.objects.get(pk=answer.message_id)
    stored = _all_citation_text(message.citations)
    for original in ORIGINALS:
        assert original not in prompt
        assert original not in shown
        assert original not in stored
        assert original not in answer.text
    for placeholder in ("[EMAIL]", "[PHONE]", "[IBAN]", "[CARD]", "[NATIONAL_ID]"):
        assert placeholder in prompt and placeholder in shown
    assert "2024-000123" in shown and "1,299.99" in shown  # not personal data
    assert message.content == answer.text
    assert pii_find(answer.text) == []


def test_answer_mode_redacts_personal_data_the_model_writes(llm, settings) -> None:
    """The model may write personal data it was never given (here: copied from the question).

    The collection holds no personal data, so the model gets the same prompt in both
    modes and, at temperature 0, writes the same text: the run without redaction
    shows that it does write the address, the run with redaction that it is removed.
    """
    collection = CollectionFactory.create(name="Contacts")
    DocumentFactory.create(
        collection=collection, name="contacts.md", processed=True,
        content=b"# Contacts\n\nPeople share their contact details with the help desk.",
    )  # fmt: skip
    settings.LLM_TEMPERATURE = 0.0
    settings.LLM_MAX_TOKENS = 60
    question = "Anna's e-mail is anna.berg@example.org. Write Anna's e-mail."

    settings.PII_REDACTION = "off"
    plain = services.answer_question(user=None, collection=collection, question=question)
    assert "anna.berg@example.org" in plain.text.lower(), plain.text  # the model does copy it

    settings.PII_REDACTION = "answer"
    answer = services.answer_question(user=None, collection=collection, question=question)
    assert answer.error == ""
    assert "anna.berg@example.org" not in answer.text.lower()
    assert "[EMAIL]" in answer.text
    assert answer.message_id is not None
    assert Message.objects.get(pk=answer.message_id).content == answer.text


def test_retrieve_only_passages_are_redacted_in_answer_mode(settings, directory) -> None:
    settings.PII_REDACTION = "answer"
    passages = services.passages_retrieve(user=None, collection=directory, query="payroll contact", k=3)
    assert passages
    text = "\n".join(p.text for p in passages)
    assert "[EMAIL]" in text and "payroll.officer@example.com" not in text


def test_off_by_default_shows_passages_as_stored(settings, directory) -> None:
    assert settings.PII_REDACTION == "off"
    passages = services.passages_retrieve(user=None, collection=directory, query="payroll contact", k=3)
    assert "payroll.officer@example.com" in "\n".join(p.text for p in passages)
