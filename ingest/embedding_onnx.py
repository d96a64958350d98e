"""The embedding model as an ONNX graph, run by ONNX Runtime or OpenVINO.

The model's transformer is exported once with ``torch.onnx.export`` and cached under
``EMBEDDING_CACHE_DIR``, named by a digest of the model folder's files (a changed model
is exported again, never confused with the old one). The file is written to a temporary
name and renamed, with a sidecar holding its SHA-256: a file that does not match its
sidecar (a crash mid-write, a damaged disk) is exported again. Processes that start
together (Celery's pool) export it once between them, under a file lock.

The graph returns token states only; tokenisation (the model's own tokenizer, truncated
at its ``max_seq_length``), mean pooling over the attention mask and normalisation are
done here in float32, as the model's sentence-transformers modules (``modules.json``:
Transformer, mean Pooling, Normalize) do them. Texts are embedded longest first, so each
batch holds texts of similar length and pads little; rows come back in the caller's order.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ingest.embedding_backends import Backend, Precision, Source, normalised

logger = logging.getLogger(__name__)

# Part of the cache key: a change to how the graph is exported must not reuse old files.
EXPORT_RECIPE = "transformer-last-hidden-state/opset-17/v1"
OPSET = 17
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")

Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


class TokenizedBackend:
    """Tokenise, run a token-state graph batch by batch, mean-pool and normalise in float32."""

    def __init__(
        self, source: Source, run: Runner, *, name: str, precision: Precision, sort_by_length: bool = True
    ) -> None:
        self.name = name
        self.precision: Precision = precision
        self.sort_by_length = sort_by_length
        self._run = run
        self._tokenizer: Any = source.model.tokenizer
        self._max_length = int(source.model.max_seq_length or 512)
        self._dimensions = int(source.model.get_embedding_dimension() or 0)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        out = np.zeros((len(texts), self._dimensions), dtype=np.float32)
        if not texts:
            return out
        # The same call sentence-transformers' Transformer module makes, without padding
        # (each batch is padded to its own longest text below).
        encoded = self._tokenizer(
            list(texts),
            truncation="longest_first",
            max_length=self._max_length,
            padding=False,
            return_attention_mask=False,
        )
        ids: list[list[int]] = encoded["input_ids"]
        types: list[list[int]] | None = encoded.get("token_type_ids")
        order = np.argsort([-len(row) for row in ids], kind="stable") if self.sort_by_length else np.arange(len(ids))
        pad = int(self._tokenizer.pad_token_id or 0)
        for start in range(0, len(order), max(1, batch_size)):
            rows = order[start : start + batch_size]
            width = max(len(ids[row]) for row in rows)
            feeds = {name: np.zeros((len(rows), width), dtype=np.int64) for name in INPUT_NAMES}
            feeds["input_ids"].fill(pad)
            for i, row in enumerate(rows):
                length = len(ids[row])
                feeds["input_ids"][i, :length] = ids[row]
                feeds["attention_mask"][i, :length] = 1
                if types is not None:
                    feeds["token_type_ids"][i, :length] = types[row]
            states = np.asarray(self._run(feeds), dtype=np.float32)
            mask = feeds["attention_mask"].astype(np.float32)[:, :, None]
            counts = np.maximum(mask.sum(axis=1), np.float32(1e-9))
            out[rows] = (states * mask).sum(axis=1) / counts
        return normalised(out)


# --- The cached ONNX file ------------------------------------------------------------------


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def model_digest(model_dir: Path) -> str:
    """A digest of the model folder's own files (weights, configuration, tokenizer) and the recipe."""
    digest = hashlib.sha256(EXPORT_RECIPE.encode())
    for path in sorted(model_dir.iterdir()):
        if path.is_file():
            digest.update(path.name.encode() + b"\0" + _file_sha256(path).encode())
    return digest.hexdigest()


def cached_path(source: Source) -> Path:
    """Where ``source``'s exported graph lives (whether or not it is there yet)."""
    return source.cache_dir / f"{source.path.name}-{model_digest(source.path)[:16]}.onnx"


def _sidecar(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def is_intact(target: Path) -> bool:
    """Whether ``target`` is a complete export: present and matching the digest beside it."""
    try:
        expected = _sidecar(target).read_text(encoding="ascii").strip()
        return bool(expected) and _file_sha256(target) == expected
    except OSError:
        return False


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    with lock_path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def onnx_file(source: Source) -> Path:
    """The exported graph of ``source``'s transformer, exported now if missing or damaged."""
    target = cached_path(source)
    if is_intact(target):
        return target
    source.cache_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.with_name(target.name + ".lock")):
        if is_intact(target):  # another process exported it while this one waited
            return target
        if target.exists():
            logger.warning("Cached ONNX export %s does not match its digest: exporting again", target)
        _export(source, target)
    return target


def _export(source: Source, target: Path) -> None:
    import torch

    transformer: Any = source.model[0].auto_model

    class TokenStates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = source.model.tokenizer(["a sample", "a longer sample text"], padding=True, return_tensors="pt")
    args = tuple(sample.get(name, torch.zeros_like(sample["input_ids"])) for name in INPUT_NAMES)
    workdir = Path(tempfile.mkdtemp(prefix=".export-", dir=target.parent))
    try:
        path = workdir / "model.onnx"
        with torch.inference_mode():
            torch.onnx.export(
                TokenStates().eval(),
                args,
                str(path),
                input_names=list(INPUT_NAMES),
                output_names=["last_hidden_state"],
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in (*INPUT_NAMES, "last_hidden_state")},
                opset_version=OPSET,
                dynamo=False,
            )
        digest = workdir / "digest"
        digest.write_text(_file_sha256(path), encoding="ascii")
        # The graph first, then the digest that vouches for it: a crash in between
        # leaves a graph without a matching digest, which is exported again.
        os.replace(path, target)
        os.replace(digest, _sidecar(target))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    logger.info("Exported %s to %s", source.path, target)


# --- Runtimes ------------------------------------------------------------------------------


def onnxruntime_backend(source: Source, *, sort_by_length: bool = True) -> Backend:
    """The exported graph on ONNX Runtime's CPU provider, in float32, every optimisation on."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Without its arena ONNX Runtime hands activations back after each run: a worker holds
    # ~230 MB less after a batch of full-window texts, at no measurable cost in speed.
    options.enable_cpu_mem_arena = False
    session = ort.InferenceSession(str(onnx_file(source)), options, providers=["CPUExecutionProvider"])
    names = {node.name for node in session.get_inputs()}

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(session.run(None, {name: value for name, value in feeds.items() if name in names})[0])

    return TokenizedBackend(source, run, name="onnx", precision="fp32", sort_by_length=sort_by_length)


def openvino_backend(source: Source, *, bf16: bool, sort_by_length: bool = True) -> Backend:
    """The exported graph compiled by OpenVINO for this CPU: bfloat16 if asked (and native), else float32."""
    import openvino

    core = openvino.Core()
    compiled = core.compile_model(
        core.read_model(str(onnx_file(source))),
        "CPU",
        {"INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32", "PERFORMANCE_HINT": "LATENCY"},
    )
    request = compiled.create_infer_request()
    names = {port.get_any_name() for port in compiled.inputs}
    output = compiled.output(0)

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        result = request.infer({name: value for name, value in feeds.items() if name in names})
        return np.array(result[output], dtype=np.float32)  # a copy: the request reuses its buffer

    precision: Precision = "bf16" if bf16 else "fp32"
    return TokenizedBackend(source, run, name="openvino", precision=precision, sort_by_length=sort_by_length)
