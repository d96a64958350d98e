"""Embeddings from an OpenAI-compatible ``/v1/embeddings`` server instead of in-process.

Set ``EMBEDDING_BASE_URL`` (vLLM's pooling runner, Text Embeddings Inference, Infinity)
and workers and the web process embed over HTTP: torch is never loaded. The server must
serve the same model as ``EMBEDDING_MODEL_PATH`` (or the packaged all-MiniLM-L6-v2): the
embedding space (``embedding.model_id()``) is named after the model folder, so an index
built by the server is searched with in-process query vectors and the other way round.
The model folder is still read here for its tokenizer (``tokenizers``, no torch) and its
dimension: texts longer than the model's window are cut before they are sent, exactly
where the in-process model truncates them, and every vector coming back is checked for
that dimension and normalised in float32 as the in-process backends do.

Texts go in batches of ``EMBEDDING_BATCH_SIZE``. A connection error, a timeout or a 5xx
is retried ``EMBEDDING_SERVER_RETRIES`` times with doubling back-off; anything else (4xx,
a malformed answer, the wrong number of vectors or the wrong dimension) fails at once.
Failures raise ``EmbeddingServerError``, whose message names the server and the cause:
a document then fails with that reason, and a question gets it as the chat's error.
Never an empty or partial set of vectors.
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from ingest.embedding_backends import Precision, normalised

logger = logging.getLogger(__name__)

# Statuses worth a second try: the server is restarting, overloaded or behind a proxy that is.
RETRIED_STATUSES = frozenset({500, 502, 503, 504})


class EmbeddingServerError(Exception):
    """The embedding server could not embed; the message is fit to show to a person."""


class ServerBackend:
    """The ``Backend`` protocol (``ingest.embedding_backends``) over HTTP."""

    name = "server"
    precision: Precision = "fp32"  # the server's own precision is its business; vectors come back as float32

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        dimensions: int,
        api_key: str = "",
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        truncate: Callable[[str], str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.dimensions = dimensions
        self.api_key = api_key
        self.timeout = timeout
        self.retries = max(0, retries)
        self.backoff = backoff
        self.truncate = truncate or (lambda text: text)
        self.sleep = sleep
        self.transport = transport

    def _client(self) -> httpx.Client:
        # trust_env=False: proxy variables must never reroute company documents.
        return httpx.Client(timeout=self.timeout, trust_env=False, transport=self.transport)

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def encode(self, texts: Sequence[str], batch_size: int, *, retries: int | None = None) -> np.ndarray:
        """One float32 unit row per text, in order; ``EmbeddingServerError`` if any batch fails."""
        retries = self.retries if retries is None else retries
        if not texts:
            return np.zeros((0, self.dimensions), dtype=np.float32)
        step = max(1, batch_size)
        rows = []
        with self._client() as client:
            for start in range(0, len(texts), step):
                batch = [self.truncate(text) for text in texts[start : start + step]]
                rows.append(self._batch(client, batch, retries=retries))
        return normalised(np.vstack(rows))

    def _batch(self, client: httpx.Client, batch: list[str], *, retries: int) -> np.ndarray:
        url = f"{self.base_url}/embeddings"
        payload = {"model": self.model, "input": batch, "encoding_format": "float"}
        attempt = 0
        while True:
            try:
                response = client.post(url, json=payload, headers=self._headers())
            except httpx.TransportError as exc:  # refused, reset, timed out
                cause = f"not reachable ({type(exc).__name__}: {exc})"
            else:
                if response.status_code < 400:
                    return self._parsed(response, expected=len(batch))
                if response.status_code not in RETRIED_STATUSES:
                    raise EmbeddingServerError(
                        f"The embedding server at {self.base_url} refused the request "
                        f"({response.status_code}): {_message(response.text)}"
                    )
                cause = f"answered {response.status_code}: {_message(response.text)}"
            if attempt >= retries:
                raise EmbeddingServerError(
                    f"The embedding server at {self.base_url} is {cause}"
                    if cause.startswith("not reachable")
                    else f"The embedding server at {self.base_url} {cause}"
                ) from None
            delay = self.backoff * (2**attempt)
            attempt += 1
            logger.warning(
                "Embedding server %s %s; attempt %d of %d in %.1f s",
                self.base_url,
                cause,
                attempt + 1,
                retries + 1,
                delay,
            )
            self.sleep(delay)

    def _parsed(self, response: httpx.Response, *, expected: int) -> np.ndarray:
        where = f"The embedding server at {self.base_url}"
        try:
            data: Any = response.json()["data"]
            ordered = sorted(data, key=lambda item: int(item["index"]))
            vectors = np.asarray([item["embedding"] for item in ordered], dtype=np.float32)
        except (ValueError, KeyError, TypeError) as exc:
            raise EmbeddingServerError(
                f"{where} did not answer as an OpenAI-compatible embeddings server ({type(exc).__name__}: {exc})"
            ) from None
        if vectors.ndim != 2 or vectors.shape[0] != expected:
            raise EmbeddingServerError(f"{where} sent {len(ordered)} vectors for {expected} texts")
        if vectors.shape[1] != self.dimensions:
            raise EmbeddingServerError(
                f"{where} sent vectors of {vectors.shape[1]} dimensions, the model here has {self.dimensions}: "
                "it serves another model than EMBEDDING_MODEL_PATH"
            )
        if not np.all(np.isfinite(vectors)) or np.any(np.linalg.norm(vectors, axis=1) == 0):
            raise EmbeddingServerError(f"{where} sent an empty or invalid vector")
        return vectors

    def health(self) -> str:
        """Embed one word: the server is up and serves vectors of the right dimension."""
        self.encode(["ok"], batch_size=1, retries=0)
        return f"{self.base_url} serves {self.model} ({self.dimensions} dimensions)"


def _message(body: str) -> str:
    try:
        error = json.loads(body).get("error", body)
    except (ValueError, AttributeError):
        return body[:200] or "no reason given"
    if isinstance(error, dict):
        error = error.get("message", error)
    return str(error)[:200]


# --- What the model folder says, without torch ------------------------------------------------


def folder_dimensions(folder: Path) -> int:
    """The model's output dimension, from its pooling module's or transformer's configuration."""
    for name, key in (("1_Pooling/config.json", "word_embedding_dimension"), ("config.json", "hidden_size")):
        try:
            return int(json.loads((folder / name).read_text())[key])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    raise EmbeddingServerError(f"The embedding model's dimension is unknown: {folder} has no readable config")


def folder_window(folder: Path) -> int:
    """Tokens the model reads, special tokens included (sentence-transformers' ``max_seq_length``)."""
    try:
        return int(json.loads((folder / "sentence_bert_config.json").read_text())["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return int(json.loads((folder / "config.json").read_text()).get("max_position_embeddings", 512))


@functools.cache
def folder_tokenizer(folder: str) -> Any:
    """The model's fast tokenizer (``tokenizer.json``) without truncation or padding."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(Path(folder) / "tokenizer.json"))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def truncator(folder: str) -> Callable[[str], str]:
    """Cut a text where the in-process model stops reading (its window less [CLS] and [SEP]).

    The cut is made at the end of the last word piece kept, by character offset, so the
    server tokenises the same pieces and no server-specific truncation option is needed.
    """
    keep = folder_window(Path(folder)) - 2

    def truncate(text: str) -> str:
        encoding = folder_tokenizer(folder).encode(text, add_special_tokens=False)
        if len(encoding.ids) <= keep:
            return text
        return text[: encoding.offsets[keep - 1][1]]

    return truncate
