"""File type detection from content.

Binary formats are recognised by their bytes (magic numbers, the parts inside an
OOXML/ODF zip). Only within the plain-text family, where bytes cannot tell Markdown
from text, does the uploaded name's extension choose the flavour.
"""

from __future__ import annotations

from pathlib import Path

from ingest.parsers.base import ParseError
from ingest.parsers.unstructured_setup import prepare_unstructured

# unstructured's FileType names mapped to the names the product stores and shows.
_KNOWN = {
    "PDF": "pdf",
    "DOCX": "docx",
    "DOC": "doc",
    "PPTX": "pptx",
    "PPT": "ppt",
    "XLSX": "xlsx",
    "XLS": "xls",
    "CSV": "csv",
    "TSV": "tsv",
    "HTML": "html",
    "XML": "xml",
    "MD": "md",
    "TXT": "txt",
    "RST": "rst",
    "ORG": "org",
    "JSON": "json",
    "NDJSON": "json",
    "EML": "eml",
    "MSG": "msg",
    "EPUB": "epub",
    "RTF": "rtf",
    "ODT": "odt",
    "ZIP": "zip",
    "JPG": "jpg",
    "PNG": "png",
    "TIFF": "tiff",
    "BMP": "bmp",
    "HEIC": "heic",
}
_OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
_TEXT_FLAVOURS = {".md": "md", ".markdown": "md", ".rst": "rst", ".org": "org", ".csv": "csv", ".tsv": "tsv"}


def detect_file_type(path: Path, *, name: str = "") -> str:
    """The type of ``path`` as read from its bytes; ``name`` only refines plain text."""
    if path.stat().st_size == 0:
        raise ParseError("The file is empty.")
    with open(path, "rb") as handle:
        head = handle.read(8)
    # Cheap, certain answers first: these magic numbers cannot be anything else.
    if head.startswith(b"%PDF-"):
        return "pdf"
    if head == _OLE_MAGIC and _is_encrypted_office_file(path):
        raise ParseError("The Office document is password-protected. Upload a copy without a password.")

    prepare_unstructured()
    from unstructured.file_utils.filetype import detect_filetype

    try:
        # The uploaded name is passed as metadata only: content decides, the name is
        # consulted for text flavours and nothing else.
        detected = detect_filetype(file_path=str(path), metadata_file_path=name or None)
    except Exception as exc:  # unstructured raises bare ValueErrors for odd input
        raise ParseError(f"The file type could not be recognised ({exc}).") from exc
    kind = _KNOWN.get(detected.name)
    if kind is None:
        raise ParseError(f"Files of type '{detected.name.lower()}' are not supported.")
    if kind in ("txt", "md", "rst", "org", "csv", "tsv"):
        kind = _TEXT_FLAVOURS.get(Path(name).suffix.lower(), kind)
    return kind


def _is_encrypted_office_file(path: Path) -> bool:
    """A password-protected DOCX, XLSX or PPTX is not a zip any more.

    Office wraps the encrypted package in an OLE container, which would otherwise be
    reported as an unsupported type instead of as what it is.
    """
    import olefile

    try:
        with olefile.OleFileIO(str(path)) as ole:
            return bool(ole.exists("EncryptedPackage"))
    except Exception:  # a damaged OLE file: detection goes on and names what it finds
        return False
