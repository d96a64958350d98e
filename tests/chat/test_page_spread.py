"""The passages a search returns spread over pages: several matching passages of one page
(rows of one table) do not crowd out another page that may hold the answer."""

from __future__ import annotations

import io

import pytest

from assistant.accounts.scope import Scope
from assistant.chat.retrieval import HybridRetriever, Passage, passages_merge, passages_spread
from ingest import pipeline
from ingest import services as ingest_services
from ingest.models import Chunk, Document
from tests.factories import CollectionFactory
from tests.support.documents import make_pdf

QUESTION = "warehouse inventory count shortfall"
# Page 1 says it three times, in three passages; page 2 once, in other words around it.
CROWDED = "\n\n".join(
    f"Section {n}. The warehouse inventory count found a shortfall of {n} pallets in aisle {n}, "
    "recorded by the warehouse team during the annual inventory count and its shortfall review. "
    "Facilities, fleet and catering were also reviewed that month; nothing else was found there."
    for n in (1, 2, 3)
)
OTHER = (
    "Appendix. The auditors confirmed the inventory shortfall and asked for a second count "
    "before the close, with the cost of the missing goods written off in the quarter."
)


def _passage(chunk_id: int, page: int | None, document_id: int = 1) -> Passage:
    return Passage(
        chunk_id=chunk_id, document_id=document_id, document_name="r.pdf", collection_id=1, heading="",
        text="", page_start=page, page_end=page, score=1.0 / chunk_id, relevance=1.0 / chunk_id,
    )  # fmt: skip


def test_at_most_the_limit_of_one_page_come_first_the_rest_follow_in_order() -> None:
    passages = [_passage(1, 4), _passage(2, 4), _passage(3, 4), _passage(4, 9), _passage(5, 4, document_id=2)]
    assert [p.chunk_id for p in passages_spread(passages, per_page=1)] == [1, 4, 5, 2, 3]
    assert [p.chunk_id for p in passages_spread(passages, per_page=2)] == [1, 2, 4, 5, 3]
    assert [p.chunk_id for p in passages_spread(passages, per_page=0)] == [1, 2, 3, 4, 5]
    # A file without pages (plain text) is not held back: there is nothing to spread over.
    unpaged = [_passage(1, None), _passage(2, None), _passage(3, 1)]
    assert [p.chunk_id for p in passages_spread(unpaged, per_page=1)] == [1, 2, 3]


@pytest.fixture
def report(db, settings):
    settings.CHUNK_MAX_TOKENS = 60  # a passage per paragraph
    collection = CollectionFactory.create(name="Audit")
    document = ingest_services.document_upload(
        collection=collection, name="audit.pdf", fileobj=io.BytesIO(make_pdf([CROWDED, OTHER])), enqueue=False
    ).document
    pipeline.documents_process(document_ids=[document.pk])
    document.refresh_from_db()
    assert document.status == Document.Status.READY
    pages = list(Chunk.objects.filter(document=document).values_list("page_start", flat=True))
    assert pages.count(1) >= 3 and pages.count(2) >= 1, pages
    return collection


def test_a_search_returns_passages_of_different_pages_first(report, settings) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    retriever = HybridRetriever(scope=Scope.of([report.pk]))

    settings.RETRIEVAL_PASSAGES_PER_PAGE = 0  # the control: the crowded page fills the two places
    crowded = retriever.retrieve(QUESTION, k=2)
    assert [p.page_start for p in crowded] == [1, 1]

    settings.RETRIEVAL_PASSAGES_PER_PAGE = 1
    spread = retriever.retrieve(QUESTION, k=2)
    assert [p.page_start for p in spread] == [1, 2]
    assert [p.page_start for p in retriever.retrieve(QUESTION, k=4)] == [1, 2, 1, 1]  # then the rest, in order

    # Several searches merged (a follow-up and its rewrite) are spread the same way.
    assert [p.page_start for p in passages_merge(crowded, spread, k=2)] == [1, 2]
