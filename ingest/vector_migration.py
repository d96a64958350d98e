"""Moving a running instance between the search engines without re-embedding (``manage.py vectors``).

Both engines' entries are derived from the database: each ready chunk's float32
embedding and indexed text. So a move copies and never embeds, and it can be repeated:

* ``vectors_migrate(to=X)`` brings engine X in step with the database, collection by
  collection: X gets the passages it lacks and loses those the database no longer has
  (deleted documents, replaced versions). The engine ``VECTOR_STORE`` names is left
  alone, so every process keeps answering from it, and writing to it, until the switch.
* After ``VECTOR_STORE=X`` and a restart, the same call again is the catch-up: whatever
  was written to the old engine alone in between reaches X. A run that finds X in
  step writes nothing.
* ``vectors_drop(engine=old)`` then removes the old copy; it refuses the engine in use.

Why a catch-up rather than every process writing to both engines during a move: dual
writes need a "move in progress" state that each process reads on every write, a second
write that can fail alone, and still a copy of what existed before; a difference
against the database needs none of that, and repairs a gap however it was made.

A difference of chunk ids cannot see a chunk changed in place, and only ``manage.py
reindex`` does that (new embeddings under the same ids): it forgets the collection in
the idle engine (``idle_engines_forget``), so the next catch-up copies it whole.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from django.conf import settings
from django.db import transaction

from ingest.index_files import IndexFileUnreadable
from ingest.vector_store import ENGINES, Held, VectorStore, vector_store

logger = logging.getLogger(__name__)


class EngineInUse(Exception):
    """The engine ``VECTOR_STORE`` names cannot be dropped: every search reads it."""


@dataclass(frozen=True)
class Moved:
    """One collection's catch-up: what the target holds now, and what the run changed."""

    size: int
    added: int
    removed: int


@dataclass(frozen=True)
class Agreement:
    """How one engine's copy of a collection compares with the database's ready chunks."""

    engine: str
    held: int
    missing: int
    extra: int
    problem: str = ""  # the engine's copy cannot be read (or the engine is not set up)

    @property
    def in_step(self) -> bool:
        return not (self.missing or self.extra or self.problem)


def vectors_migrate(*, to: str) -> dict[str, Moved]:
    """Bring the engine ``to`` in step with the database, without embedding anything; per collection name.

    Safe to run while the instance serves from the other engine, and again after the
    switch (see the module's docstring). Nothing is removed from the engine in use
    unless ``to`` is that engine, and then only what the database no longer has.
    """
    from ingest.models import Collection

    if to not in ENGINES:
        raise ValueError(f"Unknown engine {to!r}: use one of {', '.join(ENGINES)}.")
    target = vector_store(to)
    collections = list(Collection.objects.order_by("pk"))
    loaded: dict[int, int] = {}
    if to == "pgvector":
        from ingest.pgvector_store import pgvector_create_indexes, pgvector_drop_indexes, pgvector_empty, pgvector_setup

        pgvector_setup()
        if pgvector_empty():
            # A first load: the rows without the HNSW and GIN indexes, the indexes built
            # over them afterwards, many times faster than row by row (docs/scale.md).
            # Nobody searches an empty table; what is written meanwhile is indexed with the rest.
            pgvector_drop_indexes()
            try:
                loaded = {c.pk: target.rebuild(collection_id=c.pk) for c in collections}
            finally:
                pgvector_create_indexes()
    moved: dict[str, Moved] = {}
    for collection in collections:
        caught = _catch_up(target, collection.pk)
        first = loaded.get(collection.pk, 0)
        moved[collection.name] = Moved(size=caught.size, added=first + caught.added, removed=caught.removed)
    return moved


def _catch_up(target: VectorStore, collection_id: int) -> Moved:
    """Add what ``target`` lacks of a collection's ready chunks and remove what it holds beyond them."""
    from ingest.indexes import ready_chunk_ids

    # Adding first, without waiting for anyone: adding a passage never loses one, and
    # it leaves the locked step below only what changed meanwhile.
    wanted = ready_chunk_ids(collection_id)
    added = _write(target, collection_id, add=wanted - _held(target, collection_id).complete, remove=set())
    with transaction.atomic():
        _writers_settled(collection_id)
        wanted = ready_chunk_ids(collection_id)
        held = _held(target, collection_id)
        extra = set(held.present - wanted)
        added += _write(target, collection_id, add=wanted - held.complete, remove=extra)
    return Moved(size=len(wanted), added=added, removed=len(extra))


def _writers_settled(collection_id: int) -> None:
    """Wait for the writers storing this collection's documents, and hold new ones off until the transaction ends.

    A writer puts a document's entries in the engine before its transaction commits
    (FAISS files are written beside it): an id the engine holds and the database does
    not show yet may be about to commit, and removing it would lose the passage. The
    pipeline stores a document under its row lock (``select_for_update``), and the
    document is not ready until that commits; so locking the collection's documents
    that are not ready waits for every write in flight, and keeps the next ones from
    starting until the catch-up is done. (SQLite has no row locks; no engine is moved there.)
    """
    from ingest.models import Document

    list(
        Document.objects.select_for_update()
        .filter(collection_id=collection_id)
        .exclude(status=Document.Status.READY)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def _held(target: VectorStore, collection_id: int) -> Held:
    """What ``target`` holds of a collection; a damaged FAISS file is derived again from the database first."""
    try:
        return target.chunk_ids(collection_id=collection_id)
    except IndexFileUnreadable as exc:
        logger.error("Index file %s is unreadable (%s): rebuilding it from the database", exc.path.name, exc.reason)
        target.rebuild(collection_id=collection_id)
        return target.chunk_ids(collection_id=collection_id)


def _write(target: VectorStore, collection_id: int, *, add: set[int], remove: set[int]) -> int:
    """Write the ready chunks among ``add`` to ``target`` and drop ``remove``, in one write; how many were added."""
    from ingest.embedding import from_bytes
    from ingest.indexes import indexed_rows

    rows = indexed_rows(collection_id, only=sorted(add)) if add else []
    if not rows and not remove:
        return 0
    target.upsert(
        collection_id=collection_id,
        ids=[r[0] for r in rows],
        vectors=np.vstack([from_bytes(r[2]) for r in rows]) if rows else None,
        texts=[r[1] for r in rows],
        remove=sorted(remove),
    )
    return len(rows)


def vectors_drop(*, engine: str) -> None:
    """Remove every entry the engine ``engine`` holds, once the instance has moved off it.

    Refuses the engine ``VECTOR_STORE`` names (``EngineInUse``). The database keeps
    every embedding, so ``vectors_migrate(to=engine)`` can fill it again.
    """
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}: use one of {', '.join(ENGINES)}.")
    if engine == settings.VECTOR_STORE:
        raise EngineInUse(
            f"VECTOR_STORE={engine}: the instance searches this engine. Switch VECTOR_STORE to the other "
            "engine and restart the processes first."
        )
    if engine == "faiss":
        from ingest import indexes

        # Every collection's files, also those of collections deleted while FAISS was idle.
        names = (p.name for p in Path(settings.INDEX_DIR).glob("collection-*"))
        for collection_id in sorted({int(m[1]) for n in names if (m := re.fullmatch(r"collection-(\d+)\..*", n))}):
            indexes.indexes_drop(collection_id=collection_id)
        return
    from ingest.pgvector_store import pgvector_installed, pgvector_truncate

    if pgvector_installed():
        pgvector_truncate()


def idle_engines_forget(*, collection_id: int) -> None:
    """Drop a collection from the engines ``VECTOR_STORE`` does not name: their copy no longer matches its chunks.

    For a collection whose chunks changed in place (``collection_reindex``): the
    next ``vectors_migrate`` to such an engine then copies the collection whole.
    """
    for engine in ENGINES:
        if engine == settings.VECTOR_STORE:
            continue
        if engine == "pgvector":
            from ingest.pgvector_store import pgvector_installed

            if not pgvector_installed():
                continue
        vector_store(engine).drop(collection_id=collection_id)


def vectors_agreement(*, collection_id: int) -> list[Agreement]:
    """How each engine's copy of a collection compares with the database (reads only: nothing is healed)."""
    from ingest.indexes import ready_chunk_ids
    from ingest.pgvector_store import pgvector_installed

    wanted = ready_chunk_ids(collection_id)
    found = []
    for engine in ENGINES:
        if engine == "pgvector" and not pgvector_installed():
            found.append(Agreement(engine=engine, held=0, missing=len(wanted), extra=0, problem="not set up"))
            continue
        try:
            held = vector_store(engine).chunk_ids(collection_id=collection_id)
        except IndexFileUnreadable as exc:
            found.append(Agreement(engine=engine, held=0, missing=len(wanted), extra=0, problem=exc.reason))
            continue
        found.append(
            Agreement(
                engine=engine,
                held=len(held.complete),
                missing=len(wanted - held.complete),
                extra=len(held.present - wanted),
            )
        )
    return found
