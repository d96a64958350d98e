"""Retrieval quality, for every retriever side by side.

``manage.py evaluate --beir DIR [--split test] [--k 10] [--limit N] [--collection NAME] [--json]``
``manage.py evaluate --qa FILE --corpus DIR [--k 5] [--collection NAME] [--json]``

Without ``--collection`` the data is ingested through the normal pipeline into a
throwaway collection that is deleted afterwards, also when the run fails or is
interrupted. With ``--collection NAME`` an existing collection is evaluated as it is
(no re-ingestion, for tuning); a collection of that name that does not exist yet is
filled and kept.
"""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from assistant.accounts.scope import Scope
from assistant.chat import evaluation
from assistant.chat.models import Conversation
from assistant.chat.retrieval import available_retrievers, build_retriever
from ingest.models import Collection

COLUMNS = ("ndcg@{k}", "recall@{k}", "recall@100", "mrr@{k}", "p50_ms", "p95_ms")
QA_COLUMNS = ("recall@{k}", "page_recall@{k}", "cited_gold", "p50_ms", "p95_ms")


class Command(BaseCommand):
    help = "Measure retrieval quality on a BEIR-format dataset or a QA set, for every retriever."

    def add_arguments(self, parser: Any) -> None:
        mode = parser.add_mutually_exclusive_group(required=True)
        mode.add_argument("--beir", metavar="DIR", help="A BEIR-format folder (corpus.jsonl, queries.jsonl, qrels/).")
        mode.add_argument("--qa", metavar="FILE", help="A JSONL question set with gold documents.")
        parser.add_argument("--corpus", metavar="DIR", help="QA mode: the folder of files the questions are about.")
        parser.add_argument("--split", default="test", help="BEIR split: qrels/<split>.tsv (default test).")
        parser.add_argument("--k", type=int, default=None, help="Cut-off (default 10 for BEIR, 5 for QA).")
        parser.add_argument("--limit", type=int, default=None, help="Evaluate only the first N queries.")
        parser.add_argument(
            "--collection", metavar="NAME", help="Evaluate this existing collection (or fill it and keep it)."
        )
        parser.add_argument(
            "--retriever",
            action="append",
            metavar="KIND",
            help="Only this retriever (repeatable); default every available one.",
        )
        parser.add_argument("--json", action="store_true", help="Print one JSON object keyed by retriever.")

    def handle(self, *args: Any, **options: Any) -> None:
        kinds = self._kinds(options["retriever"])
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be at least 1.")
        if options["k"] is not None and options["k"] < 1:
            raise CommandError("--k must be at least 1.")
        # A plain ``kill`` must clean up like Ctrl-C does: the throwaway collection
        # is removed on the way out of the exception it raises.
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminate)
        try:
            if options["beir"]:
                results, k = self._beir(options, kinds)
            else:
                results, k = self._qa(options, kinds)
        except evaluation.EvaluationInputError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        if options["json"]:
            self.stdout.write(json.dumps(results))
        else:
            self._table(results, [c.format(k=k) for c in (COLUMNS if options["beir"] else QA_COLUMNS)])

    # -- the two modes ---------------------------------------------------------------

    def _beir(self, options: dict[str, Any], kinds: list[str]) -> tuple[dict[str, Any], int]:
        k = options["k"] or 10
        dataset = evaluation.beir_load(Path(options["beir"]), options["split"], options["limit"])
        for reason in dataset.skipped[:5]:
            self.stderr.write(f"Skipped: {reason}")
        existing = self._existing(options["collection"])
        with self._collection(options["collection"], existing) as collection:
            if existing:
                keys = evaluation.collection_keys(collection)
                self.stderr.write(f"Evaluating collection '{collection.name}' as it is ({len(keys)} documents).")
            else:
                keys = self._ingest_beir(collection, dataset)
            results = {}
            for kind in kinds:
                retriever = build_retriever(kind, scope=Scope.of([collection.pk]))
                results[kind] = evaluation.beir_evaluate(
                    retriever, dataset, keys, k=k, progress=self._progress(f"{kind}: queries")
                )
                self.stderr.write("")
        self.stderr.write(f"{len(dataset.queries)} queries of split '{dataset.split}', k={k}.")
        return results, k

    def _qa(self, options: dict[str, Any], kinds: list[str]) -> tuple[dict[str, Any], int]:
        k = options["k"] or 5
        items = evaluation.qa_load(Path(options["qa"]))
        if options["limit"]:
            items = items[: options["limit"]]
        existing = self._existing(options["collection"])
        if existing and options["corpus"]:
            raise CommandError(
                f"Collection '{options['collection']}' exists: leave out --corpus to evaluate it as it is."
            )
        if not existing and not options["corpus"]:
            raise CommandError(
                "--qa needs --corpus DIR (the files the questions are about) or an existing --collection."
            )
        with self._collection(options["collection"], existing) as collection:
            if not existing:
                clock = time.monotonic()
                documents = evaluation.folder_ingest(collection, Path(options["corpus"]))
                failed = [d for d in documents if d.status == d.Status.FAILED]
                self.stderr.write(
                    f"Ingested {len(documents) - len(failed)} documents in {time.monotonic() - clock:.0f}s"
                    + (f"; failed: {', '.join(d.name for d in failed)}" if failed else "")
                )
            names = list(collection.documents.filter(status="ready").values_list("name", flat=True))
            for item in items:
                patterns = list(item.gold_documents) + [g.document for g in item.gold_pages]
                for pattern in patterns:
                    if not any(evaluation.name_matches(n, pattern) for n in names):
                        self.stderr.write(f"Warning: line {item.line}: no ready document matches {pattern!r}.")
            results = {kind: evaluation.qa_evaluate(build_retriever(kind, scope=Scope.of([collection.pk])), items, k=k)
                       for kind in kinds}  # fmt: skip
            for entry in results.values():
                entry["cited_gold"] = None
            cited = self._cited_gold(collection, items)
            if cited is not None and settings.RETRIEVAL_MODE in results:
                results[settings.RETRIEVAL_MODE]["cited_gold"] = cited
        return results, k

    def _cited_gold(self, collection: Collection, items: list[evaluation.QAItem]) -> float | None:
        """Share of answers that cite a gold document, through the normal answer path."""
        from assistant.chat import services
        from assistant.chat.llm import LLMClient, LLMError

        try:
            async_to_sync(LLMClient.from_settings().models)()
        except LLMError as exc:
            self.stderr.write(f"cited_gold: not measured, no language model: {exc}")
            return None
        cited = answered = 0
        for done, item in enumerate(items, start=1):
            answer = services.answer_question(user=None, collection=collection, question=item.question)
            # An evaluation leaves no chat history behind, in a kept collection either.
            if answer.message_id is not None:
                Conversation.objects.filter(messages__pk=answer.message_id).delete()
            if answer.error:
                self.stderr.write(f"\nline {item.line}: the answer failed: {answer.error}")
                continue
            answered += 1
            cited += evaluation.cites_gold(answer.citations, item)
            self._progress("answers")(done, len(items))
        self.stderr.write(
            f"\ncited_gold: {cited} of {answered} answers ({settings.RETRIEVAL_MODE} retriever, "
            f"top {settings.RETRIEVAL_TOP_K}, model {settings.LLM_MODEL})."
        )
        return round(cited / answered, 4) if answered else None

    # -- helpers ---------------------------------------------------------------------

    def _kinds(self, wanted: list[str] | None) -> list[str]:
        available = available_retrievers()
        if not wanted:
            return available
        unknown = [w for w in wanted if w not in available]
        if unknown:
            raise CommandError(f"Unknown retriever {', '.join(unknown)}; available: {', '.join(available)}.")
        return list(dict.fromkeys(wanted))

    def _existing(self, name: str | None) -> bool:
        return bool(name) and Collection.objects.filter(name=name).exists()

    def _collection(self, name: str | None, existing: bool) -> _Workspace:
        return _Workspace(name, existing, self.stderr)

    def _ingest_beir(self, collection: Collection, dataset: evaluation.BeirDataset) -> dict[int, list[str]]:
        clock = time.monotonic()
        keys = evaluation.beir_ingest(collection, dataset, progress=lambda n: self._progress("documents")(n, 0))
        chunks = collection.chunks.count()
        self.stderr.write(
            f"\nIngested {sum(len(v) for v in keys.values())} corpus documents ({chunks} chunks) "
            f"in {time.monotonic() - clock:.0f}s."
        )
        return keys

    def _progress(self, label: str) -> Any:
        def show(done: int, total: int) -> None:
            if sys.stderr.isatty():
                sys.stderr.write(f"\r{label}: {done}" + (f"/{total}" if total else ""))
                sys.stderr.flush()

        return show

    def _table(self, results: dict[str, Any], columns: list[str]) -> None:
        self.stdout.write("retriever  " + "".join(f"{c:>14}" for c in columns))
        for kind, row in results.items():
            cells = []
            for c in columns:
                value = row.get(c)
                cells.append(f"{'-' if value is None else value:>14}")
            self.stdout.write(f"{kind:<11}" + "".join(cells))


def _terminate(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


class _Workspace:
    """The collection evaluated: a throwaway one (deleted on the way out, whatever happens), or a named one."""

    def __init__(self, name: str | None, existing: bool, stderr: Any) -> None:
        self.name, self.existing, self.stderr = name, existing, stderr
        self.collection: Collection | None = None

    def __enter__(self) -> Collection:
        from ingest import services

        if self.existing:
            self.collection = Collection.objects.get(name=self.name)
        elif self.name:
            self.collection = services.collection_create(name=self.name, description="Evaluation data.")
            self.stderr.write(f"Created collection '{self.name}'; it is kept for later runs (--collection).")
        else:
            self.collection = services.collection_create(
                name=f"evaluate-{uuid.uuid4().hex[:12]}", description="Throwaway evaluation collection."
            )
        return self.collection

    def __exit__(self, *exc: object) -> None:
        from ingest import services

        if self.collection is not None and not self.name:
            # Also on errors and Ctrl-C: a throwaway collection never outlives the run.
            services.collection_delete(collection=self.collection)
