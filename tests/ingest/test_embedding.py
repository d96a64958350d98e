"""Embedding precision: bfloat16 where the CPU runs it natively and it matches float32,
float32 otherwise; callers always get unit-length float32 vectors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured

from ingest import embedding
from tests.conftest import REPO, SHARED_DATA

DIMENSIONS = 384


@pytest.fixture(autouse=True)
def _fresh_model() -> Iterator[None]:
    """Each test loads the model under its own settings; later tests get the default back."""
    embedding.model_forget()
    yield
    embedding.model_forget()


@pytest.fixture(scope="module")
def scifact_abstracts() -> list[str]:
    """Real abstracts: the first 48 and the 16 longest (well past the 256-token window)."""
    corpus = SHARED_DATA / "scifact" / "corpus.jsonl"
    if not corpus.is_file():
        if os.environ.get("CI"):
            pytest.fail(f"SciFact not found at {corpus}")
        pytest.skip(f"SciFact not found at {corpus}")
    with corpus.open(encoding="utf-8") as handle:
        texts = [f"{row['title']}\n{row['text']}" for row in map(json.loads, handle)]
    return texts[:48] + sorted(texts, key=len)[-16:]


def parameter_dtypes() -> set[str]:
    return {str(p.dtype) for p in embedding.get_model().parameters()}


def test_bf16_vectors_match_fp32_on_scifact_abstracts(settings, scifact_abstracts: list[str]) -> None:
    settings.EMBEDDING_PRECISION = "fp32"
    reference = embedding.embed_texts(scifact_abstracts)
    embedding.model_forget()
    settings.EMBEDDING_PRECISION = "bf16"
    trial = embedding.embed_texts(scifact_abstracts)
    assert embedding.precision() == "bf16"
    cosines = np.sum(reference * trial, axis=1)
    assert cosines.min() >= 0.999, f"worst abstract: {int(cosines.argmin())}, cosine {cosines.min():.5f}"


def test_forced_fp32_runs_in_fp32(settings) -> None:
    settings.EMBEDDING_PRECISION = "fp32"
    assert embedding.precision() == "fp32"
    assert parameter_dtypes() == {"torch.float32"}


def test_forced_bf16_runs_in_bf16_and_still_returns_float32(settings) -> None:
    settings.EMBEDDING_PRECISION = "bf16"
    vectors = embedding.embed_texts(["Meal allowance for business travel.", "Quarterly revenue"])
    assert embedding.precision() == "bf16"
    assert parameter_dtypes() == {"torch.bfloat16"}
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)


def test_bf16_pads_batches_to_a_few_lengths_without_changing_vectors(settings) -> None:
    """Few input shapes keep oneDNN's per-shape kernel cache (and the worker's memory) small."""
    settings.EMBEDDING_PRECISION = "bf16"
    texts = ["Meal allowance", "The travel policy reimburses meals up to a daily allowance of 40 euros."]
    padded = embedding.embed_texts(texts)
    transformer: Any = embedding.get_model()[0]
    features = transformer.preprocess(texts)
    assert features["input_ids"].shape[1] % embedding.BF16_PAD_TO_MULTIPLE_OF == 0
    transformer.processing_kwargs = {}
    unpadded = embedding.embed_texts(texts)
    assert np.sum(padded * unpadded, axis=1).min() >= 0.9999


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_vectors_are_unit_length_float32_rows(settings, precision: str) -> None:
    settings.EMBEDDING_PRECISION = precision
    texts = ["short", "A somewhat longer passage about the travel policy and its meal allowance. " * 40, "ok"]
    vectors = embedding.embed_texts(texts)
    assert vectors.shape == (3, DIMENSIONS)
    assert vectors.dtype == np.float32 and vectors.flags.c_contiguous
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-6)
    query = embedding.embed_query("short")
    assert query.shape == (DIMENSIONS,) and query.dtype == np.float32
    # Alone or batched with longer texts (padding): the same direction, to bf16's precision.
    assert float(query @ vectors[0]) == pytest.approx(1.0, abs=1e-3)
    assert embedding.from_bytes(embedding.to_bytes(query)).tolist() == query.tolist()


def test_no_texts_give_an_empty_float32_matrix(settings) -> None:
    settings.EMBEDDING_PRECISION = "fp32"
    vectors = embedding.embed_texts([])
    assert vectors.shape == (0, DIMENSIONS) and vectors.dtype == np.float32


def test_auto_uses_fp32_on_a_cpu_without_native_bf16(settings, monkeypatch) -> None:
    settings.EMBEDDING_PRECISION = "auto"
    monkeypatch.setattr(embedding, "cpu_has_native_bf16", lambda: False)
    assert embedding.precision() == "fp32"
    assert parameter_dtypes() == {"torch.float32"}


def test_auto_uses_bf16_on_a_capable_cpu_when_it_matches_fp32(settings, monkeypatch) -> None:
    settings.EMBEDDING_PRECISION = "auto"
    monkeypatch.setattr(embedding, "cpu_has_native_bf16", lambda: True)
    assert embedding.precision() == "bf16"


def test_auto_falls_back_to_fp32_when_bf16_fails_the_load_check(settings, monkeypatch) -> None:
    settings.EMBEDDING_PRECISION = "auto"
    monkeypatch.setattr(embedding, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(embedding, "MIN_BF16_COSINE", 1.5)  # no model can pass this
    assert embedding.precision() == "fp32"
    assert parameter_dtypes() == {"torch.float32"}


def test_unset_precision_means_auto(settings) -> None:
    if hasattr(settings, "EMBEDDING_PRECISION"):
        del settings.EMBEDDING_PRECISION
    assert embedding.configured_precision() == "auto"


def test_unknown_precision_is_a_configuration_error(settings) -> None:
    settings.EMBEDDING_PRECISION = "int8"
    with pytest.raises(ImproperlyConfigured, match="EMBEDDING_PRECISION"):
        embedding.precision()


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
    assert embedding.cpu_has_native_bf16(cpuinfo) is native


def test_importing_the_module_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import os, sys; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'assistant.settings');"
        "import django; django.setup(); import ingest.embedding;"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))"
    )
    env = {**os.environ, "ASSISTANT_DATA_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
