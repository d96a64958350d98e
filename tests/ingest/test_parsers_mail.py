"""E-mail: the message is the document, its attachments are files of their own."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from ingest.parsers import Attachment, Element, ParseError, parse_file
from tests.ingest.parser_files import write


def body_text(parsed) -> str:
    return "\n".join(e.text for e in parsed.elements)


@pytest.mark.parametrize("name", ["fake-email-attachment.eml", "fake-email-attachment.msg"])
def test_attachments_are_returned_as_files_not_folded_into_the_body(formats_dir: Path, name: str) -> None:
    file_type, parsed = parse_file(formats_dir / name, name=name)
    assert file_type == name.rsplit(".", 1)[1]
    assert parsed.attachments == [Attachment("fake-attachment.txt", b"Hey this is a fake attachment!")]
    assert parsed.elements[0] == Element("Fake email with attachment", kind="title")
    text = body_text(parsed)
    assert "Here's the attachments!" in text
    assert "Lots of whitespace" in text
    assert "From: " in text and "mallori@unstructured.io" in text
    assert "fake attachment" not in text


def test_outlook_message_without_attachments(formats_dir: Path) -> None:
    file_type, parsed = parse_file(formats_dir / "fake-email.msg", name="fake-email.msg")
    assert file_type == "msg"
    assert parsed.attachments == []
    assert parsed.elements[0] == Element("Test Email", kind="title")
    assert Element("Roses are red", kind="list") in parsed.elements
    assert "This is a test email to use for unit tests." in body_text(parsed)


def test_eml_body_headers_and_odd_attachments(tmp_path: Path) -> None:
    forwarded = EmailMessage()
    forwarded["Subject"] = "Original budget"
    forwarded.set_content("The original budget was approved in March.")
    message = EmailMessage()
    message["Subject"] = "Budget review"
    message["From"] = "Anna Berg <anna@example.com>"
    message["To"] = "finance@example.com"
    message.set_content("Please review the attached budget before Friday.")
    message.add_attachment(b"%PDF-1.4 fake", maintype="application", subtype="pdf", filename="../../etc/budget.pdf")
    message.add_attachment(b"col1,col2\n1,2\n", maintype="text", subtype="csv")
    message.add_attachment(forwarded)
    _, parsed = parse_file(write(tmp_path, "review.eml", message.as_bytes()), name="review.eml")

    assert parsed.elements[:2] == [
        Element("Budget review", kind="title"),
        Element("From: Anna Berg <anna@example.com>\nTo: finance@example.com"),
    ]
    assert "review the attached budget before Friday" in body_text(parsed)
    assert "approved in March" not in body_text(parsed)
    names = [a.name for a in parsed.attachments]
    assert names == ["budget.pdf", "attachment-2.csv", "forwarded-3.eml"]  # never a path out of the message
    assert parsed.attachments[0].content == b"%PDF-1.4 fake"
    assert b"The original budget was approved in March." in parsed.attachments[2].content


def test_damaged_outlook_message_fails_with_a_reason(formats_dir: Path, tmp_path: Path) -> None:
    content = (formats_dir / "fake-email.msg").read_bytes()
    damaged = content[:2048] + b"\0" * (len(content) - 2048)
    with pytest.raises(ParseError):
        parse_file(write(tmp_path, "broken.msg", damaged), name="broken.msg")
