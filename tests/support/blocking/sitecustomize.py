"""Test-only: makes a worker block on a marked file, for as long as it takes.

A test that wants a time limit to fire, or a worker to be caught mid-document,
must not bet on the machine being slow. A worker started with this folder first
on its PYTHONPATH (``tests.support.blocking.blocking_env``) runs the product
unchanged, except that

* parsing a plain-text file that contains ``BLOCK_PARSING``,
* embedding a text that contains ``BLOCK_EMBEDDING`` and
* a folder connector reading a file whose path contains ``BLOCK_CONNECTOR_ITEM``
  while the file named by ``$BLOCK_CONNECTOR_GATE`` exists

never finish: they wait until something from outside ends them (the time limit's
signal, a kill). Embedding a text that contains ``PAUSE_EMBEDDING`` waits until the
file named by ``RESUME_FILE_ENV`` exists, then goes on. Python imports
``sitecustomize`` at start-up; the product's modules are wrapped when they are first
imported, so nothing is loaded early.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
import time
from types import ModuleType
from typing import Any

from tests.support.blocking import (
    BLOCK_CONNECTOR_GATE_ENV,
    BLOCK_CONNECTOR_ITEM,
    BLOCK_EMBEDDING,
    BLOCK_PARSING,
    PAUSE_EMBEDDING,
    RESUME_FILE_ENV,
)


def _block() -> None:
    # Short sleeps, not one wait on a lock: a signal handler (Celery's soft time
    # limit) runs between them and its exception ends the loop.
    while True:
        time.sleep(0.05)


def _wrap_text_parser(module: ModuleType) -> None:
    parser = module.PlainTextParser
    parse = parser.parse

    def blocking_parse(self: Any, path: Any, *, file_type: str) -> Any:
        if BLOCK_PARSING.encode() in path.read_bytes():
            _block()
        return parse(self, path, file_type=file_type)

    parser.parse = blocking_parse


def _wrap_embedding(module: ModuleType) -> None:
    embed_texts = module.embed_texts

    def blocking_embed_texts(texts: Any, *args: Any, **kwargs: Any) -> Any:
        if any(BLOCK_EMBEDDING in text for text in texts):
            _block()
        if any(PAUSE_EMBEDDING in text for text in texts):
            resume = os.environ.get(RESUME_FILE_ENV, "")
            while not (resume and os.path.exists(resume)):
                time.sleep(0.05)
        return embed_texts(texts, *args, **kwargs)

    module.embed_texts = blocking_embed_texts  # type: ignore[attr-defined]


def _wrap_folder_source(module: ModuleType) -> None:
    source = module.FolderSource
    open_item = source.open_item

    def blocking_open_item(self: Any, item: Any) -> Any:
        # Blocks only while the test's gate file exists: the run that resumes after
        # the kill (the gate removed) reads the same file normally.
        gate = os.environ.get(BLOCK_CONNECTOR_GATE_ENV, "")
        if BLOCK_CONNECTOR_ITEM in item.source_id and gate and os.path.exists(gate):
            _block()
        return open_item(self, item)

    source.open_item = blocking_open_item


_WRAPPERS = {
    "ingest.parsers.text": _wrap_text_parser,
    "ingest.embedding": _wrap_embedding,
    "assistant.connectors.sources.folder": _wrap_folder_source,
}


class _WrapOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        wrap = _WRAPPERS.get(fullname)
        if wrap is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        exec_module = loader.exec_module

        def exec_and_wrap(module: ModuleType) -> None:
            exec_module(module)
            wrap(module)

        loader.exec_module = exec_and_wrap  # type: ignore[method-assign]
        return spec


sys.meta_path.insert(0, _WrapOnImport())
