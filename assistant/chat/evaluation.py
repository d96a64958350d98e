"""Retrieval quality: BEIR-format and QA-set loading, and the evaluation loops.

``manage.py evaluate`` drives these. The metrics themselves (BEIR's definitions) are
in ``assistant.chat.metrics``, shared with ``bench/``. A document is ranked by its
best passage: a retriever returns passages, and the evaluation keeps the first
passage of each document.
"""

from __future__ import annotations

import fnmatch
import io
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from django.conf import settings

from assistant.chat.metrics import mrr_at_k, ndcg_at_k, percentile, recall_at_k
from assistant.chat.retrieval import Passage, Retriever
from ingest.management.selection import files_in_folder
from ingest.models import Collection, Document


class EvaluationInputError(ValueError):
    """An input folder or file that cannot be evaluated; the message says where and why."""


# -- ranking -------------------------------------------------------------------------


def ranked_documents(passages: Sequence[Passage], keys: Mapping[int, Sequence[str]]) -> list[str]:
    """Document keys in rank order, each document at the rank of its best passage.

    ``keys`` maps a document id to the dataset ids it stands for (usually one; several
    when the corpus holds identical texts, which the pipeline stores once).
    """
    seen: set[int] = set()
    ranked: list[str] = []
    for passage in passages:
        if passage.document_id in seen:
            continue
        seen.add(passage.document_id)
        ranked.extend(keys.get(passage.document_id, ()))
    return ranked


# -- BEIR format ---------------------------------------------------------------------


@dataclass(frozen=True)
class CorpusDocument:
    id: str
    title: str
    text: str

    @property
    def content(self) -> str:
        return f"{self.title.strip()}\n\n{self.text.strip()}" if self.title.strip() else self.text.strip()


@dataclass
class BeirDataset:
    root: Path
    split: str
    queries: dict[str, str]  # the split's queries that have relevant documents, in file order
    qrels: dict[str, dict[str, int]]
    skipped: list[str] = field(default_factory=list)  # why some judged queries are not evaluated

    @property
    def corpus_path(self) -> Path:
        return self.root / "corpus.jsonl"

    def corpus(self) -> Iterator[CorpusDocument]:
        for number, row in _jsonl(self.corpus_path):
            doc_id, text = row.get("_id"), row.get("text")
            if not isinstance(doc_id, str | int) or str(doc_id) == "" or not isinstance(text, str):
                raise EvaluationInputError(f"{self.corpus_path}, line {number}: needs a string '_id' and 'text'.")
            title = row.get("title") or ""
            yield CorpusDocument(id=str(doc_id), title=str(title), text=text)


def _jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; a bad line is an error naming it."""
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise EvaluationInputError(f"{path}, line {number}: not valid JSON ({exc}).") from exc
            if not isinstance(row, dict):
                raise EvaluationInputError(f"{path}, line {number}: expected a JSON object.")
            yield number, row


def beir_load(root: Path, split: str = "test", limit: int | None = None) -> BeirDataset:
    """Read a BEIR-format folder: ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""
    if not root.is_dir():
        raise EvaluationInputError(f"{root} is not a folder.")
    missing = [name for name in ("corpus.jsonl", "queries.jsonl", "qrels") if not (root / name).exists()]
    if missing:
        raise EvaluationInputError(
            f"{root} is not a BEIR-format folder: {', '.join(missing)} missing "
            "(expected corpus.jsonl, queries.jsonl and qrels/<split>.tsv)."
        )
    qrels_path = root / "qrels" / f"{split}.tsv"
    if not qrels_path.is_file():
        splits = sorted(p.stem for p in (root / "qrels").glob("*.tsv"))
        raise EvaluationInputError(
            f"No split '{split}' in {root}: qrels/{split}.tsv is missing (splits there: {', '.join(splits) or 'none'})."
        )
    qrels: dict[str, dict[str, int]] = {}
    with open(qrels_path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            parts = line.rstrip("\n").split("\t")
            if len(parts) < 3:
                raise EvaluationInputError(f"{qrels_path}, line {number}: expected query-id, corpus-id and score.")
            try:
                score = int(float(parts[2]))
            except ValueError as exc:
                if number == 1:
                    continue  # the header row
                raise EvaluationInputError(
                    f"{qrels_path}, line {number}: the score {parts[2]!r} is not a number."
                ) from exc
            qrels.setdefault(parts[0], {})[parts[1]] = score
    skipped = [q for q, judged in qrels.items() if not any(s > 0 for s in judged.values())]
    queries: dict[str, str] = {}
    for number, row in _jsonl(root / "queries.jsonl"):
        query_id, text = str(row.get("_id", "")), row.get("text")
        if query_id not in qrels or query_id in skipped:
            continue
        if not isinstance(text, str) or not text.strip():
            raise EvaluationInputError(f"{root / 'queries.jsonl'}, line {number}: query {query_id!r} has no text.")
        queries[query_id] = text
    without_text = [q for q in qrels if q not in queries and q not in skipped]
    if without_text:
        skipped.append(f"{len(without_text)} judged queries are missing from queries.jsonl")
    if not queries:
        raise EvaluationInputError(f"No query of split '{split}' in {root} has a relevant document and a text.")
    if limit is not None:
        queries = dict(list(queries.items())[:limit])
    return BeirDataset(root=root, split=split, queries=queries, qrels=qrels, skipped=skipped)


# -- evaluation loops ----------------------------------------------------------------


DEEP_K = 100  # Recall@100 is always reported


def retrieve_documents(retriever: Retriever, query: str, keys: Mapping[int, Sequence[str]], want: int) -> list[str]:
    """At least ``want`` distinct documents, when the collection has them, best first.

    A document may have many passages, so more passages than documents are asked for,
    and more again while the answer is full but still short of ``want`` documents.
    """
    depth = want * 3
    while True:
        passages = retriever.retrieve(query, k=depth)
        ranked = ranked_documents(passages, keys)
        if len(ranked) >= want or len(passages) < depth or depth >= want * 24:
            return ranked
        depth *= 2


def beir_evaluate(
    retriever: Retriever,
    dataset: BeirDataset,
    keys: Mapping[int, Sequence[str]],
    *,
    k: int,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, float]:
    """Mean metrics over the dataset's queries, and retrieval latency percentiles in ms.

    The latency is that of one retrieval of ``k`` passages, what answering a question
    costs (query embedding, search, database check); the deeper retrieval behind
    Recall@100 (hundreds of passages) is an artefact of measuring and is not timed.
    """
    deep = max(DEEP_K, k)
    totals = {"ndcg": 0.0, "recall": 0.0, "recall_deep": 0.0, "mrr": 0.0}
    latencies: list[float] = []
    retriever.retrieve("warm-up query", k=1)  # model loading is not a query's latency
    for done, (query_id, text) in enumerate(dataset.queries.items(), start=1):
        clock = time.perf_counter()
        retriever.retrieve(text, k=k)
        latencies.append((time.perf_counter() - clock) * 1000)
        ranked = retrieve_documents(retriever, text, keys, deep)
        judged = dataset.qrels[query_id]
        relevant = {doc for doc, score in judged.items() if score > 0}
        totals["ndcg"] += ndcg_at_k(ranked, judged, k)
        totals["recall"] += recall_at_k(ranked, relevant, k)
        totals["recall_deep"] += recall_at_k(ranked, relevant, DEEP_K)
        totals["mrr"] += mrr_at_k(ranked, relevant, k)
        if progress:
            progress(done, len(dataset.queries))
    n = len(dataset.queries)
    return {
        f"ndcg@{k}": round(totals["ndcg"] / n, 4),
        f"recall@{k}": round(totals["recall"] / n, 4),
        f"recall@{DEEP_K}": round(totals["recall_deep"] / n, 4),
        f"mrr@{k}": round(totals["mrr"] / n, 4),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "queries": n,
    }


# -- QA sets -------------------------------------------------------------------------


@dataclass(frozen=True)
class GoldPage:
    document: str  # a glob over file names
    page: int  # 1-based


@dataclass(frozen=True)
class QAItem:
    line: int
    question: str
    gold_documents: tuple[str, ...]
    gold_pages: tuple[GoldPage, ...] = ()
    answer: str | None = None


def name_matches(name: str, pattern: str) -> bool:
    """Shell-style glob over a file name, ignoring case."""
    return fnmatch.fnmatchcase(name.lower(), pattern.lower())


def qa_load(path: Path) -> list[QAItem]:
    """Read a QA set: one JSON object per line with ``question`` and ``gold_documents``."""
    if not path.is_file():
        raise EvaluationInputError(f"No such QA file: {path}")
    items: list[QAItem] = []
    for number, row in _jsonl(path):
        where = f"{path}, line {number}"
        question = row.get("question")
        if not isinstance(question, str) or not question.strip():
            raise EvaluationInputError(f"{where}: 'question' must be a non-empty string.")
        gold = row.get("gold_documents")
        if not isinstance(gold, list) or not gold or not all(isinstance(g, str) and g.strip() for g in gold):
            raise EvaluationInputError(f"{where}: 'gold_documents' must be a non-empty list of file-name globs.")
        pages: list[GoldPage] = []
        raw_pages = row.get("gold_pages", [])
        if not isinstance(raw_pages, list):
            raise EvaluationInputError(f"{where}: 'gold_pages' must be a list.")
        for entry in raw_pages:
            if (
                not isinstance(entry, dict)
                or not isinstance(entry.get("document"), str)
                or not isinstance(entry.get("page"), int)
                or isinstance(entry.get("page"), bool)
                or entry["page"] < 1
            ):
                raise EvaluationInputError(
                    f"{where}: each gold page needs a 'document' glob and a 1-based integer 'page'."
                )
            pages.append(GoldPage(document=entry["document"], page=entry["page"]))
        answer = row.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise EvaluationInputError(f"{where}: 'answer' must be a string when given.")
        items.append(QAItem(number, question.strip(), tuple(gold), tuple(pages), answer))
    if not items:
        raise EvaluationInputError(f"{path} holds no questions.")
    return items


def document_recall(passages: Sequence[Passage], item: QAItem) -> float:
    """Share of the gold document globs matched by a passage of the retrieved context."""
    names = {p.document_name for p in passages}
    found = sum(1 for pattern in item.gold_documents if any(name_matches(n, pattern) for n in names))
    return found / len(item.gold_documents)


def page_hit(passages: Sequence[Passage], item: QAItem) -> bool:
    """True when a passage of a gold document lies on a gold page (starts, ends or spans it)."""
    for gold in item.gold_pages:
        for p in passages:
            if p.page_start is None or not name_matches(p.document_name, gold.document):
                continue
            if p.page_start <= gold.page <= (p.page_end or p.page_start):
                return True
    return False


def cites_gold(citations: Sequence[Mapping[str, Any]], item: QAItem) -> bool:
    """True when the answer cited (not merely was given) a passage of a gold document."""
    return any(
        c.get("cited") and any(name_matches(str(c.get("document", "")), g) for g in item.gold_documents)
        for c in citations
    )


def qa_evaluate(retriever: Retriever, items: Sequence[QAItem], *, k: int) -> dict[str, Any]:
    """Document recall@k and, over the items that name gold pages, page recall@k."""
    recall = 0.0
    page_hits = 0
    with_pages = [i for i in items if i.gold_pages]
    latencies: list[float] = []
    retriever.retrieve("warm-up query", k=1)
    for item in items:
        clock = time.perf_counter()
        passages = retriever.retrieve(item.question, k=k)
        latencies.append((time.perf_counter() - clock) * 1000)
        recall += document_recall(passages, item)
        if item.gold_pages and page_hit(passages, item):
            page_hits += 1
    return {
        f"recall@{k}": round(recall / len(items), 4),
        f"page_recall@{k}": round(page_hits / len(with_pages), 4) if with_pages else None,
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "questions": len(items),
    }


# -- ingestion through the normal pipeline ---------------------------------------------


def _corpus_name(doc_id: str) -> str:
    # The corpus id is the document's name, so a collection kept from an earlier run
    # maps its hits back without any other record. Quoted: ids may hold slashes.
    return quote(doc_id, safe="") + ".txt"


def corpus_id_of(name: str) -> str:
    return unquote(name.removesuffix(".txt"))


def beir_ingest(
    collection: Collection, dataset: BeirDataset, *, progress: Callable[[int], None] | None = None
) -> dict[int, list[str]]:
    """Store each corpus line as one text document and process them here, in batches.

    A batch is as many documents as the workers would group themselves (count and
    bytes), uploaded in one transaction and then embedded together. Returns, for each
    document id, the corpus ids it stands for (identical texts are stored once).
    """
    from ingest import pipeline, services

    keys: dict[int, list[str]] = {}
    per_batch = max(1, settings.INGEST_BATCH_DOCUMENTS)
    max_bytes = settings.INGEST_BATCH_MAX_BYTES
    batch: list[CorpusDocument] = []
    size = 0
    done = 0

    def flush() -> None:
        nonlocal done
        outcomes = services.documents_upload_many(
            collection=collection,
            files=[(_corpus_name(doc.id), io.BytesIO(doc.content.encode("utf-8"))) for doc in batch],
            user=None,
            all_or_nothing=True,
            enqueue=False,
        )
        uploaded: list[int] = []
        for doc, outcome in zip(batch, outcomes, strict=True):
            if outcome.result is None:  # not reached: with all_or_nothing a refused file raises
                continue
            keys.setdefault(outcome.result.document.pk, []).append(doc.id)
            if not outcome.result.duplicate:
                uploaded.append(outcome.result.document.pk)
        # Sized to fit one batch, so the pipeline claims them all at once.
        pipeline.documents_process_here(document_ids=uploaded, together=True)
        done += len(batch)
        if progress:
            progress(done)

    for doc in dataset.corpus():
        length = len(doc.content.encode("utf-8"))
        if batch and (len(batch) >= per_batch or size + length > max_bytes):
            flush()
            batch, size = [], 0
        batch.append(doc)
        size += length
    if batch:
        flush()
    return keys


def collection_keys(collection: Collection) -> dict[int, list[str]]:
    """Corpus ids of a collection ingested by ``beir_ingest``, read back from document names."""
    return {pk: [corpus_id_of(name)] for pk, name in collection.documents.values_list("pk", "name")}


def folder_ingest(collection: Collection, root: Path) -> list[Document]:
    """Upload every file under ``root`` and process it here, with the files found inside it."""
    from ingest import pipeline, services

    if not root.is_dir():
        raise EvaluationInputError(f"{root} is not a folder.")
    files = files_in_folder(root)
    if not files:
        raise EvaluationInputError(f"{root} holds no files.")
    outcomes = services.documents_upload_many(
        collection=collection, files=[(path.name, path) for path in files], user=None, enqueue=False
    )
    ids = [o.result.document.pk for o in outcomes if o.result is not None and not o.result.duplicate]
    pipeline.documents_process_here(document_ids=ids)
    return list(collection.documents.order_by("name"))
