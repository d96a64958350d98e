"""A question answered right after a sync, through the product's one answer path.

Every connector's tests hold the same two items at their source: a public one about
parking and one restricted to ``hr`` about salaries, each edited once at the source.
``assert_answers`` asks ``answer_question`` (what the chat page, the API and MCP call)
as the ``readers`` fixture's outsider and member, and checks what the answers cite.

The model is a scripted OpenAI-compatible server on loopback (tests/support/scripted_llm.py)
that always cites source [1]: what an answer cites is what retrieval gave it first, so
no check depends on a language model's wording. Every passage is a candidate (no
relevance floor), so an old version or a restricted item cannot hide below it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from assistant.chat import services as chat
from ingest.models import Collection
from tests.support.scripted_llm import MODEL, ScriptedLLM


@dataclass(frozen=True)
class Versions:
    """An item's text as first synced and once edited at the source, and the words only each holds."""

    question: str
    before: str
    after: str
    old_words: str
    new_words: str

    def text(self, *, edited: bool) -> str:
        return self.after if edited else self.before


PARKING = Versions(
    question="Who issues parking permits?",
    before="Parking permits are issued by reception on the ground floor.",
    after="Parking permits are now issued by the quokka desk in the basement.",
    old_words="ground floor",
    new_words="quokka desk",
)
SALARIES = Versions(
    question="What are the salary bands?",
    before="The salary bands run from A to F for every department.",
    after="The salary bands now run from A to H after the walrus review.",
    old_words="from A to F",
    new_words="walrus review",
)


@pytest.fixture(scope="session")
def scripted_llm() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM().start()
    yield server
    server.stop()


@pytest.fixture
def answering(settings, scripted_llm: ScriptedLLM) -> ScriptedLLM:
    """Answers come from the scripted model; no relevance floor hides a passage."""
    scripted_llm.script = "answer"
    settings.LLM_BASE_URL = scripted_llm.base_url
    settings.LLM_BASE_URLS = [scripted_llm.base_url]
    settings.LLM_MODEL = MODEL
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    return scripted_llm


def citations(user: Any, collection: Collection, question: str) -> list[dict[str, Any]]:
    """The sources the answer to ``question``, asked by ``user`` in a new conversation, came with."""
    answer = chat.answer_question(user=user, collection=collection, question=question)
    assert not answer.error, answer.error
    return list(answer.citations)


def assert_cites(user: Any, collection: Collection, versions: Versions, document: str, *, edited: bool) -> None:
    """The answer cites ``document``'s current text; no source it was given carries the replaced one."""
    found = citations(user, collection, versions.question)
    now, gone = (versions.new_words, versions.old_words) if edited else (versions.old_words, versions.new_words)
    assert any(c["cited"] and c["document"] == document and now in c["text"] for c in found), found
    assert not any(gone in c["text"] for c in found), found


def assert_never_cites(user: Any, collection: Collection, versions: Versions, document: str) -> None:
    """Neither ``document`` nor any version of its text is among the answer's sources."""
    found = citations(user, collection, versions.question)
    assert found, "no sources at all: the check could not see a leak"
    assert not [
        c
        for c in found
        if c["document"] == document or versions.old_words in c["text"] or versions.new_words in c["text"]
    ], found


def assert_answers(*, collection: Collection, readers: dict, public: str, restricted: str, edited: bool) -> None:
    """What readers' answers cite now, before or after the edit at the source.

    The outsider's answer about parking cites ``public`` as it is now, and the one about
    salaries never cites ``restricted``; the member's (the control) cites it as it is now.
    """
    outsider, member = readers["outsider"], readers["member"]
    assert_cites(outsider, collection, PARKING, public, edited=edited)
    assert_never_cites(outsider, collection, SALARIES, restricted)
    assert_cites(member, collection, SALARIES, restricted, edited=edited)
