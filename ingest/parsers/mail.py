"""E-mail (EML and Outlook MSG): the message as text, its attachments as files.

The body goes through unstructured (which picks HTML or plain text and cleans it);
the subject, sender, recipients and date open the document so that "the mail from
Anna about the audit" can be found. Attachments are not folded into the body: each
is returned as a file of its own, to be parsed as its own type and cited by name.
"""

from __future__ import annotations

import email
import importlib
import mimetypes
from email import policy
from email.message import EmailMessage
from pathlib import Path, PurePosixPath
from typing import ClassVar

from ingest.parsers.base import Attachment, Element, ParsedDocument, ParseError
from ingest.parsers.elements import convert_elements
from ingest.parsers.unstructured_setup import prepare_unstructured


def _safe_name(name: str | None, index: int, content_type: str) -> str:
    """The attachment's own file name without any folders, or a made-up one."""
    base = PurePosixPath((name or "").replace("\\", "/")).name.strip()
    if base in ("", ".", ".."):
        base = f"attachment-{index}{mimetypes.guess_extension(content_type) or '.bin'}"
    return base


def _address(name: str | None, address: str | None) -> str:
    if name and address and name != address:
        return f"{name} <{address}>"
    return address or name or ""


def _header_elements(subject: str, fields: dict[str, str]) -> list[Element]:
    elements = [Element(text=subject.strip(), kind="title")] if subject.strip() else []
    line = "\n".join(f"{label}: {value.strip()}" for label, value in fields.items() if value and value.strip())
    if line:
        elements.append(Element(text=line))
    return elements


def _body(partition_name: str, path: Path, file_type: str) -> list[Element]:
    prepare_unstructured()
    module = importlib.import_module(f"unstructured.partition.{partition_name}")
    partition = getattr(module, f"partition_{partition_name}")
    try:
        return convert_elements(partition(filename=str(path), process_attachments=False, languages=["eng"]))
    except Exception as exc:
        raise ParseError(f"The {file_type.upper()} message could not be read; it may be damaged ({exc}).") from exc


def _eml_attachments(message: EmailMessage) -> list[Attachment]:
    attachments = []
    for index, part in enumerate(message.iter_attachments(), start=1):
        content_type = part.get_content_type()
        name: str | None = part.get_filename()
        if content_type == "message/rfc822":
            # A forwarded message: kept whole, as an .eml of its own.
            content = part.get_content().as_bytes()
            name = name or f"forwarded-{index}.eml"
        else:
            content = part.get_payload(decode=True) or b""
        if content:
            attachments.append(Attachment(name=_safe_name(name, index, content_type), content=content))
    return attachments


class EmlParser:
    file_types: ClassVar[frozenset[str]] = frozenset({"eml"})

    def parse(self, path: Path, *, file_type: str) -> ParsedDocument:
        try:
            with open(path, "rb") as handle:
                message = email.message_from_binary_file(handle, _class=EmailMessage, policy=policy.default)
            header = _header_elements(
                str(message.get("subject", "")),
                {
                    "From": str(message.get("from", "")),
                    "To": str(message.get("to", "")),
                    "Date": str(message.get("date", "")),
                },
            )
            attachments = _eml_attachments(message)
        except Exception as exc:  # the e-mail package raises many kinds on broken headers
            raise ParseError(f"The e-mail could not be read; it may be damaged ({exc}).") from exc
        return ParsedDocument(elements=header + _body("email", path, file_type), attachments=attachments)


class MsgParser:
    file_types: ClassVar[frozenset[str]] = frozenset({"msg"})

    def parse(self, path: Path, *, file_type: str) -> ParsedDocument:
        from oxmsg import Message

        try:
            message = Message.load(str(path))
            recipients = ", ".join(_address(r.name, r.email_address) for r in message.recipients)
            header = _header_elements(
                message.subject or "",
                {"From": message.sender or "", "To": recipients, "Date": str(message.sent_date or "")},
            )
            attachments = [
                Attachment(name=_safe_name(a.file_name, index, a.mime_type or ""), content=a.file_bytes)
                for index, a in enumerate(message.attachments, start=1)
                if a.file_bytes  # an embedded Outlook item has no bytes of its own
            ]
        except Exception as exc:  # oxmsg reports a broken file with assorted errors
            raise ParseError(f"The Outlook message could not be read; it may be damaged ({exc}).") from exc
        return ParsedDocument(elements=header + _body("msg", path, file_type), attachments=attachments)
