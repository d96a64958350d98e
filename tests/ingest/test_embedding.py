"""Embedding backends: each one available here reproduces torch float32 on real text,
``auto`` only ever picks a faithful one, and callers always get unit-length float32 vectors."""

from __future__ import annotations

import copy
import importlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.test import override_settings

from ingest import embedding, embedding_backends, embedding_onnx
from ingest.embedding_backends import Candidate, Source, TorchBackend
from tests.conftest import REPO, SHARED_DATA

DIMENSIONS = 384
# Every backend but the reference, where its runtime is installed (torch-bf16 always is:
# emulated on CPUs without AMX/AVX512-BF16, slowly, but with the same results).
RUNTIMES = {"torch-bf16": "torch", "onnx": "onnxruntime", "openvino": "openvino"}


def require_runtime(backend: str) -> None:
    module = RUNTIMES.get(backend)
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ONNX export for the module's tests; the cache tests copy it or make their own."""
    return tmp_path_factory.mktemp("embedding-cache")


@pytest.fixture(autouse=True)
def _fresh_model(settings, cache_dir: Path) -> Iterator[None]:
    """Each test loads the model under its own settings; later tests get the default back."""
    settings.EMBEDDING_CACHE_DIR = cache_dir
    settings.EMBEDDING_PRECISION = "auto"
    embedding.model_forget()
    yield
    embedding.model_forget()


@pytest.fixture(scope="module")
def scifact_abstracts() -> list[str]:
    """Real abstracts: the first 16 and the 8 longest (well past the 256-token window)."""
    corpus = SHARED_DATA / "scifact" / "corpus.jsonl"
    if not corpus.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"SciFact not found at {corpus}")
        pytest.skip(f"SciFact not found at {corpus}")
    with corpus.open(encoding="utf-8") as handle:
        texts = [f"{row['title']}\n{row['text']}" for row in map(json.loads, handle)]
    return texts[:16] + sorted(texts, key=len)[-8:]


@pytest.fixture(scope="module")
def fp32_vectors(scifact_abstracts: list[str]) -> np.ndarray:
    with override_settings(EMBEDDING_BACKEND="torch-fp32", EMBEDDING_PRECISION="auto"):
        embedding.model_forget()
        try:
            return embedding.embed_texts(scifact_abstracts)
        finally:
            embedding.model_forget()


def parameter_dtypes() -> set[str]:
    return {str(p.dtype) for p in embedding.get_model().parameters()}


def source() -> Source:
    """What the backends are built from, for the float32 model loaded under the current settings."""
    return Source(
        model=embedding.get_model(),
        path=Path(embedding.model_path()),
        cache_dir=Path(django_settings.EMBEDDING_CACHE_DIR),
    )


def truncating_candidate(tokens: int) -> Candidate:
    """A real backend that is fast and wrong: torch float32 reading only the first ``tokens``."""

    def build(source: Source) -> TorchBackend:
        model = copy.deepcopy(source.model)
        model.max_seq_length = tokens
        return TorchBackend(model, name=f"torch-fp32-first-{tokens}-tokens", precision="fp32")

    return Candidate(f"torch-fp32-first-{tokens}-tokens", applicable=lambda: True, build=build)


@pytest.mark.parametrize("backend", ["torch-bf16", "onnx", "openvino"])
def test_every_backend_reproduces_torch_fp32_on_scifact_abstracts(
    settings, backend: str, scifact_abstracts: list[str], fp32_vectors: np.ndarray
) -> None:
    require_runtime(backend)
    settings.EMBEDDING_BACKEND = backend
    trial = embedding.embed_texts(scifact_abstracts)
    assert embedding.backend_name() == backend
    assert embedding.calibration() == ()  # a named backend is used as it is, without calibration
    cosines = np.sum(fp32_vectors * trial, axis=1)
    assert cosines.min() >= 0.999, f"worst abstract: {int(cosines.argmin())}, cosine {cosines.min():.5f}"


@pytest.mark.parametrize("backend", ["torch-fp32", "torch-bf16", "onnx", "openvino"])
def test_vectors_are_unit_length_float32_rows_in_the_callers_order(settings, backend: str) -> None:
    require_runtime(backend)
    settings.EMBEDDING_BACKEND = backend
    texts = ["short", "A somewhat longer passage about the travel policy and its meal allowance. " * 40, "ok"]
    vectors = embedding.embed_texts(texts)
    assert vectors.shape == (3, DIMENSIONS)
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    # Texts are embedded longest first; the rows still follow the caller's order.
    reordered = embedding.embed_texts(texts[::-1])[::-1]
    assert np.sum(vectors * reordered, axis=1).min() >= 0.999
    query = embedding.embed_query("short")
    assert query.shape == (DIMENSIONS,) and query.dtype == np.float32
    # Alone or batched with longer texts (padding): the same direction, to bf16's precision.
    assert float(query @ vectors[0]) == pytest.approx(1.0, abs=1e-3)
    assert embedding.from_bytes(embedding.to_bytes(query)).tolist() == query.tolist()


def test_forced_fp32_runs_in_fp32(settings) -> None:
    settings.EMBEDDING_BACKEND = "torch-fp32"
    assert embedding.precision() == "fp32"
    assert parameter_dtypes() == {"torch.float32"}


def test_forced_bf16_runs_in_bf16_and_still_returns_float32(settings) -> None:
    settings.EMBEDDING_BACKEND = "torch-bf16"
    vectors = embedding.embed_texts(["Meal allowance for business travel.", "Quarterly revenue"])
    assert embedding.precision() == "bf16"
    assert parameter_dtypes() == {"torch.bfloat16"}
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


@pytest.mark.parametrize(("precision", "backend"), [("fp32", "torch-fp32"), ("bf16", "torch-bf16")])
def test_the_older_precision_setting_names_a_torch_backend(settings, precision: str, backend: str) -> None:
    settings.EMBEDDING_BACKEND = "auto"
    settings.EMBEDDING_PRECISION = precision
    assert embedding.backend_name() == backend
    assert embedding.precision() == precision


def test_bf16_pads_batches_to_a_few_lengths_without_changing_vectors(settings) -> None:
    """Few input shapes keep oneDNN's per-shape kernel cache (and the worker's memory) small."""
    settings.EMBEDDING_BACKEND = "torch-bf16"
    texts = ["Meal allowance", "The travel policy reimburses meals up to a daily allowance of 40 euros."]
    padded = embedding.embed_texts(texts)
    transformer: Any = embedding.get_model()[0]
    features = transformer.preprocess(texts)
    assert features["input_ids"].shape[1] % embedding_backends.BF16_PAD_TO_MULTIPLE_OF == 0
    transformer.processing_kwargs = {}
    unpadded = embedding.embed_texts(texts)
    assert np.sum(padded * unpadded, axis=1).min() >= 0.9999


def test_no_texts_give_an_empty_float32_matrix(settings) -> None:
    settings.EMBEDDING_BACKEND = "torch-fp32"
    vectors = embedding.embed_texts([])
    assert vectors.shape == (0, DIMENSIONS) and vectors.dtype == np.float32


def test_auto_never_picks_an_unfaithful_backend(settings, monkeypatch, caplog) -> None:
    """Reading 16 tokens is the fastest backend there is, and it is refused: long texts differ."""
    truncating = truncating_candidate(16)
    monkeypatch.setattr(embedding_backends, "CANDIDATES", (*embedding_backends.CANDIDATES, truncating))
    settings.EMBEDDING_BACKEND = "auto"
    with caplog.at_level(logging.INFO, logger="ingest.embedding"):
        chosen = embedding.backend_name()
    trials = {trial.backend: trial for trial in embedding.calibration()}
    # Every candidate applicable here was tried: bfloat16 only on a CPU that runs it natively.
    assert set(trials) == {candidate.name for candidate in embedding_backends.CANDIDATES if candidate.applicable()}
    assert ("torch-bf16" in trials) is embedding_backends.cpu_has_native_bf16()
    assert chosen != truncating.name
    assert trials[truncating.name].min_cosine is not None and not trials[truncating.name].faithful
    assert trials[truncating.name].seconds is None  # unfaithful: not even timed
    assert trials[chosen].faithful
    # The fastest of the faithful ones, by the figures calibration itself recorded.
    timed = [trial for trial in trials.values() if trial.faithful and trial.seconds is not None]
    assert trials[chosen].seconds == min(trial.seconds for trial in timed if trial.seconds is not None)
    assert any(
        "calibration" in record.getMessage() and truncating.name in record.getMessage() for record in caplog.records
    )


def test_auto_falls_back_to_torch_fp32_when_nothing_else_is_faithful(settings, monkeypatch) -> None:
    broken = Candidate(
        "not-installed", applicable=lambda: True, build=lambda source: importlib.import_module("no_such_runtime")
    )
    candidates = (embedding_backends.CANDIDATES[0], truncating_candidate(16), broken)
    monkeypatch.setattr(embedding_backends, "CANDIDATES", candidates)
    settings.EMBEDDING_BACKEND = "auto"
    assert embedding.backend_name() == "torch-fp32"
    assert parameter_dtypes() == {"torch.float32"}
    trials = {trial.backend: trial for trial in embedding.calibration()}
    assert trials["not-installed"].error.startswith("ModuleNotFoundError")  # skipped, and said so
    assert not trials["torch-fp32-first-16-tokens"].faithful


def test_unset_settings_mean_auto(settings) -> None:
    for name in ("EMBEDDING_BACKEND", "EMBEDDING_PRECISION"):
        if hasattr(settings, name):
            delattr(settings, name)
    assert embedding.configured_backend() == "auto"


@pytest.mark.parametrize(
    ("backend", "precision", "message"),
    [
        ("tensorrt", "auto", "EMBEDDING_BACKEND must be one of auto, torch-fp32, torch-bf16, onnx, openvino"),
        ("auto", "int8", "EMBEDDING_PRECISION must be one of"),
        ("onnx", "bf16", "EMBEDDING_PRECISION=bf16 means EMBEDDING_BACKEND=torch-bf16"),
    ],
)
def test_unknown_or_contradictory_settings_are_a_configuration_error(
    settings, backend: str, precision: str, message: str
) -> None:
    settings.EMBEDDING_BACKEND = backend
    settings.EMBEDDING_PRECISION = precision
    with pytest.raises(ImproperlyConfigured, match=message):
        embedding.embed_query("anything")


def test_onnx_export_is_reused_on_the_second_load(settings, tmp_path: Path, cache_dir: Path) -> None:
    settings.EMBEDDING_BACKEND = "onnx"
    require_runtime("onnx")
    embedding.embed_query("warm the module's cache")
    for path in cache_dir.glob("*.onnx*"):  # a copy of the module's export: no export here
        (tmp_path / path.name).write_bytes(path.read_bytes())
    settings.EMBEDDING_CACHE_DIR = tmp_path
    embedding.model_forget()
    embedding.embed_query("first load")
    [exported] = tmp_path.glob("*.onnx")
    before = exported.stat()
    embedding.model_forget()
    embedding.embed_query("second load")
    after = exported.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert exported == embedding_onnx.cached_path(source())
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        [exported.name, f"{exported.name}.sha256", f"{exported.name}.lock"]
    )


def test_a_damaged_onnx_export_is_exported_again(
    settings, tmp_path: Path, scifact_abstracts: list[str], fp32_vectors: np.ndarray
) -> None:
    require_runtime("onnx")
    settings.EMBEDDING_BACKEND = "onnx"
    settings.EMBEDDING_CACHE_DIR = tmp_path
    exported = embedding_onnx.cached_path(source())
    exported.write_bytes(b"\x08\x07not a graph, a write cut short")
    (tmp_path / f"{exported.name}.sha256").write_text("0" * 64)
    embedding.model_forget()
    vectors = embedding.embed_texts(scifact_abstracts[-4:])
    assert embedding_onnx.is_intact(exported)
    assert exported.stat().st_size > 1_000_000
    assert np.sum(vectors * fp32_vectors[-4:], axis=1).min() >= 0.999
    assert not list(tmp_path.glob(".export-*"))  # the temporary folder is gone


def test_a_changed_model_is_exported_under_another_name(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    (model_dir / "config.json").write_text("{}")
    before = embedding_onnx.model_digest(model_dir)
    (model_dir / "config.json").write_text('{"hidden_size": 384}')
    assert embedding_onnx.model_digest(model_dir) != before


@pytest.mark.parametrize(
    ("flags", "native"),
    [
        ("fpu sse avx2 avx512f avx512_bf16 avx512_vnni", True),
        ("fpu sse avx2 avx512f amx_bf16 amx_tile", True),
        ("fpu sse avx2 avx512f avx512_vnni", False),
    ],
)
def test_cpu_flags_decide_native_bf16(tmp_path: Path, flags: str, native: bool) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n")
    assert embedding_backends.cpu_has_native_bf16(cpuinfo) is native
    assert embedding_backends.cpu_name(cpuinfo) == "Some CPU"


def test_importing_the_module_does_not_import_torch_or_a_runtime(tmp_path: Path) -> None:
    heavy = ("torch", "sentence_transformers", "transformers", "onnxruntime", "openvino")
    code = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'assistant.settings');"
        "import django; django.setup(); import ingest.embedding;"
        f"print(sorted(m for m in {heavy!r} if m in sys.modules))"
    )
    env = {**os.environ, "ASSISTANT_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_auto_choice_is_measured_once_and_remembered(settings, monkeypatch, tmp_path) -> None:
    """Later processes reuse the choice; a damaged record, or another CPU or runtime, measures again."""
    candidates = (embedding_backends.CANDIDATES[0], truncating_candidate(16))
    monkeypatch.setattr(embedding_backends, "CANDIDATES", candidates)
    settings.EMBEDDING_BACKEND = "auto"
    settings.EMBEDDING_CACHE_DIR = tmp_path
    embedding.model_forget()
    assert embedding.backend_name() == "torch-fp32"
    assert embedding.calibration()  # measured
    record = tmp_path / embedding_backends.CHOICE_FILE
    assert list(json.loads(record.read_text()).values()) == ["torch-fp32"]

    embedding.model_forget()  # as a new process would
    assert embedding.backend_name() == "torch-fp32"
    assert embedding.calibration() == ()  # remembered, not measured again

    record.write_text("{not json")
    embedding.model_forget()
    assert embedding.backend_name() == "torch-fp32"
    assert embedding.calibration()  # measured again, and remembered again
    assert json.loads(record.read_text())

    monkeypatch.setattr(embedding_backends, "cpu_summary", lambda: "another CPU [avx2]")
    embedding.model_forget()
    embedding.backend_name()
    assert embedding.calibration()  # the key changed with the CPU
    embedding.model_forget()
