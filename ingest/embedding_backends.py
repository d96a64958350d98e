"""The ways the embedding model can run on a CPU, and the load-time choice among them.

Every backend embeds with the same model, tokenises with the model's own tokenizer
(truncating at its ``max_seq_length``, as sentence-transformers does) and returns float32
vectors, so the embedding space does not depend on the backend:

* ``torch-fp32``: sentence-transformers in float32, the reference the others are held to;
* ``torch-bf16``: the same model cast to bfloat16: about three times faster where the CPU
  multiplies bfloat16 natively (AMX, AVX512-BF16), slower where it is emulated;
* ``onnx``: the model's transformer exported once to ONNX (``embedding_onnx``) and run by
  ONNX Runtime in float32, mean-pooled and normalised in float32 as the model's own
  pooling module does;
* ``openvino``: the same ONNX file compiled by OpenVINO, in bfloat16 where the CPU has it
  natively and float32 elsewhere.

``calibrate`` is what ``EMBEDDING_BACKEND=auto`` runs at load: every candidate that is
installed and applicable to this CPU embeds the same probe texts (a word to a full
window) as torch-fp32; a candidate is faithful only if each of its vectors has a cosine
of at least ``MIN_COSINE`` to torch-fp32's; the fastest faithful one on a short timed run
of those probes is used. A candidate that cannot be built or run is skipped.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

import numpy as np

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

Precision = Literal["fp32", "bf16"]

# Instructions that run bfloat16 matrix products natively (Linux /proc/cpuinfo names).
BF16_CPU_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})
# The flags reported with a benchmark or a calibration: what decides which backend wins.
REPORTED_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")
# Faithful: every probe vector within this cosine of torch-fp32's.
MIN_COSINE = 0.999
# bfloat16 runs on oneDNN kernels compiled and cached per input shape; padding every
# batch to a multiple of this many tokens keeps the shapes few. Without it the cache
# grows with every new (batch, length) pair: +500 MB over 1,000 SciFact documents.
BF16_PAD_TO_MULTIPLE_OF = 32
# Runs of the probes per faithful candidate after the one that checks them; the fastest
# of all counts (the first pays for warm-up: kernels compiled per shape, caches).
CALIBRATION_RUNS = 1

_LONG_PROBE = (
    "Travel and expenses policy. Employees who travel on company business are reimbursed for "
    "reasonable costs of transport, lodging and meals, provided that the trip was approved in "
    "advance by their line manager and that every claim is supported by itemised receipts. "
    "Economy class is the rule for flights under six hours; business class may be approved for "
    "longer flights or where a medical certificate requires it. Rail is preferred to air for "
    "journeys under four hours. Hotels are booked through the travel desk at the negotiated "
    "corporate rate; where no such rate exists, the nightly cost must not exceed the city "
    "ceiling published each January (for example EUR 180 in Paris, GBP 160 in London, "
    "USD 250 in New York). A daily meal allowance of EUR 40 replaces receipts for meals on "
    "working days spent abroad; alcohol, minibar charges, in-room films, laundry for trips "
    "shorter than five nights and fines of any kind are never reimbursed. Claims are filed "
    "within thirty days of the end of the trip; late claims need the finance director's "
    "approval. Corporate cards may not be used for personal expenses, and any personal "
    "expense charged by mistake must be repaid within the month. Managers who approve their "
    "own travel, split one expense into several claims to stay under an approval threshold, "
    "or submit the same receipt twice will face disciplinary action under section 7.4 of the "
    "code of conduct. Questions go to the travel desk (travel@example.com, extension 4410)."
)
PROBE_TEXTS = (
    "ok",
    "Employees may claim a daily meal allowance when travelling on company business.",
    "Mitochondrial DNA mutations accumulate with age in post-mitotic human tissue.",
    "Quarterly revenue rose 12% to $4.1 billion on higher subscription sales (see Table 3).",
    "Le contrat peut être résilié par l'une ou l'autre des parties avec un préavis de trente jours.",
    _LONG_PROBE[:700],
    _LONG_PROBE,  # past the model's window: truncated, the full window embedded
    " ".join(reversed(_LONG_PROBE.split())),
)


class Backend(Protocol):
    """One way of running the model: ``encode`` returns one float32 row per text."""

    name: str
    precision: Precision

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray: ...


@dataclass(frozen=True)
class Source:
    """What every backend is built from: the float32 model and where to cache conversions."""

    model: SentenceTransformer
    path: Path
    cache_dir: Path


@dataclass(frozen=True)
class Candidate:
    """A backend ``EMBEDDING_BACKEND`` can name; ``applicable`` says whether ``auto`` tries it."""

    name: str
    applicable: Callable[[], bool]
    build: Callable[[Source], Backend]


@dataclass(frozen=True)
class Trial:
    """One candidate's calibration: its worst probe cosine to torch-fp32 and its best time."""

    backend: str
    min_cosine: float | None = None
    seconds: float | None = None
    error: str = ""

    @property
    def faithful(self) -> bool:
        return self.min_cosine is not None and self.min_cosine >= MIN_COSINE

    def __str__(self) -> str:
        if self.error:
            return f"{self.backend}: failed ({self.error})"
        timing = f"{self.seconds:.3f} s" if self.seconds is not None else "not timed"
        verdict = "faithful" if self.faithful else "UNFAITHFUL"
        return f"{self.backend}: min cosine {self.min_cosine:.5f} ({verdict}), {timing}"


# --- The CPU --------------------------------------------------------------------------------


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """The instruction-set flags of this CPU as Linux lists them (empty where unknown)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        # x86 Linux names the list "flags"; stop at the first CPU, they are all alike.
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def cpu_name(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return "unknown CPU"
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name":
            return value.strip()
    return "unknown CPU"


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bfloat16 matrices in hardware (AMX or AVX512-BF16)."""
    flags = cpu_flags(cpuinfo)
    if flags:
        return bool(BF16_CPU_FLAGS & flags)
    return _torch_reports_native_bf16()


def _torch_reports_native_bf16() -> bool:
    """Fallback where /proc/cpuinfo is missing: torch's own (private) CPU probes."""
    import torch

    probes = [getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")]
    return any(bool(probe()) for probe in probes if callable(probe))


def cpu_summary() -> str:
    """``model name [flags]`` with the flags that matter here, for logs and benchmarks."""
    present = [flag for flag in REPORTED_CPU_FLAGS if flag in cpu_flags()]
    return f"{cpu_name()}, {os.cpu_count()} logical CPUs [{' '.join(present) or 'no AVX2'}]"


# --- Backends ------------------------------------------------------------------------------


def normalised(vectors: np.ndarray) -> np.ndarray:
    """Unit-length float32 rows (always normalised in float32: bfloat16's is only good to ~0.4%)."""
    vectors = np.array(vectors, dtype=np.float32, order="C", copy=True)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors /= np.maximum(norms, np.float32(1e-12))
    return vectors


class TorchBackend:
    """A sentence-transformers model as it is (it sorts each call's texts by length itself)."""

    def __init__(self, model: SentenceTransformer, *, name: str, precision: Precision) -> None:
        self.model = model
        self.name = name
        self.precision: Precision = precision

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        vectors = self.model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=False,
            convert_to_numpy=True,  # sentence-transformers widens bfloat16 to float32 first
            show_progress_bar=False,
        )
        return normalised(vectors)


def as_bf16(model: SentenceTransformer) -> SentenceTransformer:
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


def _torch_fp32(source: Source) -> Backend:
    return TorchBackend(source.model, name="torch-fp32", precision="fp32")


def _torch_bf16(source: Source) -> Backend:
    # A copy, not an in-place cast: casting back would not restore the float32 weights.
    return TorchBackend(as_bf16(copy.deepcopy(source.model)), name="torch-bf16", precision="bf16")


def _onnx(source: Source) -> Backend:
    from ingest import embedding_onnx

    return embedding_onnx.onnxruntime_backend(source)


def _openvino(source: Source) -> Backend:
    from ingest import embedding_onnx

    return embedding_onnx.openvino_backend(source, bf16=cpu_has_native_bf16())


def installed(module: str) -> Callable[[], bool]:
    """An ``applicable`` test: the module can be imported (without importing it)."""
    import importlib.util

    return lambda: importlib.util.find_spec(module) is not None


# In the order ``auto`` tries them; torch-fp32, the reference, first. Public so that a
# deployment (or a test) can add a candidate that calibration then holds to the same rules.
CANDIDATES: tuple[Candidate, ...] = (
    Candidate("torch-fp32", applicable=lambda: True, build=_torch_fp32),
    Candidate("torch-bf16", applicable=lambda: cpu_has_native_bf16(), build=_torch_bf16),
    Candidate("onnx", applicable=installed("onnxruntime"), build=_onnx),
    Candidate("openvino", applicable=installed("openvino"), build=_openvino),
)


def candidate_names() -> tuple[str, ...]:
    return tuple(candidate.name for candidate in CANDIDATES)


def build(name: str, source: Source) -> Backend:
    """The backend ``name`` (one of ``candidate_names()``), whatever this CPU is."""
    for candidate in CANDIDATES:
        if candidate.name == name:
            return candidate.build(source)
    raise KeyError(name)


# --- Calibration ---------------------------------------------------------------------------


def _timed_encode(backend: Backend, texts: Sequence[str]) -> tuple[np.ndarray, float]:
    start = time.perf_counter()
    vectors = backend.encode(texts, batch_size=len(texts))
    return vectors, time.perf_counter() - start


def calibrate(source: Source, texts: Sequence[str] = PROBE_TEXTS) -> tuple[Backend, list[Trial]]:
    """The fastest candidate whose vectors of ``texts`` all match torch-fp32's, and every trial.

    torch-fp32 is always faithful to itself, so there is always an answer.
    """
    reference_backend = _torch_fp32(source)
    reference = reference_backend.encode(texts, batch_size=len(texts))
    chosen: Backend = reference_backend
    chosen_seconds = float("inf")
    trials: list[Trial] = []
    for candidate in CANDIDATES:
        if not candidate.applicable():
            continue
        try:
            backend = reference_backend if candidate.name == "torch-fp32" else candidate.build(source)
            vectors, seconds = _timed_encode(backend, texts)
            cosines = np.sum(reference * normalised(vectors), axis=1)
            trial = Trial(candidate.name, min_cosine=float(cosines.min()))
            if trial.faithful:
                for _ in range(CALIBRATION_RUNS):
                    seconds = min(seconds, _timed_encode(backend, texts)[1])
                trial = Trial(candidate.name, min_cosine=trial.min_cosine, seconds=seconds)
        except Exception as error:  # a backend that cannot run here is skipped, and said so
            trials.append(Trial(candidate.name, error=f"{type(error).__name__}: {error}"))
            logger.warning("Embedding backend %s could not be tried: %s", candidate.name, error)
            continue
        trials.append(trial)
        if trial.faithful and trial.seconds is not None and trial.seconds < chosen_seconds:
            chosen, chosen_seconds = backend, trial.seconds
    return chosen, trials


# --- The choice, remembered ----------------------------------------------------------------

CHOICE_FILE = "embedding-backend.json"


def calibration_key(source: Source) -> str:
    """What a calibration's outcome depends on: the CPU, the model's files, the runtimes, the candidates."""
    from importlib import metadata

    from ingest.embedding_onnx import model_digest

    versions = []
    for distribution in ("torch", "onnxruntime", "openvino", "sentence-transformers", "transformers"):
        try:
            versions.append(f"{distribution}={metadata.version(distribution)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{distribution}=none")
    parts = [cpu_summary(), model_digest(source.path), *versions, *candidate_names()]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:32]


def calibrate_once(source: Source) -> tuple[Backend, list[Trial]]:
    """``calibrate``, once per CPU, model and runtime versions: later loads reuse its choice.

    Every worker process would otherwise measure the same thing again at start (seconds on
    an idle machine, far more on a busy one). The choice is kept in ``source.cache_dir``
    (``EMBEDDING_CACHE_DIR``) under a key of everything it depends on; a missing or
    damaged file, or a remembered backend that no longer builds, means calibrating again.
    Returns no trials when the remembered choice was used.
    """
    path = source.cache_dir / CHOICE_FILE
    key = calibration_key(source)
    try:
        remembered = json.loads(path.read_text()).get(key)
    except (OSError, ValueError, AttributeError):
        remembered = None
    if remembered in candidate_names():
        try:
            return build(str(remembered), source), []
        except Exception as error:  # e.g. a runtime removed since: measure again
            logger.warning("Remembered embedding backend %s could not be built: %s", remembered, error)
    backend, trials = calibrate(source)
    try:
        source.cache_dir.mkdir(parents=True, exist_ok=True)
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps({key: backend.name}))
        os.replace(temporary, path)
    except OSError as error:  # a read-only cache only costs the next process a calibration
        logger.warning("The embedding backend choice could not be saved in %s: %s", path, error)
    return backend, trials
