"""The scale-out engine: passages' vectors and words searched inside PostgreSQL (pgvector).

One side table, ``ingest_chunk_vector``, holds for each ready chunk its collection and
document (copied from the chunk, so that the scope's filter needs no join), its
embedding as ``halfvec(<model dimensions>)`` under an HNSW index (inner product: the
stored embeddings are L2-normalised, so it orders as cosine, as FAISS does), and its
indexed text as a ``tsvector`` (English configuration) under a GIN index, scored with BM25
from the per-word counts ``pgvector_words.py`` keeps beside the rows.

Why a side table created by ``manage.py vectors setup`` rather than a column added by a
migration: the ``vector`` extension exists only where an admin installed pgvector, and
the same migrations must run on SQLite and on a PostgreSQL without it. The table is
created (idempotently) by that command, and after every ``migrate`` when
``VECTOR_STORE=pgvector``; Django's models and migrations never mention it.

Rows follow the chunks inside the same transaction: a writer inserts them in the
transaction that stores the chunks, and a trigger on ``ingest_chunk`` deletes a
chunk's row with it (a deleted document, a replaced version, a deleted collection),
so a delete is immediate and a rollback leaves no orphan. A trigger rather than a
foreign key: Django's test flush truncates ``ingest_chunk`` and would refuse while a
table it does not know referenced it; a second trigger empties the side table then.

Searches filter inside the index scan: ``collection_id = ANY(readable collections)``
and ``document_id <> ALL(hidden documents)`` from the asker's ``Scope``, so a restricted
passage is never a candidate. With ``hnsw.iterative_scan = relaxed_order`` (pgvector
0.8) the HNSW scan goes on past filtered-out rows until it has ``k``; when it still
returns fewer (a very selective scope, or the scan's tuple budget spent), the same
filter is searched exactly, which is cheap precisely because so few rows pass it.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from django.db import connection, connections, transaction

from assistant.replica import reading_alias
from ingest.index import Hit
from ingest.pgvector_words import (
    TABLE,
    WORDS,
    Question,
    Weights,
    bm25_best,
    bm25_of,
    words_fold,
    words_setup,
    words_teardown,
)
from ingest.vector_store import Held

if TYPE_CHECKING:
    from assistant.accounts.scope import Scope

logger = logging.getLogger(__name__)

# Iterative index scans arrived in pgvector 0.8.
MIN_VERSION = (0, 8)
# HNSW's candidate list: at least this, and twice the hits asked for, up to pgvector's
# limit (the iterative scan goes on past it for a larger k). 400: measured with
# bench/vector_store.py (docs/scale.md), 100 gave Recall@10 0.945 at 100k passages and
# 0.64 at 1M; 400 gave 0.989 and 0.83, at p95 12 ms and 30 ms on 2 loaded cores.
EF_SEARCH_MIN = 400
EF_SEARCH_MAX = 1000
WRITE_BATCH = 500


class PgvectorUnavailable(Exception):
    """The database cannot hold the vectors (not PostgreSQL, no pgvector, too old, not set up)."""


def _literal(vector: np.ndarray) -> str:
    return "[" + ",".join(f"{x:.7g}" for x in np.asarray(vector, dtype=np.float32).ravel()) + "]"


def pgvector_version() -> tuple[int, ...] | None:
    """The pgvector version this database can install (None: not PostgreSQL, or no pgvector)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
        row = cursor.fetchone()
    if row is None:
        return None
    return tuple(int(part) for part in str(row[0]).split(".") if part.isdigit())


def _dimensions() -> int:
    """The width of the stored embeddings (the configured model's, when nothing is stored yet)."""
    from ingest.models import Chunk

    stored = Chunk.objects.values_list("embedding", flat=True).first()
    if stored:
        return len(bytes(stored)) // 4
    from ingest.embedding import dimensions

    return dimensions()


def table_dimensions() -> int | None:
    """The width of the side table's vectors (None: no table); asked where a search reads."""
    with connections[reading_alias()].cursor() as cursor:
        cursor.execute(
            "SELECT a.atttypmod FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attname = 'embedding'",
            [TABLE],
        )
        row = cursor.fetchone()
    return None if row is None else int(row[0])


def pgvector_setup(*, dimensions: int | None = None) -> int:
    """Create the extension, the side table, its indexes and triggers if missing. Returns the width.

    Raises ``PgvectorUnavailable`` with what to do when the database cannot hold them.
    """
    version = pgvector_version()
    if version is None:
        raise PgvectorUnavailable(
            "VECTOR_STORE=pgvector needs PostgreSQL with the pgvector extension installed "
            f"(this database: {connection.vendor}, no 'vector' extension available)."
        )
    if version < MIN_VERSION:
        raise PgvectorUnavailable(f"pgvector {'.'.join(map(str, version))} is too old: 0.8 or newer is needed.")
    width = dimensions or _dimensions()
    existing = table_dimensions()
    if existing is not None and existing != width:
        raise PgvectorUnavailable(
            f"{TABLE} holds {existing}-dimension vectors but the embeddings have {width}: "
            "run `manage.py vectors setup --recreate`, then `manage.py vectors migrate --to pgvector`."
        )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("CREATE EXTENSION IF NOT EXISTS vector")
        cursor.execute(
            f"""CREATE TABLE IF NOT EXISTS {TABLE} (
                chunk_id bigint PRIMARY KEY,
                collection_id bigint NOT NULL,
                document_id bigint NOT NULL,
                embedding halfvec({int(width)}) NOT NULL,
                words tsvector NOT NULL
            )"""
        )
        pgvector_create_indexes()
        cursor.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_scope ON {TABLE} (collection_id, document_id)")
        cursor.execute(
            f"""CREATE OR REPLACE FUNCTION {TABLE}_follow_delete() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                DELETE FROM {TABLE} v USING gone WHERE v.chunk_id = gone.id;
                PERFORM {WORDS}_fold(c.collection_id) FROM (SELECT DISTINCT collection_id FROM gone) c;
                RETURN NULL;
            END $$"""
        )
        cursor.execute(
            f"""CREATE OR REPLACE FUNCTION {TABLE}_follow_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                TRUNCATE {TABLE};
                RETURN NULL;
            END $$"""
        )
        cursor.execute(
            f"""CREATE OR REPLACE TRIGGER {TABLE}_delete AFTER DELETE ON ingest_chunk
            REFERENCING OLD TABLE AS gone FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_follow_delete()"""
        )
        cursor.execute(
            f"""CREATE OR REPLACE TRIGGER {TABLE}_truncate AFTER TRUNCATE ON ingest_chunk
            FOR EACH STATEMENT EXECUTE FUNCTION {TABLE}_follow_truncate()"""
        )
        words_setup(cursor)
    return width


def pgvector_create_indexes(*, vectors: bool = True) -> None:
    """The HNSW and GIN indexes, if missing (built from the rows already in the table).

    Building over loaded rows is many times faster than keeping the index up to date row
    by row (docs/scale.md); the build uses the session's ``maintenance_work_mem``, and
    slows down once the graph no longer fits in it (about 1.3 GB per million 384-d rows).
    ``vectors=False`` builds only the words' index (a benchmark of the lexical side).
    """
    with connection.cursor() as cursor:
        if vectors:
            cursor.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_hnsw ON {TABLE} USING hnsw (embedding halfvec_ip_ops)")
        cursor.execute(f"CREATE INDEX IF NOT EXISTS {TABLE}_words ON {TABLE} USING gin (words)")


def pgvector_drop_indexes() -> None:
    """Drop the HNSW and GIN indexes before a bulk load (``pgvector_create_indexes`` builds them again)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DROP INDEX IF EXISTS {TABLE}_hnsw")
        cursor.execute(f"DROP INDEX IF EXISTS {TABLE}_words")


def pgvector_empty() -> bool:
    """Whether the side table holds no row (a first load)."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT NOT EXISTS (SELECT 1 FROM {TABLE})")
        return bool(cursor.fetchone()[0])


def pgvector_installed() -> bool:
    """Whether this database holds the side table (PostgreSQL with ``vectors setup`` done)."""
    return connection.vendor == "postgresql" and table_dimensions() is not None


def pgvector_truncate() -> None:
    """Empty the side table; the table, its indexes and triggers stay (``vectors drop --engine pgvector``)."""
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {TABLE}")


def pgvector_teardown() -> None:
    """Drop the side table and its triggers (the extension stays: other databases' objects may use it)."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_delete ON ingest_chunk")
        cursor.execute(f"DROP TRIGGER IF EXISTS {TABLE}_truncate ON ingest_chunk")
        words_teardown(cursor)
        cursor.execute(f"DROP TABLE IF EXISTS {TABLE}")
        cursor.execute(f"DROP FUNCTION IF EXISTS {TABLE}_length(tsvector)")
        cursor.execute(f"DROP FUNCTION IF EXISTS {TABLE}_follow_delete()")
        cursor.execute(f"DROP FUNCTION IF EXISTS {TABLE}_follow_truncate()")
    _seen_ready.discard(connection.connection)


# Database connections that have shown the side table: checked once per connection, not
# before each of the three or four searches of every question. A table dropped under a
# running process (only `vectors setup --recreate` drops it, and creates it again) makes
# the search itself fail.
_seen_ready: weakref.WeakSet[Any] = weakref.WeakSet()


def _ready() -> None:
    wrapper = connections[reading_alias()]
    if wrapper.connection is not None and wrapper.connection in _seen_ready:
        return
    if wrapper.vendor != "postgresql" or table_dimensions() is None:
        raise PgvectorUnavailable(
            f"VECTOR_STORE=pgvector but this database has no {TABLE} table: run `manage.py vectors setup`."
        )
    _seen_ready.add(wrapper.connection)


def _scope_filter(scope: Scope) -> tuple[str, list[Any]]:
    """The scope as SQL on the side table's own columns (usable inside an index scan)."""
    sql = "collection_id = ANY(%s) AND NOT (document_id = ANY(%s))"
    params: list[Any] = [list(scope.collection_ids), sorted(scope.hidden_document_ids)]
    if scope.document_ids is not None:
        sql += " AND document_id = ANY(%s)"
        params.append(sorted(scope.document_ids))
    return sql, params


class PgvectorStore:
    """Vectors and words in PostgreSQL; the scope filtered inside each scan."""

    name = "pgvector"

    def dense_search(
        self, *, scope: Scope, vector: np.ndarray, k: int, hidden: Mapping[int, list[int]] | None = None
    ) -> list[Hit]:
        if not scope.collection_ids or k <= 0:
            return []
        _ready()
        where, params = _scope_filter(scope)
        literal = _literal(vector)
        query = (
            f"SELECT chunk_id, -(embedding <#> %s::halfvec) FROM {TABLE} WHERE {where} "
            "ORDER BY (embedding <#> %s::halfvec){exact} LIMIT %s"
        )
        # The searches read where the read path points them: a read replica inside a search.
        alias = reading_alias()
        with transaction.atomic(using=alias), connections[alias].cursor() as cursor:
            ef_search = min(EF_SEARCH_MAX, max(EF_SEARCH_MIN, 2 * k))
            # Both settings in one round trip: this runs for every question.
            cursor.execute(
                "SELECT set_config('hnsw.iterative_scan', 'relaxed_order', true), "
                "set_config('hnsw.ef_search', %s, true)",
                [str(ef_search)],
            )
            cursor.execute(query.format(exact=""), [literal, *params, literal, k])
            rows = cursor.fetchall()
            if len(rows) < k:
                # Adding zero hides the ordering from the HNSW index: an exact search of
                # the few rows the filter lets through (see the module's docstring).
                cursor.execute(query.format(exact=" + 0"), [literal, *params, literal, k])
                rows = cursor.fetchall()
        hits = [Hit(chunk_id=int(c), score=float(s)) for c, s in rows]
        # relaxed_order may return neighbours slightly out of order.
        hits.sort(key=lambda h: (-h.score, h.chunk_id))
        return hits

    def lexical_search(
        self, *, scope: Scope, query: str, k: int, hidden: Mapping[int, list[int]] | None = None
    ) -> list[Hit]:
        if not scope.collection_ids or k <= 0 or not query.strip():
            return []
        return self._bm25(scope, query, limit=k)

    def lexical_scores(
        self,
        *,
        scope: Scope,
        query: str,
        chunk_ids: Mapping[int, Sequence[int]],
        hidden: Mapping[int, list[int]] | None = None,
    ) -> dict[int, float]:
        wanted = [c for ids in chunk_ids.values() for c in ids]
        scores = dict.fromkeys(wanted, 0.0)
        if not wanted or not query.strip():
            return scores
        scores.update((hit.chunk_id, hit.score) for hit in self._bm25(scope, query, chunk_ids=wanted))
        return scores

    def _bm25(
        self, scope: Scope, query: str, *, limit: int | None = None, chunk_ids: list[int] | None = None
    ) -> list[Hit]:
        """BM25 over the scope (``pgvector_words.py``): the ``limit`` best, or the scores of ``chunk_ids``."""
        if not scope.collection_ids:
            return []
        _ready()
        where, params = _scope_filter(scope)
        question = Question(query, scope.collection_ids, scope.hidden_document_ids)
        with connections[reading_alias()].cursor() as cursor:
            weights = Weights.of(cursor, question)
            if limit is not None:
                # A scope of named documents holds few passages: searched exactly.
                exact = scope.document_ids is not None
                rows = bm25_best(cursor, weights, scope=where, scope_params=params, k=limit, exact=exact)
            else:
                rows = bm25_of(cursor, weights, scope=where, scope_params=params, chunk_ids=chunk_ids or [])
        return [Hit(chunk_id=int(c), score=float(s)) for c, s in rows if s > 0]

    def upsert(
        self,
        *,
        collection_id: int,
        ids: Sequence[int],
        vectors: np.ndarray | None,
        texts: Sequence[str],
        remove: Sequence[int] = (),
    ) -> None:
        """Write in the caller's transaction: the rows commit (or roll back) with the chunks."""
        _ready()
        adding = list(ids) if vectors is not None else []
        if adding and (len(adding) != len(texts) or len(adding) != len(vectors)):  # type: ignore[arg-type]
            raise ValueError("upsert needs one vector and one text per id.")
        width = table_dimensions()
        if adding and vectors is not None and vectors.shape[1] != width:
            raise PgvectorUnavailable(
                f"The vectors have {vectors.shape[1]} dimensions but {TABLE} holds {width}: "
                "run `manage.py vectors setup --recreate`, then `manage.py vectors migrate --to pgvector`."
            )
        with transaction.atomic(), connection.cursor() as cursor:
            stale = [*remove]
            if stale:
                cursor.execute(f"DELETE FROM {TABLE} WHERE chunk_id = ANY(%s)", [stale])
            for start in range(0, len(adding), WRITE_BATCH):
                batch = slice(start, start + WRITE_BATCH)
                cursor.execute(
                    f"""INSERT INTO {TABLE} (chunk_id, collection_id, document_id, embedding, words)
                    SELECT c.id, c.collection_id, c.document_id, v.embedding::halfvec, to_tsvector('english', v.text)
                    FROM unnest(%s::bigint[], %s::text[], %s::text[]) AS v(id, embedding, text)
                    JOIN ingest_chunk c ON c.id = v.id
                    ON CONFLICT (chunk_id) DO UPDATE SET collection_id = EXCLUDED.collection_id,
                        document_id = EXCLUDED.document_id, embedding = EXCLUDED.embedding, words = EXCLUDED.words""",
                    [
                        [int(i) for i in adding[batch]],
                        [_literal(v) for v in vectors[batch]],  # type: ignore[index]
                        list(texts[batch]),
                    ],
                )
            words_fold(cursor, [collection_id])

    def remove(self, *, collection_id: int, ids: Sequence[int]) -> None:
        if ids:
            self.upsert(collection_id=collection_id, ids=[], vectors=None, texts=[], remove=ids)

    def drop(self, *, collection_id: int) -> None:
        _ready()
        with connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {TABLE} WHERE collection_id = %s", [collection_id])
            words_fold(cursor, [collection_id])

    def rebuild(self, *, collection_id: int) -> int:
        """The collection's rows again from the chunks' stored embeddings, in one transaction."""
        from ingest.embedding import from_bytes
        from ingest.indexes import indexed_rows

        _ready()
        with transaction.atomic():
            rows = indexed_rows(collection_id)
            self.drop(collection_id=collection_id)
            if rows:
                self.upsert(
                    collection_id=collection_id,
                    ids=[r[0] for r in rows],
                    vectors=np.vstack([from_bytes(r[2]) for r in rows]),
                    texts=[r[1] for r in rows],
                )
        return len(rows)

    def chunk_ids(self, *, collection_id: int) -> Held:
        _ready()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT chunk_id FROM {TABLE} WHERE collection_id = %s", [collection_id])
            ids = frozenset(int(row[0]) for row in cursor.fetchall())
        return Held(complete=ids, present=ids)

    def size(self, *, collection_id: int) -> int:
        _ready()
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT count(*) FROM {TABLE} WHERE collection_id = %s", [collection_id])
            return int(cursor.fetchone()[0])
