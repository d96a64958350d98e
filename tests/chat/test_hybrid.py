"""Lexical, hybrid and reranked retrieval; relevance floors; the low-relevance warning."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from assistant.accounts.scope import Scope
from assistant.chat import services
from assistant.chat.events import Sources
from assistant.chat.fusion import fuse
from assistant.chat.llm import LLMClient
from assistant.chat.models import Message
from assistant.chat.retrieval import (
    HybridRetriever,
    LexicalRetriever,
    available_retrievers,
    build_retriever,
)
from ingest import pipeline
from ingest import services as ingest_services
from ingest.embedding import embed_query, from_bytes
from ingest.models import Chunk, Document
from tests.factories import CollectionFactory, UserFactory
from tests.support.processes import free_port

DOCUMENTS = {
    "travel.txt": "Travel policy\n\nThe meal allowance abroad is 60 euros per day. Hotels are booked by the office.",
    "security.txt": "IT security\n\nPasswords are rotated every ninety days. Laptops are encrypted with BitLocker.",
    "leave.txt": "Leave\n\nEmployees have 28 days of annual leave. Parental leave is sixteen weeks.",
    "code.txt": "Part numbers\n\nThe replacement valve has part number ZX-4471-B and ships from Lyon.",
    "canteen.txt": "Canteen\n\nA canteen meal costs 4 euros; there is no meal allowance for guests.",
}


@pytest.fixture
def policies(db):
    collection = CollectionFactory.create(name="Policies")
    uploaded = {
        name: ingest_services.document_upload(
            collection=collection, name=name, fileobj=io.BytesIO(text.encode()), enqueue=False
        ).document.pk
        for name, text in DOCUMENTS.items()
    }
    # One batch: one embedding call, one transaction, one write of each index.
    pipeline.documents_process(document_ids=list(uploaded.values()))
    documents = {name: Document.objects.get(pk=pk) for name, pk in uploaded.items()}
    assert all(d.status == Document.Status.READY for d in documents.values())
    return collection, documents


@pytest.mark.parametrize("kind", ["dense", "lexical", "hybrid"])
def test_every_kind_finds_the_passage_and_reports_its_cosine(policies, kind) -> None:
    collection, documents = policies
    passages = build_retriever(kind, scope=Scope.of([collection.pk])).retrieve("meal allowance abroad", k=3)
    assert passages[0].document_id == documents["travel.txt"].pk
    vector = embed_query("meal allowance abroad")
    for passage in passages:
        stored = from_bytes(Chunk.objects.get(pk=passage.chunk_id).embedding)
        assert passage.relevance == pytest.approx(float(np.dot(vector, stored)), abs=1e-3)


def test_lexical_and_hybrid_find_an_exact_code_the_words_around_it_do_not_give(policies) -> None:
    collection, documents = policies
    scope = Scope.of([collection.pk])
    for kind in ("lexical", "hybrid"):
        top = build_retriever(kind, scope=scope).retrieve("ZX-4471-B", k=1)
        assert top[0].document_id == documents["code.txt"].pk


@pytest.mark.parametrize("kind", ["lexical", "hybrid"])
def test_hidden_documents_never_returned_nor_ranked(policies, kind) -> None:
    collection, documents = policies
    travel = documents["travel.txt"]
    hidden = Scope.of([collection.pk], hidden_document_ids=[travel.pk])
    passages = build_retriever(kind, scope=hidden).retrieve("meal allowance abroad euros per day", k=50)
    assert passages
    assert travel.pk not in {p.document_id for p in passages}
    # A hidden chunk does not use up a top-k place: k=1 still yields a visible passage.
    assert len(build_retriever(kind, scope=hidden).retrieve("meal allowance abroad", k=1)) == 1
    visible = build_retriever(kind, scope=Scope.of([collection.pk])).retrieve("meal allowance abroad", k=1)
    assert visible[0].document_id == travel.pk


def test_hidden_chunks_are_scored_zero_inside_the_lexical_search(policies) -> None:
    collection, documents = policies
    travel = documents["travel.txt"]
    scope = Scope.of([collection.pk], hidden_document_ids=[travel.pk])
    hits = LexicalRetriever(scope=scope).hits("meal allowance", k=10)
    assert not set(travel.chunks.values_list("id", flat=True)) & {h.chunk_id for h in hits}


def test_hybrid_looks_up_the_hidden_chunks_once_for_both_searches(policies) -> None:
    collection, documents = policies
    other = CollectionFactory.create(name="Other")
    travel, leave = documents["travel.txt"], documents["leave.txt"]
    scope = Scope.of([collection.pk, other.pk], hidden_document_ids=[travel.pk, leave.pk])
    hidden = scope.hidden_chunk_ids()
    assert set(hidden) == {collection.pk}  # nothing of the other collection is hidden
    assert sorted(hidden[collection.pk]) == sorted(
        Chunk.objects.filter(document__in=[travel, leave]).values_list("id", flat=True)
    )
    with CaptureQueriesContext(connection) as queries:
        passages = HybridRetriever(scope=scope).retrieve("meal allowance abroad", k=5)
    assert passages and not {travel.pk, leave.pk} & {p.document_id for p in passages}
    chunk_lookups = [q["sql"] for q in queries.captured_queries if '"document_id" IN' in q["sql"]]
    # The hidden chunks of the whole scope: one query, shared by the dense and lexical scans.
    assert len([sql for sql in chunk_lookups if "NOT" not in sql]) == 1, chunk_lookups
    assert Scope.of([collection.pk]).hidden_chunk_ids() == {}


def test_the_default_fusion_is_the_setting_tuned_on_scifact_train() -> None:
    # docs/quality.md, "Fusion tuning": convex fusion at dense weight 0.7 was the best on TRAIN.
    retriever = HybridRetriever(scope=Scope.of([1]))
    assert (retriever.method, retriever.dense_weight) == ("convex", 0.7)


def test_hybrid_scores_every_candidate_with_both_retrievers(policies) -> None:
    collection, _ = policies
    retriever = HybridRetriever(scope=Scope.of([collection.pk]))
    candidates = retriever.candidates_scored("annual leave", embed_query("annual leave"), k=5)
    assert set(candidates.cosines) == set(candidates.bm25) == set(candidates.rows)
    assert max(candidates.bm25.values()) > 0


def test_fusion_weights_move_between_the_two_rankings() -> None:
    dense = {1: 0.9, 2: 0.8, 3: 0.1}
    bm25 = {1: 0.0, 2: 8.0, 3: 9.0}
    assert [c for c, _ in fuse(dense, bm25, method="convex", dense_weight=1.0, rrf_k=60)] == [1, 2, 3]
    assert [c for c, _ in fuse(dense, bm25, method="convex", dense_weight=0.0, rrf_k=60)] == [3, 2, 1]
    # Chunk 2 is nearly the best of both lists: mixed equally, it beats each list's winner.
    mixed = fuse(dense, bm25, method="convex", dense_weight=0.5, rrf_k=60)
    assert mixed[0][0] == 2
    assert mixed[0][1] == pytest.approx(0.5 * (0.8 - 0.1) / 0.8 + 0.5 * 8 / 9)
    # RRF: 1 is first by cosine only, 3 first by BM25 and last by cosine, 2 second in both.
    ranked = fuse(dense, bm25, method="rrf", dense_weight=0.5, rrf_k=1)
    assert dict(ranked) == pytest.approx({1: 0.5 / 2, 2: 0.5 / 3 + 0.5 / 3, 3: 0.5 / 4 + 0.5 / 2})
    with pytest.raises(ValueError):
        fuse(dense, bm25, method="borda", dense_weight=0.5, rrf_k=60)


def test_rerank_is_offered_only_when_configured(settings) -> None:
    settings.RERANKER_MODEL_PATH = ""
    assert available_retrievers() == ["dense", "lexical", "hybrid"]
    with pytest.raises(ValueError, match="RERANKER_MODEL_PATH"):
        build_retriever("rerank", scope=Scope.of([1]))
    with pytest.raises(ValueError, match="Unknown retriever"):
        build_retriever("magic", scope=Scope.of([1]))
    settings.RERANKER_MODEL_PATH = "/nowhere"
    assert available_retrievers() == ["dense", "lexical", "hybrid", "rerank"]


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cross-encoder folder made from the packaged MiniLM (a fresh, untrained scoring head)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from ingest.embedding import model_path

    folder = tmp_path_factory.mktemp("cross-encoder")
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(model_path(), num_labels=1)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(model_path()).save_pretrained(folder)
    return folder


def test_rerank_orders_hybrid_candidates_by_the_cross_encoders_scores(policies, settings, tiny_cross_encoder) -> None:
    from sentence_transformers import CrossEncoder

    collection, _ = policies
    settings.RERANKER_MODEL_PATH = str(tiny_cross_encoder)
    scope = Scope.of([collection.pk])
    query = "how many days of leave"
    reranked = build_retriever("rerank", scope=scope).retrieve(query, k=4)
    candidates = HybridRetriever(scope=scope).retrieve(query, k=settings.RERANKER_CANDIDATES)
    assert {p.chunk_id for p in reranked} <= {p.chunk_id for p in candidates}
    scorer = CrossEncoder(str(tiny_cross_encoder), device="cpu")
    texts = [f"{p.heading}\n{p.text}" if p.heading and not p.text.startswith(p.heading) else p.text for p in candidates]
    expected = scorer.predict([(query, text) for text in texts])
    order = [candidates[i].chunk_id for i in np.argsort(-np.asarray(expected), kind="stable")][:4]
    assert [p.chunk_id for p in reranked] == order
    assert [p.score for p in reranked] == sorted((p.score for p in reranked), reverse=True)
    # The relevance signal is still the cosine: thresholds mean the same with a reranker.
    assert all(p.relevance is not None for p in reranked)


def test_a_question_about_something_absent_finds_nothing(policies, settings) -> None:
    collection, _ = policies
    settings.RETRIEVAL_MIN_RELEVANCE = 0.2
    dead = LLMClient(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", connect_timeout=1)
    answer = services.answer_question(
        user=None, collection=collection, question="Who won the 1998 football world cup final?", llm=dead
    )
    assert answer.text == services.NOTHING_FOUND
    assert answer.citations == []
    assert answer.error == ""  # the model was never asked
    present = services.passages_retrieve(user=None, collection=collection, query="meal allowance abroad", k=5)
    assert present and all(p.relevance is not None and p.relevance >= 0.2 for p in present)


def _sources_event(user, conversation_id: int, question: str) -> Sources:
    from asgiref.sync import async_to_sync

    dead = LLMClient(base_url=f"http://127.0.0.1:{free_port()}/v1", model="m", connect_timeout=1)

    async def first() -> Sources:
        stream = services.answer_stream(user=user, conversation_id=conversation_id, question=question, llm=dead)
        async for event in stream:
            if isinstance(event, Sources):
                return event
        raise AssertionError("no sources event")

    return async_to_sync(first)()


def test_sources_event_flags_a_weak_best_passage(policies, settings) -> None:
    collection, _ = policies
    conversation = services.conversation_start(user=None, collection=collection)
    settings.RETRIEVAL_MIN_RELEVANCE = 0.0
    settings.RETRIEVAL_WEAK_RELEVANCE = 0.0
    strong = _sources_event(None, conversation.pk, "meal allowance abroad")
    assert strong.low_relevance is False
    best = max(c["relevance"] for c in strong.citations)
    settings.RETRIEVAL_WEAK_RELEVANCE = best + 0.01
    weak = _sources_event(None, conversation.pk, "meal allowance abroad")
    assert weak.low_relevance is True


def test_conversation_page_shows_the_warning_for_a_weak_answer(client, policies, settings) -> None:
    collection, _ = policies
    user = UserFactory.create(is_superuser=True)
    client.force_login(user)
    conversation = services.conversation_start(user=user, collection=collection)
    citation = {"n": 1, "document": "travel.txt", "page_label": "", "text": "x", "relevance": 0.21}
    Message.objects.create(conversation=conversation, role=Message.Role.ASSISTANT, content="a", citations=[citation])
    settings.RETRIEVAL_WEAK_RELEVANCE = 0.35
    page = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert 'class="warning"' in page and "only weakly related" in page
    settings.RETRIEVAL_WEAK_RELEVANCE = 0.2
    page = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert 'class="warning"' not in page
    # The live page gets the same text for answers streamed in.
    assert "data-low-relevance-warning=" in page


def test_document_prior_lifts_the_document_that_matched_as_a_whole() -> None:
    from assistant.chat.fusion import with_document_prior

    # Chunk 1 (document A) scores best alone; document B matched three times.
    fused = [(1, 1.0), (2, 0.9), (3, 0.85), (4, 0.8), (5, 0.2)]
    document_of = {1: 10, 2: 20, 3: 20, 4: 20, 5: 10}
    assert with_document_prior(fused, document_of, weight=0.0, top=3) == fused
    lifted = with_document_prior(fused, document_of, weight=0.5, top=3)
    assert [c for c, _ in lifted] == [2, 3, 4, 1, 5]
    # A document's lone strong passage still beats a weak passage of the favoured one.
    assert [c for c, _ in lifted].index(1) < [c for c, _ in lifted].index(5)
