"""Where an upload becomes vectors: parse, chunk, embed, store and index a batch of documents.

A worker's task (``tasks.py``) calls ``documents_process``: it claims the documents
(``claims.py``), and ``_BatchRun`` parses each, embeds all their chunks in one go,
then replaces their chunks and updates both indexes (``indexes.py``) in one
transaction. ``documents_process_here`` runs the same pipeline without a worker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django import db
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone

from assistant.replica import fence_after_commit
from ingest import claims, context, disk, originals, queue, services
from ingest.models import FINISHED, Chunk, Document
from ingest.parsers import ParseError, parse_file
from ingest.parsers.base import progress_reported_to
from ingest.vector_store import vector_store

logger = logging.getLogger(__name__)

Status = Document.Status


def _duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:g} seconds"
    if seconds < 7200:
        return f"{seconds / 60:g} minutes"
    return f"{seconds / 3600:g} hours"


def _caused_by_time_limit(exc: BaseException) -> bool:
    """True if Celery's soft time limit interrupted the work, however it was wrapped.

    The limit arrives as an exception raised wherever the code happened to be, and a
    parser may have wrapped it in its own error on the way out.
    """
    from celery.exceptions import SoftTimeLimitExceeded

    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, SoftTimeLimitExceeded):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _failure_reason(exc: BaseException) -> str:
    """What a document that failed on an unexpected error is marked with."""
    if disk.caused_by_full_disk(exc):
        return disk.PROCESSING_FAILED
    from ingest.embedding_server import EmbeddingServerError

    if isinstance(exc, EmbeddingServerError):
        # Retries with back-off are spent: the document fails with the server named, and
        # "Process again" in the portal (document_reprocess) runs it once the server is back.
        return f"{exc}. Process the document again once the embedding server answers."
    return f"Internal error while processing the file: {exc}"


def _depth(document: Document) -> int:
    """How many documents (archives, e-mails) ``document`` was found inside."""
    depth, parent_id = 0, document.parent_id
    while parent_id is not None:
        depth += 1
        parent_id = Document.objects.filter(pk=parent_id).values_list("parent_id", flat=True).first()
    return depth


def _known_vectors(collection_id: int, digests: set[str]) -> dict[str, np.ndarray]:
    """Vectors the collection already holds for these texts, by digest."""
    from ingest.embedding import from_bytes

    found: dict[str, np.ndarray] = {}
    wanted = sorted(digests)
    for start in range(0, len(wanted), 500):
        rows = Chunk.objects.filter(collection_id=collection_id, text_hash__in=wanted[start : start + 500])
        for digest, embedding in rows.values_list("text_hash", "embedding"):
            found.setdefault(digest, from_bytes(embedding))
    return found


def document_process(*, document_id: int, enqueue_children: bool = True, companions: bool = True) -> None:
    """Parse, chunk and embed one document (see ``documents_process``)."""
    documents_process(document_ids=[document_id], enqueue_children=enqueue_children, companions=companions)


def documents_process(*, document_ids: Sequence[int], enqueue_children: bool = True, companions: bool = True) -> None:
    """Parse, chunk and embed documents; replace their chunks and index them.

    The first document still to do is claimed; if it is small, the others of
    ``document_ids`` and then other queued documents of its collection join it as
    one batch (see ``claims.documents_claim_companions``). ``companions=False``
    processes the first document alone.

    Idempotent: a finished document is left alone, and a re-run replaces the chunks
    in one transaction, so running it twice leaves exactly one set. A bad file ends
    ``failed`` with a reason a person can read, and the rest of its batch goes on; a
    transient database error hands the batch back to the queue and re-raises for
    the task to retry. Files found inside a document (attachments, archive members)
    become documents of their own, queued unless ``enqueue_children`` is off (the
    caller then processes them itself).
    """
    # A cheap look first: a message often finds its documents done by another batch.
    todo = set(Document.objects.filter(pk__in=document_ids).exclude(status__in=FINISHED).values_list("pk", flat=True))
    ordered = [pk for pk in document_ids if pk in todo]
    for position, document_id in enumerate(ordered):
        document = claims.document_claim(document_id)
        if document is None:
            continue
        rest = ordered[position + 1 :]
        batch = [document, *(claims.documents_claim_companions(document, rest) if companions else [])]
        _BatchRun(batch, enqueue_children=enqueue_children).run()
        # What the batch could not take (large files, another collection) is sent on.
        left = set(Document.objects.filter(pk__in=rest, status=Status.QUEUED).values_list("pk", flat=True))
        for pk in rest:
            if pk in left:
                queue.document_enqueue(pk)
        return


# Parse progress (pages read) is written at most this often: a page can take a millisecond.
_PARSE_PROGRESS_EVERY_S = 1.0


def _parse_progress(document_id: int) -> Callable[[int, int], None]:
    """Record a long parse's progress on the document (pages read of pages), now and then."""
    last = [0.0]

    def record(done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - last[0] < _PARSE_PROGRESS_EVERY_S:
            return
        last[0] = now
        Document.objects.filter(pk=document_id, status=Status.PARSING).update(
            progress_done=done, progress_total=total, heartbeat_at=timezone.now()
        )

    return record


def chunk_max_tokens() -> int:
    """``CHUNK_MAX_TOKENS``, or (when it is 0) the embedding model's whole window.

    The window is the model's ``max_seq_length`` less its two special tokens: every
    word of a chunk, with its context line and heading, is read by the model.
    """
    if settings.CHUNK_MAX_TOKENS:
        return int(settings.CHUNK_MAX_TOKENS)
    import json

    from ingest.embedding import model_path

    config = Path(model_path()) / "sentence_bert_config.json"
    try:
        window = int(json.loads(config.read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError) as exc:
        raise ImproperlyConfigured(
            f"The embedding model's window is unknown ({config}: {exc}); set CHUNK_MAX_TOKENS."
        ) from exc
    return max(32, window - 2)


@dataclass
class _Prepared:
    document: Document
    drafts: list[Any]
    attachments: list[Any]
    timings: dict[str, float]
    offset: int = 0  # where this document's chunks start in the batch


class _BatchRun:
    """One batch of claimed documents: parse each, embed all chunks at once, store together."""

    def __init__(self, documents: list[Document], *, enqueue_children: bool) -> None:
        self.documents = documents
        self.enqueue_children = enqueue_children
        self.ids = [d.pk for d in documents]
        self.settled: set[int] = set()  # failed (or gone) documents: no longer this batch's to release
        self.current: int | None = None  # the document being parsed, to blame for a time limit
        # Local copies of originals kept in object storage: archive members are read
        # from them after the parse, when the members are stored, so they live as long
        # as the run.
        self.local_files = ExitStack()

    def run(self) -> None:
        try:
            with self.local_files, claims.documents_heartbeat(self.ids):
                prepared = self._prepare_all()
                if prepared:
                    self._embed_and_store(prepared)
        except (db.OperationalError, db.InterfaceError):
            if not db.connection.in_atomic_block:
                # The error may have cut the connection (the database restarted): hand
                # the documents back on a new one, or they wait for the sweep.
                db.connection.close()
            self._release_others(keep=self.ids[0])
            claims.document_release(self.ids[0])
            raise
        except Exception as exc:
            if _caused_by_time_limit(exc):
                limit = _duration(settings.INGEST_TIME_LIMIT_S)
                blamed = self.current if self.current is not None else self.ids[0]
                reason = f"Processing took longer than the time limit of {limit}."
                claims.document_fail(document_id=blamed, reason=reason)
                self.settled.add(blamed)
                self._release_others(keep=blamed)
                return
            logger.exception("Ingestion of documents %s failed", self.ids)
            reason = _failure_reason(exc)
            for document_id in self.ids:
                if document_id not in self.settled:
                    claims.document_fail(document_id=document_id, reason=reason)

    def _release_others(self, *, keep: int) -> None:
        """Give companions back to the queue, with a message of their own."""
        for document_id in self.ids:
            if document_id != keep and document_id not in self.settled:
                claims.document_release(document_id)
                queue.document_enqueue(document_id)

    def _prepare_all(self) -> list[_Prepared]:
        from ingest.chunking import chunk_elements
        from ingest.embedding import count_tokens
        from ingest.redaction import elements_redact

        prepared: list[_Prepared] = []
        offset = 0
        for document in self.documents:
            self.current = document.pk
            timings: dict[str, float] = {}
            clock = time.monotonic()
            try:
                with progress_reported_to(_parse_progress(document.pk)):
                    path = self.local_files.enter_context(originals.original_local_path(document.file.name))
                    file_type, parsed = parse_file(path, name=document.name, depth=_depth(document))
            except ParseError as exc:
                claims.document_fail(document_id=document.pk, reason=str(exc))
                self.settled.add(document.pk)
                continue
            except (db.OperationalError, db.InterfaceError):
                raise
            except Exception as exc:
                if _caused_by_time_limit(exc):
                    raise
                logger.exception("Parsing document %s failed", document.pk)
                claims.document_fail(document_id=document.pk, reason=_failure_reason(exc))
                self.settled.add(document.pk)
                continue
            timings["parse"] = time.monotonic() - clock
            clock = time.monotonic()
            elements = parsed.elements
            if settings.PII_REDACTION == "ingest":
                # Before chunking: a phone number must not be split between two chunks,
                # and the heading each chunk carries comes from this text too.
                elements = elements_redact(elements, ner=settings.PII_REDACTION_NER)
            described = context.document_described(document, elements)
            drafts = chunk_elements(
                elements, max_tokens=chunk_max_tokens(), count_tokens=count_tokens, context=described.context
            )
            timings["chunk"] = time.monotonic() - clock
            claims.document_status_set(
                document.pk,
                Status.EMBEDDING,
                message=f"{len(drafts)} passages to embed",
                file_type=file_type,
                title=described.title,
                title_candidates=described.candidates,
                context=described.context,
                pages=parsed.pages,
                progress_total=len(drafts),
                progress_done=0,
            )
            prepared.append(_Prepared(document, drafts, parsed.attachments, timings, offset))
            offset += len(drafts)
        self.current = None
        return prepared

    def _embed_and_store(self, prepared: list[_Prepared]) -> None:
        from ingest.embedding import dimensions, embed_texts, text_digest

        texts = [d.embedding_text for p in prepared for d in p.drafts]
        hashes = [text_digest(t) for t in texts]
        clock = time.monotonic()
        # Never embed the same text twice: not within the batch, and not when the
        # collection already holds it (an unchanged passage of a new version).
        known = _known_vectors(self.documents[0].collection_id, set(hashes))
        todo: dict[str, str] = {}
        for digest, text in zip(hashes, texts, strict=True):
            if digest not in known:
                todo.setdefault(digest, text)
        pending = list(todo.items())
        # Large enough for the model to batch well, small enough for progress to move.
        step = max(1, settings.EMBEDDING_BATCH_SIZE * 8)
        for start in range(0, len(pending), step) if pending else [0]:
            part = pending[start : start + step]
            if part:
                known.update(zip([d for d, _ in part], embed_texts([t for _, t in part]), strict=True))
            for p in prepared:
                mine = hashes[p.offset : p.offset + len(p.drafts)]
                Document.objects.filter(pk=p.document.pk).update(
                    progress_done=sum(1 for d in mine if d in known), heartbeat_at=timezone.now()
                )
        vectors = (
            np.vstack([known[d] for d in hashes]).astype(np.float32, copy=False)
            if hashes
            else np.zeros((0, dimensions()), np.float32)
        )
        # Each document is charged its share of the batch's embedding time.
        elapsed = time.monotonic() - clock
        for p in prepared:
            p.timings["embed"] = elapsed * len(p.drafts) / max(1, len(texts))
        if len(pending) < len(texts):
            reused = len(texts) - len(pending)
            logger.info("Embedded %d texts, reused %d already in the collection", len(pending), reused)
        self._store(prepared, vectors, hashes)

    def _store(self, prepared: list[_Prepared], vectors: np.ndarray, hashes: list[str]) -> None:
        from ingest.embedding import to_bytes

        clock = time.monotonic()
        replaced_files: list[str] = []
        ready: list[tuple[_Prepared, list[Chunk]]] = []
        new_ids: list[int] = []
        new_texts: list[str] = []
        new_vectors: list[np.ndarray] = []
        old_ids: list[int] = []
        with transaction.atomic():
            for p in prepared:
                document_id = p.document.pk
                locked = Document.objects.select_for_update().filter(pk=document_id).first()
                if locked is None:  # deleted while we worked
                    self.settled.add(document_id)
                    continue
                mine = vectors[p.offset : p.offset + len(p.drafts)]
                old_ids += list(Chunk.objects.filter(document_id=document_id).values_list("id", flat=True))
                Chunk.objects.filter(document_id=document_id).delete()
                created = Chunk.objects.bulk_create(
                    Chunk(
                        document_id=document_id,
                        collection_id=locked.collection_id,
                        ordinal=i,
                        heading=d.heading,
                        text=d.text,
                        page_start=d.page_start,
                        page_end=d.page_end,
                        embedding=to_bytes(v),
                        text_hash=h,
                    )
                    for i, (d, v, h) in enumerate(
                        zip(p.drafts, mine, hashes[p.offset : p.offset + len(p.drafts)], strict=True)
                    )
                )
                new_ids += [c.pk for c in created]
                new_texts += [d.embedding_text for d in p.drafts[: len(created)]]
                if len(created):
                    new_vectors.append(mine)
                # A new version replaces the old one in this same transaction: readers
                # see either the old chunks or the new ones, never neither.
                for old_version in _replaced_versions(locked):
                    old_ids += list(old_version.chunks.values_list("id", flat=True))
                    if old_version.file.name:
                        replaced_files.append(old_version.file.name)
                    services.document_retire(document=old_version, replaced_by_id=document_id)
                p.document = locked
                ready.append((p, created))
            # The index is written before the statuses commit: a reader filters every hit
            # through the database, so ids of a transaction that rolls back are never served
            # (with pgvector the rows are part of this transaction and roll back with it).
            vector_store().upsert(
                collection_id=self.documents[0].collection_id,
                ids=new_ids,
                vectors=np.vstack(new_vectors) if new_vectors else None,
                texts=new_texts,
                remove=old_ids,
            )
            index_s = time.monotonic() - clock
            now = timezone.now()
            for p, created in ready:
                p.timings["index"] = index_s * len(created) / max(1, len(new_ids))
                claims.document_status_set(
                    p.document.pk,
                    Status.READY,
                    message=f"{len(created)} passages",
                    chunk_count=len(created),
                    progress_done=len(created),
                    finished_at=now,
                    heartbeat_at=None,
                    timings={k: round(v, 3) for k, v in p.timings.items()},
                )
                for attachment in p.attachments:
                    with attachment.open() as stream:  # an archive member is streamed, never held whole
                        services.document_upload(
                            collection=p.document.collection,
                            name=attachment.name,
                            fileobj=stream,
                            user=p.document.uploaded_by,
                            parent=p.document,
                            enqueue=self.enqueue_children,
                        )
            # The uploaders see their documents ready at once, even when searches read a replica.
            fence_after_commit(user_ids=[p.document.uploaded_by_id for p, _ in ready])
        self.settled.update(p.document.pk for p, _ in ready)
        originals.originals_delete(replaced_files)
        logger.info("Documents ready: %d, %d chunks", len(ready), len(new_ids))


def _replaced_versions(document: Document) -> list[Document]:
    """The older versions ``document`` replaces once it is ready, newest first.

    Usually the one it supersedes. But a version that never became ready (a newer
    one came while it waited, or it failed) retired nothing, so the one still
    serving is further down the chain; left there, it would answer beside the new one.
    """
    found: list[Document] = []
    older_id = document.supersedes_id
    seen = {document.pk}
    while older_id and older_id not in seen and len(found) < 50:  # a chain is short; never walked without end
        older = Document.objects.filter(pk=older_id).first()
        if older is None:
            break
        found.append(older)
        seen.add(older.pk)
        older_id = older.supersedes_id
    return found


def documents_process_here(
    *, document_ids: Sequence[int], together: bool = False, on_processed: Callable[[int], None] | None = None
) -> None:
    """Process documents in this process, without a worker, then the files found inside them.

    The path of ``manage.py ingest --inline``, the evaluation harness and tests. Each
    document is processed alone, and the files found inside it right after it (depth
    first), calling ``on_processed`` with each id as it finishes. With ``together``
    the documents go through as batches, as a worker would take them.
    """
    if together:
        pending = list(document_ids)
        while pending:
            documents_process(document_ids=pending, enqueue_children=False)
            pending = list(Document.objects.filter(pk__in=pending, status=Status.QUEUED).values_list("pk", flat=True))
        children = list(Document.objects.filter(parent_id__in=document_ids).values_list("pk", flat=True))
        if children:
            documents_process_here(document_ids=children, on_processed=on_processed)
        return
    for document_id in document_ids:
        document_process(document_id=document_id, enqueue_children=False, companions=False)
        if on_processed is not None:
            on_processed(document_id)
        children = list(Document.objects.filter(parent_id=document_id).values_list("pk", flat=True))
        documents_process_here(document_ids=children, on_processed=on_processed)
