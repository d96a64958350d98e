"""Follow-up questions are rewritten for retrieval; answers keep only citations that exist."""

from __future__ import annotations

import json
import re

import pytest
from asgiref.sync import async_to_sync

from assistant.chat import services
from assistant.chat.events import AnswerEvent, Done, Sources, Token
from assistant.chat.llm import LLMClient
from assistant.chat.models import Message
from assistant.chat.retrieval import passages_merge
from assistant.chat.rewrite import Turn, heuristic_query
from tests.factories import CollectionFactory, DocumentFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf
from tests.support.processes import free_port
from tests.support.scripted_llm import Quiet, Stalling

pytestmark = pytest.mark.django_db

DOCUMENTS = {
    "annual-report-2022.pdf": ["Northwind annual report 2022. Revenue in 2022 was 41 million euros."],
    "annual-report-2023.pdf": [
        "Northwind annual report 2023. Revenue in 2023 was 47 million euros, up from 41 million euros in 2022."
    ],
    "holidays-2023.pdf": ["Public holidays in 2023: the office is closed on New Year's Day and on 25 December 2023."],
    "cafeteria-2023.pdf": ["Cafeteria menu for 2023: soup on Mondays, fish on Fridays, all through 2023."],
    "badges-2023.pdf": ["Badge rules updated in 2023: badges are renewed every year, starting in 2023."],
}
FIRST = "What was Northwind's revenue in 2022?"
FOLLOW_UP = "And in 2023?"


def dead_llm() -> LLMClient:
    return LLMClient(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", connect_timeout=1)


@pytest.fixture
def reports():
    collection = CollectionFactory.create(name="Reports")
    for name, pages in DOCUMENTS.items():
        DocumentFactory.create(collection=collection, name=name, content=make_pdf(pages), processed=True)
    return collection


def message_of(answer: services.Answer) -> Message:
    assert answer.message_id is not None
    return Message.objects.get(pk=answer.message_id)


def retrieved(answer: services.Answer) -> list[str]:
    return [c["document"] for c in answer.citations]


def test_heuristic_carries_the_previous_question_into_the_follow_up() -> None:
    history = [Turn("user", "Revenue in 2022?"), Turn("assistant", "41 million [1]."), Turn("user", FIRST)]
    # A follow-up that only changes a value: the previous question with it swapped in.
    assert heuristic_query(history, FOLLOW_UP) == "What was Northwind's revenue in 2023?"
    assert heuristic_query([Turn("user", "Revenue in Q1 2024?")], "and Q2?") == "Revenue in Q2 2024?"
    # Anything else: both questions searched together.
    travel = [Turn("user", "Who approves travel expenses?")]
    assert heuristic_query(travel, "What about hotels?") == "Who approves travel expenses? What about hotels?"
    assert heuristic_query(travel, "And in 2023?") == "Who approves travel expenses? And in 2023?"
    assert heuristic_query([], FOLLOW_UP) == FOLLOW_UP


def test_without_an_llm_the_follow_up_still_finds_the_right_document(reports, settings) -> None:
    settings.RETRIEVAL_TOP_K = 2
    llm = dead_llm()
    # On its own, "And in 2023?" finds the documents that merely mention 2023.
    alone = services.answer_question(user=None, collection=reports, question=FOLLOW_UP, llm=llm)
    assert "annual-report-2023.pdf" not in retrieved(alone)

    first = services.answer_question(user=None, collection=reports, question=FIRST, llm=llm)
    conversation = message_of(first).conversation
    follow = services.answer_question(
        user=None, collection=reports, question=FOLLOW_UP, llm=llm, conversation=conversation
    )
    assert retrieved(follow)[0] == "annual-report-2023.pdf"
    swapped = "What was Northwind's revenue in 2023?"
    assert follow.retrieval_query == swapped
    asked = Message.objects.filter(conversation=conversation, role=Message.Role.USER).order_by("pk")
    assert [(m.content, m.retrieval_query) for m in asked] == [(FIRST, FIRST), (FOLLOW_UP, swapped)]


class _BadMarker(Quiet):
    """Streams an answer citing a source that does not exist, the marker split across pieces."""

    PIECES = ["The meal allowance is 85 euros", " [", "1", "]. Flights go through Zephyr", " [", "7", "]."]

    def do_POST(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in self.PIECES:
            chunk = {"model": "scripted", "choices": [{"delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.mark.parametrize("http_server", [Stalling], indirect=True)
def test_a_rewrite_past_its_time_budget_falls_back_to_the_heuristic(reports, settings, http_server) -> None:
    settings.QUERY_REWRITE_TIMEOUT_S = 0.5
    first = services.answer_question(user=None, collection=reports, question=FIRST, llm=dead_llm())
    conversation = message_of(first).conversation
    slow = LLMClient(base_url=http_server, model="m", read_timeout=1)

    async def sources() -> Sources:
        async for event in services.answer_stream(
            user=None, conversation_id=conversation.pk, question=FOLLOW_UP, llm=slow
        ):
            if isinstance(event, Sources):
                return event
        raise AssertionError("no sources event")

    event = async_to_sync(sources)()
    assert event.query_rewrite == "heuristic"
    assert event.query == "What was Northwind's revenue in 2023?"


@pytest.fixture
def handbook():
    collection = CollectionFactory.create(name="Handbook")
    DocumentFactory.create(collection=collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True)
    return collection


@pytest.mark.parametrize("http_server", [_BadMarker], indirect=True)
def test_a_marker_naming_no_source_is_removed_from_the_stored_answer(handbook, http_server) -> None:
    conversation = services.conversation_start(user=None, collection=handbook)

    async def events() -> list[AnswerEvent]:
        llm = LLMClient(base_url=http_server, model="scripted")
        stream = services.answer_stream(user=None, conversation_id=conversation.pk, question="Meals?", llm=llm)
        return [event async for event in stream]

    stream = async_to_sync(events)()
    streamed = "".join(e.text for e in stream if isinstance(e, Token))
    assert "[7]" in streamed  # the page shows it while streaming...
    done = stream[-1]
    assert isinstance(done, Done)
    expected = "The meal allowance is 85 euros [1]. Flights go through Zephyr."
    assert done.text == expected  # ...and replaces it with the stored text
    assert done.removed_citations == 1
    assert [c["cited"] for c in done.citations] == [c["n"] == 1 for c in done.citations]
    stored = Message.objects.get(pk=done.message_id)
    assert stored.content == expected
    assert stored.removed_citations == 1
    assert stored.citations == done.citations


# -- with the real local LLM -----------------------------------------------------------


def test_the_llm_rewrites_a_follow_up_and_retrieval_uses_it(llm, reports, settings, caplog) -> None:
    settings.RETRIEVAL_TOP_K = 2
    settings.QUERY_REWRITE_TIMEOUT_S = 300  # what is tested is the rewrite, not a busy machine's speed
    caplog.set_level("INFO", logger="assistant.chat.rewrite")
    first = services.answer_question(user=None, collection=reports, question=FIRST)
    conversation = message_of(first).conversation
    follow = services.answer_question(user=None, collection=reports, question=FOLLOW_UP, conversation=conversation)
    assert follow.query_rewrite == "llm", caplog.text
    assert follow.retrieval_query.strip()
    # (A good rewrite may equal the heuristic's "What was Northwind's revenue in 2023?":
    # ``query_rewrite`` above says which one was used.)
    stored = Message.objects.filter(conversation=conversation, role=Message.Role.USER).last()
    assert stored is not None
    assert stored.content == FOLLOW_UP
    assert stored.retrieval_query == follow.retrieval_query
    # The rewrite and the question as asked are both searched, through the same floor.
    rewritten = services.passages_retrieve(user=None, collection=reports, query=follow.retrieval_query, k=2)
    asked = services.passages_retrieve(user=None, collection=reports, query=FOLLOW_UP, k=2)
    merged = passages_merge(rewritten, asked, k=2)
    assert [c["chunk_id"] for c in follow.citations] == [p.chunk_id for p in merged]


def test_a_real_answer_keeps_only_markers_of_its_sources(llm, handbook) -> None:
    answer = services.answer_question(user=None, collection=handbook, question="What is the meal allowance abroad?")
    assert answer.error == ""
    numbers = {int(n) for n in re.findall(r"\[(\d{1,3})\]", answer.text)}
    assert numbers <= {c["n"] for c in answer.citations}
    assert numbers == {c["n"] for c in answer.citations if c["cited"]}
    stored = message_of(answer)
    assert stored.content == answer.text
    assert stored.citations == answer.citations
    assert stored.removed_citations == answer.removed_citations


# -- a rewrite that went wrong ------------------------------------------------------------

TABLE_ANSWER = "| year | revenue |\n|---|---|\n| 2022 | 41 million euros [1] |\n\n<table><tr><td>41</td></tr></table>"


class _TableEcho(Quiet):
    """Answers with a table; asked to rewrite a follow-up, echoes the table's ``<table>`` tag."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][-1]["content"]
        text = "<table>" if "Rewritten question:" in prompt else TABLE_ANSWER
        assert "<table>" not in prompt and "|---|" not in prompt  # earlier answers reach it as plain words
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        chunk = {"model": "scripted", "choices": [{"delta": {"content": text}}]}
        self.wfile.write(f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n".encode())


@pytest.mark.parametrize("http_server", [_TableEcho], indirect=True)
def test_a_rewrite_into_markup_is_refused_and_the_question_itself_is_searched(reports, settings, http_server) -> None:
    settings.QUERY_REWRITE_TIMEOUT_S = 30
    DocumentFactory.create(
        collection=reports,
        name="price-list.html",
        content="<html><body><table><tr><td>table</td><td>table</td></tr></table></body></html>",
        processed=True,
    )
    llm = LLMClient(base_url=http_server, model="scripted")
    first = services.answer_question(user=None, collection=reports, question=FIRST, llm=llm)
    conversation = message_of(first).conversation
    question = "What is the policy on bringing dogs to the office?"

    async def stream() -> list[AnswerEvent]:
        events = services.answer_stream(user=None, conversation_id=conversation.pk, question=question, llm=llm)
        return [event async for event in events]

    events = async_to_sync(stream)()
    sources = events[0]
    assert isinstance(sources, Sources)
    assert sources.query_rewrite == "heuristic"  # "<table>" kept nothing of the question
    assert all("<table>" not in q for q in sources.searched)
    assert sources.searched[-1] == question  # the question as asked is always searched
    assert "price-list.html" not in [c["document"] for c in sources.citations]
    # Every passage given went through the floor for the query that found it, and the
    # warning is the same rule over all of them.
    floor = settings.RETRIEVAL_MIN_RELEVANCE
    assert all(c["relevance"] >= floor for c in sources.citations)
    best = max((c["relevance"] for c in sources.citations), default=None)
    assert sources.low_relevance == (best is not None and best < settings.RETRIEVAL_WEAK_RELEVANCE)
    stored = Message.objects.filter(conversation=conversation, role=Message.Role.USER).last()
    assert stored is not None and stored.retrieval_query == sources.query
