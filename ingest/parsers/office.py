"""Office documents, web pages and Markdown, through unstructured's partitioners."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import ClassVar

from ingest.parsers.base import ParsedDocument, ParseError
from ingest.parsers.elements import convert_elements
from ingest.parsers.unstructured_setup import prepare_unstructured

# detected type -> (module, function). Imported on use: each pulls in its own stack.
_PARTITIONERS: dict[str, tuple[str, str]] = {
    "docx": ("unstructured.partition.docx", "partition_docx"),
    "pptx": ("unstructured.partition.pptx", "partition_pptx"),
    "html": ("unstructured.partition.html", "partition_html"),
    "md": ("unstructured.partition.md", "partition_md"),
}


class UnstructuredParser:
    file_types: ClassVar[frozenset[str]] = frozenset(_PARTITIONERS)

    def parse(self, path: Path, *, file_type: str) -> ParsedDocument:
        prepare_unstructured()
        module_name, function_name = _PARTITIONERS[file_type]
        partition = getattr(importlib.import_module(module_name), function_name)
        try:
            raw = partition(filename=str(path), languages=["eng"])
        except Exception as exc:
            raise ParseError(
                f"The {file_type.upper()} file could not be read; it may be damaged ({type(exc).__name__}: {exc})."
            ) from exc
        elements = convert_elements(raw)
        pages = max((e.page for e in elements if e.page), default=None)
        return ParsedDocument(elements=elements, pages=pages)
