"""EPUB, RTF and ODT: converted to HTML by pandoc, then read as a web page.

This is what unstructured's own partition_epub and partition_rtf do. Its
partition_odt goes through DOCX instead, which needs pandoc's data files, and
Debian's pandoc cannot read those in the sandbox mode unstructured runs it in;
HTML output needs none.
"""

from __future__ import annotations

import logging
import shutil
import zipfile
from pathlib import Path
from typing import ClassVar

from ingest.parsers.base import ParsedDocument, ParseError
from ingest.parsers.elements import convert_elements
from ingest.parsers.unstructured_setup import prepare_unstructured

_MAX_MANIFEST_BYTES = 1024 * 1024


def _is_encrypted_odf(path: Path) -> bool:
    """An OpenDocument saved with a password lists its encrypted parts in the manifest."""
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo("META-INF/manifest.xml")
            if info.file_size > _MAX_MANIFEST_BYTES:
                return False  # not a real manifest, and not worth unpacking
            manifest = archive.read(info)
    except (zipfile.BadZipFile, KeyError, OSError):
        return False  # pandoc reports a damaged file in its own words
    return b"encryption-data" in manifest


class PandocParser:
    file_types: ClassVar[frozenset[str]] = frozenset({"epub", "rtf", "odt"})

    def parse(self, path: Path, *, file_type: str) -> ParsedDocument:
        if shutil.which("pandoc") is None:
            raise ParseError(
                f"{file_type.upper()} files need pandoc, which is not installed on the server "
                "(Debian package pandoc; see .ci/system-packages.sh)."
            )
        if file_type == "odt" and _is_encrypted_odf(path):
            raise ParseError("The ODT document is password-protected. Upload a copy without a password.")
        prepare_unstructured()
        # pypandoc logs pandoc's warnings about missing translation files on every call.
        logging.getLogger("pypandoc").setLevel(logging.ERROR)
        from unstructured.file_utils.file_conversion import convert_file_to_html_text_using_pandoc
        from unstructured.partition.html import partition_html

        try:
            html = convert_file_to_html_text_using_pandoc(source_format=file_type, filename=str(path))
            raw = partition_html(text=html, languages=["eng"]) if html.strip() else []
        except Exception as exc:
            detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise ParseError(f"The {file_type.upper()} file could not be read; it may be damaged ({detail}).") from exc
        return ParsedDocument(elements=convert_elements(raw))
