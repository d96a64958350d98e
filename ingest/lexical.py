"""Per-collection BM25 indexes: a cache derived from the chunks' indexed text.

Beside each FAISS file, ``INDEX_DIR/collection-<id>.bm25.npz`` holds the collection's
lexical index: the chunk ids, every chunk's tokens (as ids into the vocabulary) and the
vocabulary (bm25s's tokenizer, English stop words, Snowball stemming), scored with
Lucene's BM25, k1=1.5, b=0.75, as bm25s scores it. Why, with the numbers:
docs/quality.md, "Lexical engine".

It is written where the FAISS index is written (new chunks, deleted documents and
collections, replaced versions, rebuild, reindex), under the same kind of ``flock``
and by the same write-to-a-temporary-file-then-``os.replace``, so a reader only ever
opens a complete file. A write tokenizes only the new chunks: the stored tokens of the
others are reused.

Readers keep the last index they loaded per collection, with its postings, and reload
only when the file's identity (inode, size, mtime) changes: nothing is rebuilt per query.
Scores are computed per query from the postings over the chunks the asker may read:
hidden chunks score zero before ranking, so they never take a place in the top ``k``,
and they are left out of idf and the average length too, so that no score a user sees
moves with a document hidden from them. The file is read with ``allow_pickle=False``:
nothing read back is unpickled.
"""

from __future__ import annotations

import threading
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from ingest.index import Hit
from ingest.index_files import LoadedFiles, collection_write_lock, read_checked, write_atomically

_stemmer_lock = threading.Lock()
_stemmer: Any = None

# Lucene's BM25 defaults; measured against alternatives in docs/quality.md.
K1 = 1.5
B = 0.75


def lexical_path(collection_id: int) -> Path:
    return Path(settings.INDEX_DIR) / f"collection-{collection_id}.bm25.npz"


def _stem() -> Any:
    global _stemmer
    with _stemmer_lock:
        if _stemmer is None:
            import Stemmer

            _stemmer = Stemmer.Stemmer("english")
        return _stemmer


def tokenize(texts: Sequence[str]) -> list[list[str]]:
    """Lower-cased words of two or more characters, English stop words out, stemmed."""
    if not texts:
        return []
    import bm25s

    stemmer = _stem()
    # The stemmer object is not thread-safe: one call at a time.
    with _stemmer_lock:
        tokens = bm25s.tokenize(list(texts), stopwords="en", stemmer=stemmer, return_ids=False, show_progress=False)
    return [list(t) for t in tokens]


@dataclass
class LexicalIndex:
    ids: np.ndarray  # int64 chunk ids, one per row
    offsets: np.ndarray  # int64, len(ids) + 1: row i's tokens are tokens[offsets[i]:offsets[i + 1]]
    tokens: np.ndarray  # int32 token ids
    vocab: list[str]
    positions: dict[int, int] | None = None  # chunk id -> row
    # Postings, built by ``score``: token t's rows are rows[starts[t]:starts[t + 1]], with tf.
    starts: np.ndarray | None = None
    rows: np.ndarray | None = None
    tf: np.ndarray | None = None
    lengths: np.ndarray | None = None
    total_length: float = 0.0  # of every row, so a query without hidden rows does not sum them again
    lookup: dict[str, int] | None = None  # token -> id, built once per loaded index

    @property
    def size(self) -> int:
        return len(self.ids)

    def vocab_ids(self) -> dict[str, int]:
        # Built once, not per query: at 5,000 chunks rebuilding it was most of a query's cost.
        if self.lookup is None:
            self.lookup = {token: n for n, token in enumerate(self.vocab)}
        return self.lookup

    def row_of(self) -> dict[int, int]:
        if self.positions is None:
            self.positions = {int(chunk_id): row for row, chunk_id in enumerate(self.ids.tolist())}
        return self.positions

    def score(self) -> None:
        """Build the postings (for each token, the rows holding it and how often) from the stored tokens.

        Scores are computed per query from them rather than read from a precomputed
        matrix: idf and the average length must be those of the chunks the asker may
        read, so that a score never depends on a document hidden from them.
        """
        self.lengths = np.diff(self.offsets).astype(np.float64)
        self.total_length = float(self.lengths.sum())
        if not (self.size and self.vocab and len(self.tokens)):  # nothing indexed, or only stop words
            self.starts = np.zeros(len(self.vocab) + 1, np.int64)
            self.rows = np.zeros(0, np.int64)
            self.tf = np.zeros(0, np.float64)
            return
        row_of_token = np.repeat(np.arange(self.size, dtype=np.int64), np.diff(self.offsets))
        keys, counts = np.unique(self.tokens.astype(np.int64) * self.size + row_of_token, return_counts=True)
        tokens, self.rows = np.divmod(keys, self.size)
        self.tf = counts.astype(np.float64)
        self.starts = np.searchsorted(tokens, np.arange(len(self.vocab) + 1), side="left").astype(np.int64)

    def scores_all(self, query: str, *, exclude: Sequence[int] = ()) -> np.ndarray | None:
        """BM25 (Lucene's) of ``query`` for every row, over the rows not in ``exclude`` only.

        ``exclude`` (hidden chunks) scores zero, and the statistics (the number of
        chunks, their average length, each word's document frequency) leave them out,
        so the scores are the ones an index of the visible chunks alone would give.
        """
        starts, postings, frequencies, lengths = self.starts, self.rows, self.tf, self.lengths
        if self.size == 0 or starts is None or postings is None or frequencies is None or lengths is None:
            return None
        if not len(postings):
            return None
        vocab = self.vocab_ids()
        wanted = [vocab[t] for t in tokenize([query])[0] if t in vocab]
        if not wanted:
            return None
        visible: np.ndarray | None = None  # None: every row is visible (the common case, no O(n) mask)
        count, total = self.size, self.total_length
        if len(exclude):
            positions = self.row_of()
            hidden = np.unique(np.asarray([positions[c] for c in exclude if c in positions], dtype=np.int64))
            if len(hidden):
                visible = np.ones(self.size, dtype=bool)
                visible[hidden] = False
                count, total = count - len(hidden), total - float(lengths[hidden].sum())
        if count == 0:
            return None
        average = total / count
        scores = np.zeros(self.size, dtype=np.float64)
        for token in wanted:  # a word the query repeats counts again, as bm25s counts it
            rows = postings[starts[token] : starts[token + 1]]
            tf = frequencies[starts[token] : starts[token + 1]]
            if visible is not None:
                keep = visible[rows]
                rows, tf = rows[keep], tf[keep]
            if not len(rows):
                continue
            df = len(rows)
            idf = np.log(1 + (count - df + 0.5) / (df + 0.5))
            scores[rows] += idf * tf / (K1 * ((1 - B) + B * lengths[rows] / average) + tf)
        return scores

    def search(self, query: str, *, k: int, exclude: Sequence[int] = ()) -> list[Hit]:
        if self.size == 0 or k <= 0:
            return []
        scores = self.scores_all(query, exclude=exclude)
        if scores is None:
            return []
        k = min(k, self.size)
        top = np.argpartition(-scores, k - 1)[:k] if k < self.size else np.arange(self.size)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(chunk_id=int(self.ids[i]), score=float(scores[i])) for i in top if scores[i] > 0]

    def scores_of(self, query: str, chunk_ids: Sequence[int], *, exclude: Sequence[int] = ()) -> dict[int, float]:
        """BM25 of ``query`` for each of ``chunk_ids`` (0 for a chunk this index lacks), ``exclude`` left out."""
        found = dict.fromkeys(chunk_ids, 0.0)
        scores = self.scores_all(query, exclude=exclude)
        if scores is None:
            return found
        rows = self.row_of()
        for chunk_id in chunk_ids:
            row = rows.get(chunk_id)
            if row is not None:
                found[chunk_id] = float(scores[row])
        return found


def _empty() -> LexicalIndex:
    return LexicalIndex(
        ids=np.zeros(0, np.int64), offsets=np.zeros(1, np.int64), tokens=np.zeros(0, np.int32), vocab=[]
    )


def _read(path: Path) -> LexicalIndex:
    with np.load(path, allow_pickle=False) as data:
        lexical = LexicalIndex(
            ids=data["ids"].astype(np.int64),
            offsets=data["offsets"].astype(np.int64),
            tokens=data["tokens"].astype(np.int32),
            vocab=data["vocab"].tolist(),
        )
    return lexical


def _write_atomically(lexical: LexicalIndex, path: Path) -> None:
    def write(tmp: Path) -> None:
        # Through a handle: given a name, numpy would add ".npz" to it.
        with open(tmp, "wb") as handle:
            np.savez(
                handle,
                ids=lexical.ids,
                offsets=lexical.offsets,
                tokens=lexical.tokens,
                vocab=np.asarray(lexical.vocab, dtype=str) if lexical.vocab else np.zeros(0, dtype="<U1"),
            )

    write_atomically(path, write, check=lexical_file_problem)


def lexical_file_problem(path: Path) -> str:
    """Why ``path`` cannot be a whole index file ("" if it ends as an archive must), reading only its end."""
    try:
        whole = zipfile.is_zipfile(path)
    except OSError as exc:
        return f"cannot be opened ({exc.strerror})"
    return "" if whole else f"truncated or damaged ({path.stat().st_size} bytes, no archive directory at its end)"


def _read_scored(path: Path) -> LexicalIndex:
    lexical = _read(path)
    lexical.score()
    return lexical


_loaded: LoadedFiles[LexicalIndex] = LoadedFiles(_read_scored)


def _merged(base: LexicalIndex, *, ids: Sequence[int], texts: Sequence[str], remove: Sequence[int]) -> LexicalIndex:
    """``base`` without ``remove`` and ``ids``, plus ``ids`` with ``texts``' tokens."""
    dropped = np.asarray([*ids, *remove], dtype=np.int64)
    keep = ~np.isin(base.ids, dropped) if len(dropped) and base.size else np.ones(base.size, dtype=bool)
    lengths = np.diff(base.offsets)
    kept_rows = np.flatnonzero(keep)
    pieces = [base.tokens[base.offsets[i] : base.offsets[i + 1]] for i in kept_rows]
    vocab = list(base.vocab)
    lookup = {token: n for n, token in enumerate(vocab)}
    new_lengths = []
    for words in tokenize(texts):
        row = []
        for word in words:
            n = lookup.get(word)
            if n is None:
                n = lookup[word] = len(vocab)
                vocab.append(word)
            row.append(n)
        pieces.append(np.asarray(row, dtype=np.int32))
        new_lengths.append(len(row))
    all_lengths = np.concatenate([lengths[kept_rows], np.asarray(new_lengths, dtype=np.int64)])
    offsets = np.zeros(len(all_lengths) + 1, dtype=np.int64)
    np.cumsum(all_lengths, out=offsets[1:])
    return LexicalIndex(
        ids=np.concatenate([base.ids[kept_rows], np.asarray(list(ids), dtype=np.int64)]),
        offsets=offsets,
        tokens=np.concatenate(pieces).astype(np.int32) if pieces else np.zeros(0, np.int32),
        vocab=vocab,
    )


def lexical_upsert(*, collection_id: int, ids: Sequence[int], texts: Sequence[str], remove: Sequence[int] = ()) -> None:
    """Add (or replace) chunks' indexed texts under their ids, and drop ``remove``, in one write."""
    if len(ids) != len(texts):
        raise ValueError("lexical_upsert needs one text per id.")
    path = lexical_path(collection_id)
    with collection_write_lock(collection_id, "bm25"):
        if path.exists():
            base = read_checked(path, _read)
        elif ids:
            base = _empty()
        else:
            return
        _write_atomically(_merged(base, ids=ids, texts=texts, remove=remove), path)


def lexical_remove(*, collection_id: int, ids: Sequence[int]) -> None:
    if ids:
        lexical_upsert(collection_id=collection_id, ids=[], texts=[], remove=ids)


def lexical_replace(*, collection_id: int, ids: Sequence[int], texts: Sequence[str]) -> None:
    """Write a whole index from scratch (the rebuild path); the vocabulary is compacted."""
    if len(ids) != len(texts):
        raise ValueError("lexical_replace needs one text per id.")
    path = lexical_path(collection_id)
    with collection_write_lock(collection_id, "bm25"):
        _write_atomically(_merged(_empty(), ids=ids, texts=texts, remove=()), path)


def lexical_delete(*, collection_id: int) -> None:
    with collection_write_lock(collection_id, "bm25"):
        lexical_path(collection_id).unlink(missing_ok=True)
    _loaded.forget(lexical_path(collection_id))


def lexical_load(collection_id: int) -> LexicalIndex | None:
    """The collection's index with its scores, from the process cache while the file is unchanged."""
    return _loaded.get(lexical_path(collection_id))


def lexical_size(collection_id: int) -> int:
    lexical = lexical_load(collection_id)
    return 0 if lexical is None else lexical.size


def lexical_ids(collection_id: int) -> set[int]:
    lexical = lexical_load(collection_id)
    return set() if lexical is None else {int(i) for i in lexical.ids.tolist()}


def lexical_search(*, collection_id: int, query: str, k: int, exclude: Sequence[int] = ()) -> list[Hit]:
    """The ``k`` best BM25 chunk ids of one collection, best first; ``exclude`` never ranks."""
    lexical = lexical_load(collection_id)
    if lexical is None:
        return []
    return lexical.search(query, k=k, exclude=exclude)


def lexical_scores(
    *, collection_id: int, query: str, chunk_ids: Sequence[int], exclude: Sequence[int] = ()
) -> dict[int, float]:
    """BM25 of ``query`` for the given chunks of one collection (how hybrid fusion scores candidates).

    ``exclude``: hidden chunks, left out of the statistics as ``lexical_search`` leaves them out.
    """
    lexical = lexical_load(collection_id)
    if lexical is None:
        return dict.fromkeys(chunk_ids, 0.0)
    return lexical.scores_of(query, chunk_ids, exclude=exclude)
