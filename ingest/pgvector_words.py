"""The pgvector engine's lexical side: BM25 inside PostgreSQL, over what the asker may read.

PostgreSQL's own ranking (``ts_rank``, ``ts_rank_cd``) counts and spaces a question's
words in a passage but does not weigh a word by how rare it is, which is most of what
BM25 gets right: on SciFact it ranked 0.09 nDCG@10 below the FAISS engine's BM25
(docs/scale.md). So the words are scored here as ``ingest/lexical.py`` scores them
(Lucene's BM25, k1 = 1.5, b = 0.75), from statistics PostgreSQL keeps:

* ``ingest_chunk_vector.length``: each passage's length in words (stop words out), a
  column generated from its ``tsvector``.
* ``ingest_chunk_word``: per collection and word, how many passages hold it, and under
  the word ``''`` the collection's passages and their summed length. Statement triggers
  on the side table append one row per collection and word each write changes (plus or
  minus), so concurrent writers never wait on a shared counter row; each write then
  folds its collection's appended rows into one row per word (``ingest_chunk_word_fold``),
  one folder per collection at a time (an advisory lock; a writer that finds it taken
  leaves its rows to the next). Readers sum what they find, folded or not, so a count is
  always exact for the snapshot it reads, and moves in the writer's transaction.

The statistics a question is scored with are those of the passages the asker may read:
the rows of documents hidden from them are subtracted (their number, lengths and the
question's words among them), as the FAISS engine's BM25 leaves them out, so that no
score a user sees moves with a document hidden from them. A passage's score uses its own
collection's statistics, as each collection's BM25 file does on the other engine.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

# ingest/lexical.py's BM25 (Lucene's), with the same constants.
from ingest.lexical import K1, B

# The side table (pgvector_store.py) and the counts beside it.
TABLE = "ingest_chunk_vector"
WORDS = "ingest_chunk_word"
# How often a passage holds a word: ``l``, a row of ``unnest(words)`` (its lexeme and positions).
_OCCURRENCES = "coalesce(array_length(l.positions, 1), 1)"

# What a write adds to the counts: ``{rows}`` is a set of the side table's rows with a sign.
_DELTA = f"""INSERT INTO {WORDS} (collection_id, word, passages, tokens)
    SELECT collection_id, word, sum(passages), sum(tokens) FROM (
        SELECT collection_id, ''::text AS word, sign AS passages, sign * length AS tokens FROM ({{rows}}) r
        UNION ALL
        SELECT r.collection_id, l.lexeme, r.sign, r.sign * {_OCCURRENCES}
        FROM ({{rows}}) r, unnest(r.words) l
    ) d GROUP BY collection_id, word HAVING sum(passages) <> 0 OR sum(tokens) <> 0"""
_ADDED = "SELECT collection_id, words, length, 1 AS sign FROM added"
_GONE = "SELECT collection_id, words, length, -1 AS sign FROM gone"


def words_setup(cursor: Any) -> None:
    """The length column, the counts table, its triggers and fold function, the counts of rows already there.

    Idempotent; runs inside ``pgvector_setup``'s transaction, after the side table exists.
    """
    cursor.execute(
        f"""CREATE OR REPLACE FUNCTION {TABLE}_length(tsvector) RETURNS integer
        LANGUAGE sql IMMUTABLE PARALLEL SAFE
        AS $$ SELECT coalesce(sum({_OCCURRENCES}), 0)::integer FROM unnest($1) l $$"""
    )
    cursor.execute(
        f"ALTER TABLE {TABLE} ADD COLUMN IF NOT EXISTS length integer "
        f"GENERATED ALWAYS AS ({TABLE}_length(words)) STORED"
    )
    cursor.execute("SELECT to_regclass(%s) IS NULL", [WORDS])
    new = bool(cursor.fetchone()[0])
    cursor.execute(
        f"""CREATE TABLE IF NOT EXISTS {WORDS} (
            collection_id bigint NOT NULL,
            word text NOT NULL,
            passages bigint NOT NULL,
            tokens bigint NOT NULL,
            folded boolean NOT NULL DEFAULT false
        )"""
    )
    cursor.execute(
        f"CREATE INDEX IF NOT EXISTS {WORDS}_key ON {WORDS} (collection_id, word) INCLUDE (passages, tokens)"
    )
    cursor.execute(f"CREATE INDEX IF NOT EXISTS {WORDS}_unfolded ON {WORDS} (collection_id) WHERE NOT folded")
    cursor.execute(
        f"""CREATE OR REPLACE FUNCTION {WORDS}_count() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                {_DELTA.format(rows=_ADDED)};
            ELSIF TG_OP = 'DELETE' THEN
                {_DELTA.format(rows=_GONE)};
            ELSE
                {_DELTA.format(rows=f"{_GONE} UNION ALL {_ADDED}")};
            END IF;
            RETURN NULL;
        END $$"""
    )
    cursor.execute(
        f"""CREATE OR REPLACE FUNCTION {WORDS}_forget() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            TRUNCATE {WORDS};
            RETURN NULL;
        END $$"""
    )
    cursor.execute(
        f"""CREATE OR REPLACE FUNCTION {WORDS}_fold(collection bigint) RETURNS void LANGUAGE plpgsql AS $$
        BEGIN
            IF NOT pg_try_advisory_xact_lock(hashtextextended('{WORDS}_fold ' || collection, 0)) THEN
                RETURN;  -- another writer is folding this collection: it or the next takes these rows
            END IF;
            WITH touched AS (
                SELECT DISTINCT word FROM {WORDS} WHERE collection_id = collection AND NOT folded
            ), gone AS (
                DELETE FROM {WORDS} w USING touched t WHERE w.collection_id = collection AND w.word = t.word
                RETURNING w.word, w.passages, w.tokens
            )
            INSERT INTO {WORDS} (collection_id, word, passages, tokens, folded)
            SELECT collection, word, sum(passages), sum(tokens), true FROM gone
            GROUP BY word HAVING sum(passages) <> 0 OR sum(tokens) <> 0;
        END $$"""
    )
    for event, transition in (
        ("INSERT", "NEW TABLE AS added"),
        ("DELETE", "OLD TABLE AS gone"),
        ("UPDATE", "OLD TABLE AS gone NEW TABLE AS added"),
    ):
        cursor.execute(
            f"""CREATE OR REPLACE TRIGGER {WORDS}_{event.lower()} AFTER {event} ON {TABLE}
            REFERENCING {transition} FOR EACH STATEMENT EXECUTE FUNCTION {WORDS}_count()"""
        )
    cursor.execute(
        f"""CREATE OR REPLACE TRIGGER {WORDS}_truncate AFTER TRUNCATE ON {TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION {WORDS}_forget()"""
    )
    if new:
        # A side table set up before the counts existed: count its rows once, writers held off.
        cursor.execute(f"LOCK TABLE {TABLE} IN SHARE MODE")
        cursor.execute(_DELTA.format(rows=f"SELECT collection_id, words, length, 1 AS sign FROM {TABLE}"))
        cursor.execute(f"SELECT {WORDS}_fold(collection_id) FROM (SELECT DISTINCT collection_id FROM {WORDS}) c")


def words_teardown(cursor: Any) -> None:
    """Drop the counts table, its triggers and functions (the side table's own teardown drops the column)."""
    for event in ("insert", "delete", "update", "truncate"):
        cursor.execute(f"DROP TRIGGER IF EXISTS {WORDS}_{event} ON {TABLE}")
    cursor.execute(f"DROP TABLE IF EXISTS {WORDS}")
    for function in ("count()", "forget()", "fold(bigint)"):
        cursor.execute(f"DROP FUNCTION IF EXISTS {WORDS}_{function}")


def words_fold(cursor: Any, collection_ids: Sequence[int]) -> None:
    """Fold the counts each write appended, in the writer's transaction (see the module's docstring)."""
    for collection_id in sorted(set(collection_ids)):
        cursor.execute(f"SELECT {WORDS}_fold(%s)", [collection_id])


# A tsquery of any of the words given (``%s::text[]``, lexemes as stored).
_ANY_OF = "(SELECT string_agg(quote_literal(w), ' | ')::tsquery FROM unnest(%s::text[]) w)"

# What a question is scored with, ahead of any candidate:
#   q:       the question's words (English configuration) with how often it says each;
#            ``find``, the OR query candidates are found by: all of them, or only the
#            words given (``%s::text[]``, NULL for all).
#   hidden:  the rows of documents hidden from the asker, in the searched collections.
#   counted: per collection and word (and '' for the whole collection), the counts of
#            what the asker may read: the stored counts less the hidden rows'.
#   weights: each word's idf and its collection's average length.
_STATISTICS = f"""
q AS (
    SELECT a.lexemes, a.said, o.query, coalesce({_ANY_OF}, o.query) AS find
    FROM (
        SELECT array_agg(l.lexeme) AS lexemes, array_agg({_OCCURRENCES}) AS said
        FROM unnest(to_tsvector('english', %s)) l
    ) a, (SELECT replace(plainto_tsquery('english', %s)::text, ' & ', ' | ')::tsquery AS query) o
), hidden AS (
    SELECT h.collection_id, h.words, h.length FROM {TABLE} h
    WHERE h.collection_id = ANY(%s) AND h.document_id = ANY(%s)
), counted AS (
    SELECT collection_id, word, sum(passages)::float8 AS passages, sum(tokens)::float8 AS tokens FROM (
        SELECT w.collection_id, w.word, w.passages, w.tokens FROM {WORDS} w, q
        WHERE w.collection_id = ANY(%s) AND w.word = ANY(q.lexemes || ''::text)
        UNION ALL
        SELECT collection_id, '', -count(*), -sum(length) FROM hidden GROUP BY collection_id
        UNION ALL
        SELECT h.collection_id, l.lexeme, -count(*), 0 FROM hidden h, q, unnest(h.words) l
        WHERE h.words @@ q.query AND l.lexeme = ANY(q.lexemes) GROUP BY 1, 2
    ) c GROUP BY collection_id, word
), weights AS (
    SELECT w.collection_id, w.word,
        ln(1 + (n.passages - w.passages + 0.5) / (w.passages + 0.5)) AS idf,
        n.tokens::float8 / n.passages AS average
    FROM counted w JOIN counted n ON n.collection_id = w.collection_id AND n.word = ''
    WHERE w.word <> '' AND w.passages > 0 AND n.passages > 0
), said AS (
    SELECT unnest(q.lexemes) AS lexeme, unnest(q.said) AS said FROM q
)"""

# Each word's largest idf over the searched collections, and how often the question says it.
_BOUNDS = f"""WITH {_STATISTICS}
SELECT wt.word, max(wt.idf), s.said FROM weights wt JOIN said s ON s.lexeme = wt.word GROUP BY wt.word, s.said"""

# The BM25 of every candidate: ``{candidates}`` selects them (rows of the side table as
# ``v`` that match ``q.find``, the asker's scope applied), its parameters after the statistics'.
_BM25 = f"""WITH {_STATISTICS}, candidates AS ({{candidates}}
), matched AS MATERIALIZED (
    -- Each candidate's words of the question, with how often it holds each (only those kept).
    SELECT t.chunk_id, t.collection_id, t.length, l.lexeme, {_OCCURRENCES} AS tf
    FROM candidates t, q, unnest(ts_filter(setweight(t.words, 'A', q.lexemes), '{{{{a}}}}')) l
)
SELECT m.chunk_id AS chunk_id, sum(
    s.said * wt.idf * m.tf / ({K1} * ((1 - {B}) + {B} * m.length / wt.average) + m.tf) ORDER BY m.lexeme
) AS score
FROM matched m
JOIN weights wt ON wt.collection_id = m.collection_id AND wt.word = m.lexeme
JOIN said s ON s.lexeme = m.lexeme
GROUP BY m.chunk_id"""

# A word held by more than this share of a collection's passages finds no candidates on
# its own when the question has rarer words (see ``bm25_best``).
COMMON_SHARE = 0.05
_COMMON_IDF = math.log(1 + (1 - COMMON_SHARE) / COMMON_SHARE)


@dataclass(frozen=True)
class Question:
    """A question, and what its asker may read: the statistics it is scored with."""

    text: str
    collection_ids: Sequence[int]
    hidden_document_ids: Iterable[int]

    def params(self, *, only: list[str] | None = None) -> list[Any]:
        """The statistics' parameters in the statements' order; ``only``: the words that find candidates."""
        collections = list(self.collection_ids)
        return [only, self.text, self.text, collections, sorted(self.hidden_document_ids), collections]


def _scored(cursor: Any) -> list[tuple[int, float]]:
    return [(int(c), float(s)) for c, s in cursor.fetchall()]


def bm25_of(cursor: Any, question: Question, *, candidates: str, params: list[Any]) -> list[tuple[int, float]]:
    """The BM25 of each passage ``candidates`` selects (side-table rows as ``v`` matching ``q.find``)."""
    cursor.execute(_BM25.format(candidates=candidates), [*question.params(), *params])
    return _scored(cursor)


def bm25_best(
    cursor: Any, question: Question, *, candidates: str, params: list[Any], k: int
) -> list[tuple[int, float]]:
    """The ``k`` best passages by BM25: exactly those scoring every passage would give.

    Most of a search's cost is scoring each candidate, and a word held by a large share of
    the collection (a question's "patients", "effect") makes most of it a candidate for a
    few hundredths of a point. So the common words (in more than ``COMMON_SHARE`` of every
    searched collection's passages) find no candidates when rarer ones are there; they
    still count in every score. A passage holding only common words scores at most the
    sum of their idfs (times how often the question says each); when the ``k``-th score
    found is above that sum, no such passage could have taken a place, and the result is
    what scoring every candidate gives. Otherwise (fewer than ``k`` found, or the
    ``k``-th too low) the passages holding only common words are scored too, and the
    best of both are the best of all.
    """
    cursor.execute(_BOUNDS, question.params())
    rows = [(str(word), float(idf), int(said)) for word, idf, said in cursor.fetchall()]
    common = {word for word, idf, _ in rows if idf < _COMMON_IDF}
    rare = sorted({word for word, _, _ in rows} - common)
    # The most a passage can get from a word: its idf times the question's count of it
    # (BM25's tf part is below 1).
    ceiling = sum(idf * said for word, idf, said in rows if word in common)
    best = " ORDER BY score DESC, chunk_id LIMIT %s"
    if not (common and rare):
        cursor.execute(_BM25.format(candidates=candidates) + best, [*question.params(), *params, k])
        return _scored(cursor)
    cursor.execute(_BM25.format(candidates=candidates) + best, [*question.params(only=rare), *params, k])
    found = _scored(cursor)
    if len(found) == k and found[-1][1] > ceiling:
        return found
    # The passages holding common words only, the rest of what scoring every one would find.
    rest = f"{candidates} AND NOT (v.words @@ {_ANY_OF})"
    cursor.execute(_BM25.format(candidates=rest) + best, [*question.params(only=sorted(common)), *params, rare, k])
    found += _scored(cursor)
    return sorted(found, key=lambda found: (-found[1], found[0]))[:k]
