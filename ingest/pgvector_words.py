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

A search does not score every passage that shares a word with the question: at 10^5
passages of real text that took seconds (docs/scale.md). ``bm25_best`` finds candidates
a few words at a time, the rarest first, and leaves out the passages whose words could
not lift them into the best found so far (Lucene's MaxScore, in a ``tsquery``), exactly;
past ``CANDIDATES`` it bounds a word's weight by what it likely adds, not the most it could.
"""

from __future__ import annotations

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


# What a question is scored with, computed once per search:
#   q:       the question's words (English configuration) with how often it says each.
#   hidden:  the rows of documents hidden from the asker, in the searched collections.
#   counted: per collection and word (and '' for the whole collection), the counts of
#            what the asker may read: the stored counts less the hidden rows'.
# Returned per collection and word: its idf, the collection's average length, how many
# passages hold the word there, and how often the question says it.
_WEIGHTS = f"""WITH q AS (
    SELECT array_agg(l.lexeme) AS lexemes, array_agg({_OCCURRENCES}) AS said,
        replace(plainto_tsquery('english', %s)::text, ' & ', ' | ')::tsquery AS query
    FROM unnest(to_tsvector('english', %s)) l
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
), said AS (
    SELECT unnest(q.lexemes) AS lexeme, unnest(q.said) AS said FROM q
)
SELECT w.collection_id, w.word,
    ln(1 + (n.passages - w.passages + 0.5) / (w.passages + 0.5)), n.tokens / n.passages, w.passages, s.said
FROM counted w
JOIN counted n ON n.collection_id = w.collection_id AND n.word = ''
JOIN said s ON s.lexeme = w.word
WHERE w.word <> '' AND w.passages > 0 AND n.passages > 0
ORDER BY w.collection_id, w.word"""

# The BM25 of the passages ``{candidates}`` selects (rows of the side table as ``v``),
# from the weights given as arrays (its parameters come after theirs), best first.
_BM25 = f"""WITH w AS (
    SELECT * FROM unnest(%s::bigint[], %s::text[], %s::float8[], %s::float8[], %s::integer[])
        AS w(collection_id, word, idf, average, said)
), candidates AS (
    SELECT v.chunk_id, v.collection_id, v.words, v.length FROM {TABLE} v WHERE {{candidates}}
), matched AS MATERIALIZED (
    -- Each candidate's words of the question, with how often it holds each (only those kept).
    SELECT t.chunk_id, t.collection_id, t.length, l.lexeme, {_OCCURRENCES} AS tf
    FROM candidates t, unnest(ts_filter(setweight(t.words, 'A', %s::text[]), '{{{{a}}}}')) l
)
SELECT m.chunk_id AS chunk_id, sum(
    w.said * w.idf * m.tf / ({K1} * ((1 - {B}) + {B} * m.length / w.average) + m.tf) ORDER BY m.lexeme
) AS score
FROM matched m JOIN w ON w.collection_id = m.collection_id AND w.word = m.lexeme
GROUP BY m.chunk_id ORDER BY score DESC, chunk_id"""

# A search's candidates are found a few words at a time, the rarest first, until the
# words of a step would find more than this many passages (a step takes one word at least).
STEP_PASSAGES = 2_000
# How many words deep ``_reaching`` spells out which words together could reach the bar,
# before it settles for "any of the rest" (a looser filter, never a wrong one).
REACH_DEPTH = 64
# Past this many candidates (the searched words' counts, an upper estimate) a search
# trades exactness for time: a word's bound counts at ``LIKELY`` of itself, about what a
# passage of average length saying the word once gets (BM25's part for it is
# 1 / (1 + k1) = 0.4 there), so the words left need more of each other to make a step's
# candidates. Measured on SciFact repeated to 10^5 and 10^6 passages (docs/scale.md).
CANDIDATES = 2_000
LIKELY = 0.5


@dataclass(frozen=True)
class Question:
    """A question, and what its asker may read: the statistics it is scored with."""

    text: str
    collection_ids: Sequence[int]
    hidden_document_ids: Iterable[int]


@dataclass(frozen=True)
class Weights:
    """Per collection and word of a question: its idf, the collection's average length,
    how many passages hold it; and how often the question says each word."""

    rows: list[tuple[int, str, float, float, int]]
    said: dict[str, int]

    @classmethod
    def of(cls, cursor: Any, question: Question) -> Weights:
        collections, hidden = list(question.collection_ids), sorted(question.hidden_document_ids)
        cursor.execute(_WEIGHTS, [question.text, question.text, collections, hidden, collections])
        fetched = cursor.fetchall()
        rows = [(int(c), str(w), float(idf), float(a), int(p)) for c, w, idf, a, p, _ in fetched]
        return cls(rows=rows, said={str(w): int(s) for _, w, _, _, _, s in fetched})

    @property
    def words(self) -> list[str]:
        return sorted(self.said)

    def passages(self, word: str) -> int:
        """How many passages hold ``word``, in all the searched collections."""
        return sum(p for _, w, _, _, p in self.rows if w == word)

    def bound(self, word: str) -> float:
        """The most a passage's score can get from ``word``: its largest idf times the
        question's count of it (BM25's part for how often a passage holds it is below 1)."""
        return max(idf for _, w, idf, _, _ in self.rows if w == word) * self.said[word]

    def params(self) -> list[Any]:
        columns = list(zip(*self.rows, strict=True)) if self.rows else [(), (), (), (), ()]
        collections, words, idfs, averages, _ = (list(c) for c in columns)
        return [collections, words, idfs, averages, [self.said[w] for w in words]]


def _scored(cursor: Any, sql: str, params: list[Any]) -> list[tuple[int, float]]:
    cursor.execute(sql, params)
    return [(int(c), float(s)) for c, s in cursor.fetchall()]


def bm25_of(
    cursor: Any, weights: Weights, *, scope: str, scope_params: list[Any], chunk_ids: Sequence[int]
) -> list[tuple[int, float]]:
    """The BM25 of each of ``chunk_ids`` in ``scope`` (SQL on the side table's columns) that
    holds a word of the question."""
    if not weights.rows:
        return []
    sql = _BM25.format(candidates=f"{scope} AND chunk_id = ANY(%s)")
    return _scored(cursor, sql, [*weights.params(), *scope_params, list(chunk_ids), weights.words])


def _lexeme(word: str) -> str:
    """A lexeme as a tsquery operand."""
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def _any_of(words: Iterable[str]) -> str:
    return " | ".join(map(_lexeme, words))


def _reaching(bounds: list[tuple[str, float]], bar: float, spent: list[int]) -> str | None:
    """A tsquery that every passage holds whose words among ``bounds`` (largest bound first)
    could add up to ``bar``: "" when any passage could, None when none could.

    Spelled out as "the first word and enough of the rest to make up the difference, or
    enough of the rest without it", ``REACH_DEPTH`` words deep (``spent`` counts them);
    past that, "any of them", which every passage that could reach a positive bar holds.
    """
    if bar <= 0:
        return ""
    if sum(bound for _, bound in bounds) < bar:
        return None
    if spent[0] >= REACH_DEPTH:
        return _any_of(word for word, _ in bounds)
    spent[0] += 1
    (word, bound), rest = bounds[0], bounds[1:]
    holding, without = _reaching(rest, bar - bound, spent), _reaching(rest, bar, spent)
    ways = []
    if holding is not None:
        ways.append(_lexeme(word) + (f" & ({holding})" if holding else ""))
    if without is not None:
        ways.append(f"({without})")
    return " | ".join(ways) if ways else None


def bm25_best(
    cursor: Any, weights: Weights, *, scope: str, scope_params: list[Any], k: int, exact: bool = False
) -> list[tuple[int, float]]:
    """The ``k`` best passages in ``scope`` by BM25: exactly those scoring every passage would give.

    Most of a search's cost is scoring each candidate, and a word held by a large share of
    the collection (a question's "patients", "effect") would make most of it a candidate
    for a few hundredths of a point. So candidates are found a few words at a time, the
    rarest first (as Lucene's MaxScore prunes): each step scores the passages holding one
    of its words and none of an earlier step's. After a step, the ``k``-th score found is
    the bar. A passage holding none of the words searched so far scores less than the sum
    of the bounds (``Weights.bound``) of the words it holds, so a step's candidates must
    also hold words whose bounds add up to the bar (``_reaching``), and the search ends
    when the words left could not add up to it: every passage that could be among the
    best has been scored then, each with all of the question's words. Past ``CANDIDATES``
    the bounds count at ``LIKELY`` (unless ``exact``: a scope of a few named documents,
    whose passages the collection's counts overestimate): what is found is still scored
    exactly, but a passage whose common words weigh far above the usual could be missed.
    """
    if not weights.rows or k <= 0:
        return []
    holding = {word: weights.passages(word) for word in weights.words}
    most = {word: weights.bound(word) for word in weights.words}
    left = sorted(weights.words, key=lambda word: (holding[word], word))
    searched: list[str] = []
    found: list[tuple[int, float]] = []
    scored = 0  # at most this many passages scored so far (the words' counts)
    while left:
        bar = found[k - 1][1] if len(found) >= k else 0.0
        step = left[:1]
        for word in left[1:]:
            if sum(holding[w] for w in step) + holding[word] > STEP_PASSAGES:
                break
            step.append(word)
        scored += sum(holding[w] for w in step)
        share = 1.0 if exact or scored <= CANDIDATES else LIKELY
        bounds = sorted(((word, most[word] * share) for word in left), key=lambda wb: (-wb[1], wb[0]))
        reaching = _reaching(bounds, bar, [0])
        if reaching is None:
            break
        query = f"({_any_of(step)})" + (f" & ({reaching})" if reaching else "")
        if searched:
            query += f" & !({_any_of(searched)})"
        sql = _BM25.format(candidates=f"{scope} AND words @@ %s::tsquery") + " LIMIT %s"
        found += _scored(cursor, sql, [*weights.params(), *scope_params, query, weights.words, k])
        found = sorted(found, key=lambda hit: (-hit[1], hit[0]))[:k]
        searched += step
        left = left[len(step) :]
    return found
