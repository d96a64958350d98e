"""Request and response schemas of the REST API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from ninja import Schema
from pydantic import Field, model_validator

from assistant.chat.limits import MAX_QUESTION_CHARS


class ErrorBody(Schema):
    code: str = Field(description="Stable, machine-readable: not_found, validation_error, upload_too_large, ...")
    message: str = Field(description="For people; may change between versions.")
    details: list[dict[str, object]] | None = None
    limit_bytes: int | None = None


class ErrorOut(Schema):
    error: ErrorBody


class PageMeta(Schema):
    total: int
    limit: int
    offset: int


# --- Collections -----------------------------------------------------------------------


class CollectionSummary(Schema):
    total: int
    queued: int
    parsing: int
    embedding: int
    ready: int
    failed: int
    chunks: int


class CollectionOut(Schema):
    id: int
    name: str
    description: str
    created_at: datetime
    role: Literal["read", "write", "manage"] = Field(description="The caller's role on this collection.")
    summary: CollectionSummary


class CollectionPage(PageMeta):
    items: list[CollectionOut]


class CollectionIn(Schema):
    name: str = Field(min_length=1, max_length=200, pattern=r"\S")
    description: str = Field(default="", max_length=10_000)


class CollectionPatch(Schema):
    name: str | None = Field(default=None, min_length=1, max_length=200, pattern=r"\S")
    description: str | None = Field(default=None, max_length=10_000)


class MemberIn(Schema):
    user: str | None = Field(default=None, min_length=1, max_length=150, description="A username, or")
    group: str | None = Field(default=None, min_length=1, max_length=150, description="a group name.")
    role: Literal["read", "write", "manage"]

    @model_validator(mode="after")
    def _one_of(self) -> MemberIn:
        if (self.user is None) == (self.group is None):
            raise ValueError("Name either a user or a group.")
        return self


class MemberOut(Schema):
    user: str | None
    group: str | None
    role: Literal["read", "write", "manage"]
    created_at: datetime


class MemberPage(PageMeta):
    items: list[MemberOut]


# --- Documents -------------------------------------------------------------------------


class DocumentOut(Schema):
    id: int
    collection_id: int
    name: str
    status: Literal["queued", "parsing", "embedding", "ready", "failed"]
    file_type: str
    pages: int | None
    chunks: int
    progress_done: int
    progress_total: int
    attempts: int
    parent_id: int | None
    size: int
    error: str
    elapsed_s: float | None
    created_at: datetime


class DocumentPage(PageMeta):
    items: list[DocumentOut]


class UploadedOut(Schema):
    document: DocumentOut
    duplicate: bool = Field(description="The same bytes were already in the collection: nothing was queued.")


class UploadOut(Schema):
    documents: list[UploadedOut]


# --- Search and answers ----------------------------------------------------------------


class SearchIn(Schema):
    collection_id: int
    query: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS, pattern=r"\S")
    k: int = Field(default=5, ge=1, le=50)


class PassageOut(Schema):
    chunk_id: int
    document_id: int
    document: str
    page_start: int | None
    page_end: int | None
    heading: str
    text: str
    score: float


class SearchOut(Schema):
    passages: list[PassageOut]


class CitationOut(Schema):
    n: int
    document: str
    document_id: int
    page: int | None
    page_end: int | None
    page_label: str
    heading: str
    chunk_id: int
    score: float
    text: str
    cited: bool | None = Field(default=None, description="Whether the answer cites it (known once it is complete).")
    source_link: str = Field(default="", description="Where a connector found the document (a path, a URL).")


class AskIn(Schema):
    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS, pattern=r"\S")
    collection_id: int | None = Field(default=None, description="Start a new conversation on this collection, or")
    conversation_id: int | None = Field(default=None, description="continue one of yours.")

    @model_validator(mode="after")
    def _one_of(self) -> AskIn:
        if (self.collection_id is None) == (self.conversation_id is None):
            raise ValueError("Give either collection_id or conversation_id.")
        return self


class AnswerOut(Schema):
    conversation_id: int
    message_id: int
    answer: str
    citations: list[CitationOut]
    model: str
    pending_documents: int = Field(description="Documents of the collection still being indexed (not searched).")
    removed_citations: int = Field(default=0, description="Markers the model wrote that named no source, removed.")


# --- Conversations, messages, feedback -------------------------------------------------


class ConversationIn(Schema):
    collection_id: int
    title: str = Field(default="", max_length=200)


class ConversationOut(Schema):
    id: int
    collection_id: int
    title: str
    created_at: datetime
    updated_at: datetime


class ConversationPage(PageMeta):
    items: list[ConversationOut]


class MessageOut(Schema):
    id: int
    conversation_id: int
    role: Literal["user", "assistant"]
    content: str
    model: str
    citations: list[CitationOut]
    error: str
    created_at: datetime


class MessagePage(PageMeta):
    items: list[MessageOut]


class FeedbackIn(Schema):
    rating: Literal[1, -1] = Field(description="1: helpful, -1: not helpful.")
    comment: str = Field(default="", max_length=2000)


class FeedbackOut(Schema):
    message_id: int
    rating: Literal[1, -1]
    comment: str
    updated_at: datetime


# --- Audit -------------------------------------------------------------------------------


class AuditEventOut(Schema):
    id: int
    created_at: datetime
    action: str
    collection_id: int | None
    collection_name: str
    target_type: str
    target_id: str
    details: dict[str, Any]


class AuditEventPage(PageMeta):
    items: list[AuditEventOut]
