"""Real files made on the fly, with known text on known pages."""

from __future__ import annotations

import io
import textwrap


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[str]) -> bytes:
    """A valid multi-page PDF with a real text layer (Helvetica), one string per page."""
    objects: list[bytes] = []
    font_id = 3
    page_ids = []
    content_ids = []
    next_id = 4
    for _ in pages:
        page_ids.append(next_id)
        content_ids.append(next_id + 1)
        next_id += 2
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    kids = " ".join(f"{p} 0 R" for p in page_ids)
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    for page_text, content_id in zip(pages, content_ids, strict=True):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 {font_id} 0 R >> >> "
            f"/Contents {content_id} 0 R >>".encode()
        )
        lines = []
        for paragraph in page_text.split("\n"):
            lines.extend(textwrap.wrap(paragraph, 80) or [""])
        ops = ["BT", "/F1 11 Tf", "14 TL", "72 720 Td"]
        for line in lines:
            ops.append(f"({_escape(line)}) Tj T*")
        ops.append("ET")
        stream = "\n".join(ops).encode("latin-1")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(f"{number} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for offset in offsets:
        out.write(f"{offset:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def make_docx(sections: list[tuple[str, str]]) -> bytes:
    """A DOCX with one heading and one paragraph per (title, text) pair."""
    from docx import Document

    document = Document()
    for title, text in sections:
        document.add_heading(title, level=1)
        document.add_paragraph(text)
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


# A small handbook whose facts sit on known pages, used across tests.
HANDBOOK_PAGES = [
    "Employee Handbook\nThis handbook describes general policies of the Northwind company. "
    "Office hours are from nine to five on weekdays. The cafeteria serves lunch at noon.",
    "Travel Policy\nEmployees travelling abroad must book flights through the Zephyr travel desk. "
    "The daily meal allowance for international travel is 85 euros. Receipts must be submitted "
    "within 30 days of returning.",
    "Security Policy\nBadges must be worn visibly at all times. Lost badges are reported to the "
    "security office on the ground floor. Visitors are escorted by their host.",
]
