"""PII redaction: detectors on planted data, and the ingest-time mode end to end."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ingest import embedding
from ingest.chunking import ChunkDraft
from ingest.models import Chunk
from ingest.redaction import (
    StreamRedactor,
    card_valid,
    codice_fiscale_valid,
    iban_valid,
    ner_available,
    nir_valid,
    pii_find,
    pii_redact,
)
from tests.conftest import REPO
from tests.factories import DocumentFactory
from tests.support.documents import make_docx, make_pdf

PLANTED = {
    "EMAIL": ["jane.doe@example.com", "j_oneil+hr@mail.example.co.uk", "Info@Firma-Beispiel.de"],
    "PHONE": [
        "+44 20 7946 0958", "+1 (415) 555-2671", "+33 1 23 45 67 89", "+4930123456",
        "020 7946 0958", "(030) 1234 5678", "01 23 45 67 89", "0044 20 7946 0958", "030/1234567",
        "415-555-2671", "415.555.2671", "(415) 555-2671", "1-800-555-0199",
    ],
    "IBAN": ["GB82 WEST 1234 5698 7654 32", "DE89370400440532013000", "FR14 2004 1010 0505 0001 3M02 606",
             "NL91ABNA0417164300"],
    "CARD": ["4111 1111 1111 1111", "5555-5555-5555-4444", "378282246310005", "3782 822463 10005",
             "6011111111111117"],
    "NATIONAL_ID": ["123-45-6789", "AB 12 34 56 C", "AB123456C", "1 85 05 78 006 084 91", "12345678Z",
                    "X1234567L", "RSSMRA85T10A562S"],
}  # fmt: skip

NOT_PII = [
    "The meeting is on 2024-01-15 at 10:30.",
    "Signed 15.01.2024 10:30 in Berlin.",
    "On 01/02/2024 10 people attended.",
    "Founded in 1999; revenue grew in 2023 and in 2019-2020.",
    "Years 2020 2021 2022 were strong.",
    "The price is $1,299.99, or EUR 1 234 567 for the lot.",
    "Version 10.0.19041.1 replaced v2.13.0.",
    "Order 4829105736 shipped; order no 0482910573 is pending.",
    "Invoice 1234567890123 and invoice 2024-000123.",
    "The server is at 192.168.100.200.",
    "ISBN 978-3-16-148410-0.",
    "Population 12 345 678, ratio 3.14159265358979.",
    "Open 09.30-17.30, at 48.8566, 2.3522.",
    "Ship 300 400 5000 units; list 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17.",
    "Card 4111 1111 1111 1112 fails Luhn.",
    "IBAN GB82 WEST 1234 5698 7654 33 has a bad check.",
    "SSN 000-12-3456 is never issued; DNI 12345678A has the wrong letter.",
    "Tracking number 1Z999AA10123456784.",
]


@pytest.mark.parametrize(("kind", "value"), [(k, v) for k, values in PLANTED.items() for v in values])
def test_each_kind_is_replaced_by_its_placeholder(kind: str, value: str) -> None:
    text = f"Before {value} after."
    assert pii_redact(text) == f"Before [{kind}] after."


@pytest.mark.parametrize("text", NOT_PII)
def test_dates_years_prices_versions_and_order_numbers_are_untouched(text: str) -> None:
    assert pii_find(text) == [], [text[f.start : f.end] for f in pii_find(text)]
    assert pii_redact(text) == text


def test_labelled_phone_numbers_are_found_even_without_separators() -> None:
    assert pii_redact("Tel: 4155552671. Mobile no. 07700900123") == "Tel: [PHONE]. Mobile no. [PHONE]"
    assert pii_redact("SSN: 123456789") == "SSN: [NATIONAL_ID]"


def test_a_paragraph_with_everything_planted() -> None:
    text = (
        "Contact Jane at jane.doe@example.com or +44 20 7946 0958. Pay IBAN GB82 WEST 1234 5698 7654 32 "
        "or DE89370400440532013000, card 4111 1111 1111 1111 (exp 12/27). SSN 123-45-6789. "
        "Invoice 2024-000123 of 15.01.2024 for $1,299.99, order 4829105736."
    )
    assert pii_redact(text) == (
        "Contact Jane at [EMAIL] or [PHONE]. Pay IBAN [IBAN] or [IBAN], card [CARD] (exp 12/27). "
        "SSN [NATIONAL_ID]. Invoice 2024-000123 of 15.01.2024 for $1,299.99, order 4829105736."
    )


def test_validators_check_their_checksums() -> None:
    assert iban_valid("GB82WEST12345698765432") and not iban_valid("GB82WEST12345698765431")
    assert not iban_valid("GB82WEST1234569876543")  # one character short for GB
    assert card_valid("4111-1111-1111-1111") and not card_valid("4111-1111-1111-1112")
    assert not card_valid("9111111111111111111")  # passes no issuer's prefix
    assert nir_valid("185057800608491") and not nir_valid("185057800608492")
    assert codice_fiscale_valid("RSSMRA85T10A562S") and not codice_fiscale_valid("RSSMRA85T10A562T")


def test_streamed_text_is_redacted_like_the_whole_even_when_split_inside_a_number() -> None:
    text = (
        "You can reach the desk on +44 20 7946 0958 or at desk@example.com; pay into "
        "GB82 WEST 1234 5698 7654 32. Tel: 4155552671 works too. " * 3
    )
    for size in (1, 3, 7, 50):
        redactor = StreamRedactor()
        pieces = [redactor.feed(text[i : i + size]) for i in range(0, len(text), size)]
        pieces.append(redactor.close())
        assert "".join(pieces) == pii_redact(text)
        assert "7946" not in "".join(pieces) and "desk@" not in "".join(pieces)
        assert sum(1 for p in pieces if p) > 2  # it streams, it does not wait for the end


def test_importing_redaction_loads_no_nlp_model() -> None:
    code = "import ingest.redaction, sys; print('spacy' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_person_names_are_redacted_with_the_packaged_ner_model() -> None:
    assert ner_available(), "the packaged spaCy model has an entity recogniser"
    text = "The contract was signed by Margaret Thompson and Robert Miller in London on Monday."
    redacted = pii_redact(text, ner=True)
    assert "Margaret Thompson" not in redacted and "Robert Miller" not in redacted
    assert "[PERSON]" in redacted and "London" in redacted
    assert pii_redact(text) == text  # without NER, names stay


# --- Ingest-time redaction through the real pipeline ---------------------------------------

SECRET_PAGE = (
    "Payroll contact\nWrite to payroll.officer@example.com or call +44 20 7946 0958. Salaries are paid to "
    "IBAN GB82 WEST 1234 5698 7654 32. The corporate card is 4111 1111 1111 1111. "
    "Employee SSN 123-45-6789. Invoice 2024-000123 dated 15.01.2024 totals $1,299.99, order 4829105736."
)
ORIGINALS = ["payroll.officer@example.com", "+44 20 7946 0958", "GB82 WEST", "4111 1111", "123-45-6789"]
KEPT = ["2024-000123", "15.01.2024", "$1,299.99", "4829105736"]


def _ingest(name: str, content: bytes):
    document = DocumentFactory.create(name=name, content=content, processed=True)
    assert document.status == "ready", document.error
    return document


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("payroll.md", SECRET_PAGE.encode()),
        ("payroll.pdf", make_pdf(["Cover page", SECRET_PAGE])),
        ("payroll.docx", make_docx([("Payroll contact", SECRET_PAGE.split("\n", 1)[1])])),
    ],
)
def test_ingest_mode_stores_and_embeds_chunks_redacted_and_keeps_the_file(settings, name: str, content: bytes) -> None:
    settings.PII_REDACTION = "ingest"
    document = _ingest(name, content)
    chunks = list(Chunk.objects.filter(document=document))
    stored = "\n".join(c.heading + "\n" + c.text for c in chunks)
    for original in ORIGINALS:
        assert original not in stored
    for placeholder in ("[EMAIL]", "[PHONE]", "[IBAN]", "[CARD]", "[NATIONAL_ID]"):
        assert placeholder in stored
    for kept in KEPT:
        assert kept in stored
    # What was embedded is the redacted text (with the document's title, itself redacted).
    document.refresh_from_db()
    for original in ORIGINALS:
        assert original not in document.title
        assert original not in document.context
    for chunk in chunks:
        embedded = ChunkDraft(
            text=chunk.text, heading=chunk.heading, page_start=None, page_end=None, context=document.context
        ).embedding_text
        assert chunk.text_hash == embedding.text_digest(embedded)
    # The uploaded file is kept exactly as it was sent.
    assert Path(document.file.path).read_bytes() == content


@pytest.mark.django_db
def test_redaction_is_off_by_default(settings) -> None:
    assert settings.PII_REDACTION == "off"
    document = _ingest("payroll.md", SECRET_PAGE.encode())
    stored = "\n".join(Chunk.objects.filter(document=document).values_list("text", flat=True))
    for original in ORIGINALS:
        assert original in stored


def test_an_unknown_mode_is_refused_at_start_up(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "ASSISTANT_DATA_DIR": str(tmp_path), "PII_REDACTION": "sometimes"}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode != 0
    assert "PII_REDACTION must be off, ingest or answer" in result.stderr
