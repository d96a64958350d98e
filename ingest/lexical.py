"""Per-collection BM25 indexes: a cache derived from the chunks' indexed text.

Beside each FAISS file, ``INDEX_DIR/collection-<id>.bm25.npz`` holds the collection's
lexical index: the chunk ids, every chunk's tokens (as ids into the vocabulary), the
vocabulary, and the BM25 score matrix computed from them (bm25s, Lucene's BM25 with
k1=1.5, b=0.75, English stop words, Snowball stemming). Why bm25s, with the numbers:
docs/quality.md, "Lexical engine".

It is written where the FAISS index is written (new chunks, deleted documents and
collections, replaced versions, rebuild, reindex), under the same kind of ``flock``
and by the same write-to-a-temporary-file-then-``os.replace``, so a reader only ever
opens a complete file. A write tokenizes only the new chunks: the stored tokens of the
others are reused, and the score matrix (whose idf and average length depend on every
chunk) is recomputed from them, which is fast (about 0.3 s for 12,000 chunks).

Readers keep the last index they loaded per collection and reload only when the file's
identity (inode, size, mtime) changes: nothing is rebuilt per query. Hidden chunks get a
score of zero before ranking, so they never take a place in the top ``k``. The file is
read with ``allow_pickle=False``: nothing read back is unpickled.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from django.conf import settings

from ingest.index import Hit, collection_write_lock

_cache: dict[str, tuple[tuple[int, int, int], LexicalIndex]] = {}
_cache_lock = threading.Lock()
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
    model: Any = None  # bm25s.BM25 with its score matrix
    positions: dict[int, int] | None = None  # chunk id -> row

    @property
    def size(self) -> int:
        return len(self.ids)

    def vocab_ids(self) -> dict[str, int]:
        return {token: n for n, token in enumerate(self.vocab)}

    def row_of(self) -> dict[int, int]:
        if self.positions is None:
            self.positions = {int(chunk_id): row for row, chunk_id in enumerate(self.ids.tolist())}
        return self.positions

    def score(self) -> None:
        """Compute the BM25 score matrix from the stored tokens."""
        import bm25s

        if not (self.size and self.vocab):  # nothing indexed, or only stop words: nothing can match
            self.model = None
            return
        model = bm25s.BM25(k1=K1, b=B)
        rows = [self.tokens[self.offsets[i] : self.offsets[i + 1]].tolist() for i in range(self.size)]
        model.index((rows, self.vocab_ids()), show_progress=False, leave_progress=False)
        self.model = model

    def search(self, query: str, *, k: int, exclude: Sequence[int] = ()) -> list[Hit]:
        if self.size == 0 or k <= 0 or self.model is None:
            return []
        vocab = self.model.vocab_dict
        wanted = [vocab[t] for t in tokenize([query])[0] if t in vocab]
        if not wanted:
            return []
        scores = self.model.get_scores_from_ids(wanted)
        if len(exclude):
            rows = self.row_of()
            hidden = [rows[c] for c in exclude if c in rows]
            if hidden:
                scores = scores.copy()
                scores[hidden] = 0.0
        k = min(k, self.size)
        top = np.argpartition(-scores, k - 1)[:k] if k < self.size else np.arange(self.size)
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Hit(chunk_id=int(self.ids[i]), score=float(scores[i])) for i in top if scores[i] > 0]

    def scores_of(self, query: str, chunk_ids: Sequence[int]) -> dict[int, float]:
        """BM25 of ``query`` for each of ``chunk_ids`` (0 for a chunk this index lacks)."""
        found = dict.fromkeys(chunk_ids, 0.0)
        if self.size == 0 or self.model is None:
            return found
        vocab = self.model.vocab_dict
        wanted = [vocab[t] for t in tokenize([query])[0] if t in vocab]
        if not wanted:
            return found
        scores = self.model.get_scores_from_ids(wanted)
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "wb") as handle:
        np.savez(
            handle,
            ids=lexical.ids,
            offsets=lexical.offsets,
            tokens=lexical.tokens,
            vocab=np.asarray(lexical.vocab, dtype=str) if lexical.vocab else np.zeros(0, dtype="<U1"),
        )
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


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
            base = _read(path)
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
    with _cache_lock:
        _cache.pop(str(lexical_path(collection_id)), None)


def lexical_load(collection_id: int) -> LexicalIndex | None:
    """The collection's index with its scores, from the process cache while the file is unchanged."""
    path = lexical_path(collection_id)
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    identity = (stat.st_ino, stat.st_size, stat.st_mtime_ns)
    key = str(path)
    with _cache_lock:
        cached = _cache.get(key)
        if cached and cached[0] == identity:
            return cached[1]
        lexical = _read(path)
        lexical.score()
        _cache[key] = (identity, lexical)
        return lexical


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


def lexical_scores(*, collection_id: int, query: str, chunk_ids: Sequence[int]) -> dict[int, float]:
    """BM25 of ``query`` for the given chunks of one collection (how hybrid fusion scores candidates)."""
    lexical = lexical_load(collection_id)
    if lexical is None:
        return dict.fromkeys(chunk_ids, 0.0)
    return lexical.scores_of(query, chunk_ids)
