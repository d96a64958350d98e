"""What the source panel shows for one citation, and the document it opens.

Every passage here goes through the same checks as retrieval (``services.passage_get``,
``services.document_passages``): a citation of a document since hidden from the
user shows nothing, and the original file is served only to whoever may read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.urls import reverse
from django.utils.safestring import SafeString
from django.utils.translation import gettext, gettext_noop

from assistant.accounts.selectors import document_for
from assistant.chat.feedback import answer_for
from assistant.chat.rendering import cited_sentences, highlighted_html
from assistant.chat.retrieval import Passage
from assistant.chat.services import document_passages, passage_get
from assistant.connectors.selectors import source_link
from ingest.models import Chunk, Document

NO_SUCH_SOURCE = gettext_noop("This source does not exist or you may not read it.")
# The word a file type's "page" goes by in the source panel (translated by page_unit).
SLIDE, SHEET, PAGE = gettext_noop("slide"), gettext_noop("sheet"), gettext_noop("page")
PAGE_UNITS = {"pptx": SLIDE, "ppt": SLIDE, "odp": SLIDE, "xlsx": SHEET, "xls": SHEET, "csv": SHEET}
# Shown in the browser's own viewer; everything else gets the rendered preview.
INLINE_TYPES = {"pdf": "application/pdf"}


@dataclass(frozen=True)
class SourceView:
    n: int
    passage: Passage
    document: Document
    text: SafeString  # the passage, the sentences the answer cited it for highlighted
    unit: str  # "page", "slide", "sheet" in the user's language
    page: int | None
    before: Passage | None
    after: Passage | None
    original_url: str  # opens the original at the passage's page
    source_link: str = ""  # where a connector found it (a path to copy, a URL); empty for an upload


def page_unit(document: Document) -> str:
    return gettext(PAGE_UNITS.get((document.file_type or "").lower(), PAGE))


def original_url(document: Document, page: int | None) -> str:
    """The original at ``page``: a PDF in the browser's own viewer (``#page=N``), others as the preview."""
    if (document.file_type or "").lower() in INLINE_TYPES:
        url = reverse("chat:document_original", args=[document.pk])
        return f"{url}#page={page}" if page else url
    url = reverse("chat:document", args=[document.pk])
    return f"{url}#page-{page}" if page else url


def _neighbours(*, user: Any, document: Document, passage: Passage) -> tuple[Passage | None, Passage | None]:
    """The passages just before and after ``passage`` in its document, if the user may read them."""
    ordinal = Chunk.objects.filter(pk=passage.chunk_id).values_list("ordinal", flat=True).first()
    if ordinal is None:
        return None, None
    ids = dict(
        Chunk.objects.filter(document_id=passage.document_id, ordinal__in=[ordinal - 1, ordinal + 1]).values_list(
            "ordinal", "pk"
        )
    )
    found: dict[int, Passage] = {}
    for pk in ids.values():
        for p in document_passages(user=user, document=document, chunk_ids=(pk, pk)):
            found[p.chunk_id] = p
    before, after = ids.get(ordinal - 1), ids.get(ordinal + 1)
    return (found.get(before) if before else None), (found.get(after) if after else None)


def source_view(*, user: Any, message_id: int, n: int) -> SourceView:
    """Citation ``n`` of one of the user's answers, as they may read it now; else PermissionDenied."""
    message = answer_for(user=user, message_id=message_id)
    citation = next((c for c in message.citations or [] if c.get("n") == n), None)
    if citation is None or not citation.get("chunk_id"):
        raise PermissionDenied(NO_SUCH_SOURCE)
    passage = passage_get(user=user, chunk_id=int(citation["chunk_id"]))
    document = document_for(user=user, document_id=passage.document_id)
    before, after = _neighbours(user=user, document=document, passage=passage)
    return SourceView(
        n=n,
        passage=passage,
        document=document,
        text=highlighted_html(cited_sentences(passage.text, answer=message.content, n=n)),
        unit=page_unit(document),
        page=passage.page_start,
        before=before,
        after=after,
        original_url=original_url(document, passage.page_start),
        source_link=source_link(document_id=document.pk),
    )


@dataclass(frozen=True)
class PreviewPage:
    number: int | None
    passages: list[Passage]


def document_preview(*, user: Any, document_id: int) -> tuple[Document, list[PreviewPage]]:
    """A document's readable text grouped by page, for formats the browser cannot show itself."""
    document = document_for(user=user, document_id=document_id)
    pages: list[PreviewPage] = []
    for passage in document_passages(user=user, document=document):
        if pages and pages[-1].number == passage.page_start:
            pages[-1].passages.append(passage)
        else:
            pages.append(PreviewPage(number=passage.page_start, passages=[passage]))
    return document, pages


def document_original(*, user: Any, document_id: int) -> tuple[Document, str]:
    """The document and the content type to serve its original file with, if ``user`` may read it."""
    document = document_for(user=user, document_id=document_id)
    if document.status != Document.Status.READY:
        raise PermissionDenied(NO_SUCH_SOURCE)
    return document, INLINE_TYPES.get((document.file_type or "").lower(), "application/octet-stream")
