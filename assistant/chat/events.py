"""Answer events, typed, and ``answer_collect``: the one fold of them into a whole answer.

``assistant.chat.services.answer_stream`` yields, in order: one ``Sources``, any number
of ``Token`` (and, from reasoning models, ``Reasoning``: never part of the answer), then
``Done`` or ``Failed``. Surfaces that stream (the chat page, the API's
``/ask/stream``, the OpenAI-compatible stream) encode the events with
``assistant.chat.sse``; surfaces that want the whole answer (the API's ``/ask``, the
non-streamed OpenAI completion, ``manage.py ask`` and ``evaluate``) fold them here, so
every surface reports the same text, citations and model for the same stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

Citation = dict[str, Any]  # ``services.citation_for``: n, document, page, ..., text, and ``cited`` at the end


@dataclass(frozen=True)
class Sources:
    """First: the numbered citations, the query retrieval searched for, and how it was made."""

    name: ClassVar[str] = "sources"
    citations: list[Citation]
    pending_documents: int  # documents of the collection (visible to the asker) still being ingested
    query: str
    query_rewrite: str  # "none", "llm" or "heuristic"
    low_relevance: bool  # the best passage is only weakly related to the question
    searched: list[str] = field(default_factory=list)  # every query searched: the rewrite, then the question


@dataclass(frozen=True)
class Token:
    """A piece of answer text as the model streams it."""

    name: ClassVar[str] = "token"
    text: str


@dataclass(frozen=True)
class Reasoning:
    """A piece of a reasoning model's thinking: shown apart, never the answer."""

    name: ClassVar[str] = "reasoning"
    text: str


@dataclass(frozen=True)
class Done:
    """The stored answer: citation markers naming no source removed, citations marked ``cited``."""

    name: ClassVar[str] = "done"
    message_id: int
    model: str
    latency_ms: int
    text: str
    citations: list[Citation]
    removed_citations: int


@dataclass(frozen=True)
class Failed:
    """Generation failed with a readable reason; the partial answer is still stored."""

    name: ClassVar[str] = "error"
    message: str
    message_id: int
    text: str
    citations: list[Citation]
    removed_citations: int


AnswerEvent = Sources | Token | Reasoning | Done | Failed


def event_fields(event: AnswerEvent) -> dict[str, Any]:
    """The event's fields in declaration order (what the wire formats carry), not copied."""
    return {f.name: getattr(event, f.name) for f in fields(event)}


@dataclass(frozen=True)
class Answer:
    text: str  # as stored: citation markers naming no source removed
    model: str
    citations: list[Citation]  # each with ``cited``: whether the answer cites it
    error: str  # empty unless generation failed
    message_id: int | None
    removed_citations: int = 0
    retrieval_query: str = ""
    query_rewrite: str = ""  # "none", "llm" or "heuristic"
    pending_documents: int = 0
    pieces: int = 0  # how many ``Token`` events the text streamed in


@dataclass
class AnswerFold:
    """An answer folded from its events one at a time, for a surface that also forwards them."""

    parts: list[str] = field(default_factory=list)
    sources: Sources | None = None
    end: Done | Failed | None = None
    pieces: int = 0

    def add(self, event: AnswerEvent) -> None:
        if isinstance(event, Sources):
            self.sources = event
        elif isinstance(event, Token):
            self.parts.append(event.text)
            self.pieces += 1
        elif isinstance(event, Reasoning):
            pass  # thinking is not the answer
        else:
            self.end = event

    def answer(self) -> Answer:
        """What has been folded so far; once ended, the stored text and citations replace the streamed ones."""
        sources, end = self.sources, self.end
        return Answer(
            text=end.text if end else "".join(self.parts),
            model=end.model if isinstance(end, Done) else "",
            citations=end.citations if end else (sources.citations if sources else []),
            error=end.message if isinstance(end, Failed) else "",
            message_id=end.message_id if end else None,
            removed_citations=end.removed_citations if end else 0,
            retrieval_query=sources.query if sources else "",
            query_rewrite=sources.query_rewrite if sources else "",
            pending_documents=sources.pending_documents if sources else 0,
            pieces=self.pieces,
        )


async def answer_collect(events: AsyncIterable[AnswerEvent]) -> Answer:
    """The whole answer of an event stream (every non-streaming surface reads answers through this)."""
    fold = AnswerFold()
    async for event in events:
        fold.add(event)
    return fold.answer()
