"""What a document is, in one line embedded and indexed with each of its chunks.

A passage from page 40 of a report rarely names its company or its year: a table
of financial statements never does. The file name usually does ("3M_2018_10K.pdf",
"2023 Q3 NVDA.pdf"), and so do the report's title and the period it covers. The
context line joins them:

    3M 2018 10K · 3M COMPANY · fiscal year ended December 31, 2018

* the file name made readable (separators as spaces, a year glued to what follows
  split off);
* the title: the first heading of the opening pages that no other document of the
  collection also opens with. Forms share their boilerplate ("UNITED STATES
  SECURITIES AND EXCHANGE COMMISSION", "FORM 10-Q", "Table of Contents"), which tells
  one document from another nothing; a title repeated across the collection is left out;
* the period or date the document states on its opening pages, if any.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass

from django.conf import settings

from ingest.models import Document
from ingest.parsers.base import Element

SEPARATOR = " · "
# Headings of the opening pages that may be the title; later ones are sections.
_TITLE_PAGES = 2
_MAX_CANDIDATES = 20
_MAX_LENGTH = 500

_MONTH = (
    r"(?:January|February|March|April|May|June|July|August|September|October|November|December"
    r"|Jan\.?|Feb\.?|Mar\.?|Apr\.?|Jun\.?|Jul\.?|Aug\.?|Sept?\.?|Oct\.?|Nov\.?|Dec\.?)"
)
_DATE = rf"(?:{_MONTH}\s+\d{{1,2}},?\s+(?:19|20)\d\d|\d{{1,2}}\s+{_MONTH}\s+(?:19|20)\d\d|(?:19|20)\d\d-\d\d-\d\d)"
_PERIOD = re.compile(
    rf"\b((?:(?:fiscal|financial)\s+)?(?:year|quarter(?:ly period)?|period|"
    rf"(?:three|six|nine|twelve|3|6|9|12)[\s-]+months?|"
    rf"(?:thirteen|twenty-six|thirty-nine|fifty-two|fifty-three|13|26|39|52|53)[\s-]+weeks?)\s+ended\s+{_DATE})",
    re.IGNORECASE,
)
_DATED = re.compile(rf"\b({_DATE})\b", re.IGNORECASE)


def readable_name(name: str) -> str:
    """ "3M_2018_10K.pdf" -> "3M 2018 10K"; "AMCOR_2023Q2_10Q.pdf" -> "AMCOR 2023 Q2 10Q"."""
    stem = name.rsplit(".", 1)[0] if "." in name.strip(".") else name
    stem = re.sub(r"[_+]+|(?<=[A-Za-z])-|-(?=[A-Za-z])", " ", stem)
    stem = re.sub(r"(?<![\d])((?:19|20)\d\d)(?=[A-Za-z])", r"\1 ", stem)
    return " ".join(stem.split())[:_MAX_LENGTH]


def title_candidates(elements: Iterable[Element]) -> list[str]:
    """The headings of the opening pages, in order: what the document's title may be."""
    found: list[str] = []
    for element in elements:
        if element.page is not None and element.page > _TITLE_PAGES:
            break
        text = " ".join(element.text.split())[:_MAX_LENGTH]
        if element.kind == "title" and len(re.findall(r"[^\W\d_]", text)) >= 3 and text not in found:
            found.append(text)
            if len(found) >= _MAX_CANDIDATES:
                break
    return found


def distinct_title(candidates: Sequence[str], *, others: Collection[str]) -> str:
    """The first candidate that no other document's candidates contain ("" if none).

    Compared without case, punctuation and numbers: "Commission file number 1-3285" is
    the same form line as "Commission file number 1-442".
    """
    taken = {_fold(other) for other in others}
    for candidate in candidates:
        if _fold(candidate) not in taken:
            return candidate
    return ""


def stated_period(elements: Iterable[Element]) -> str:
    """The period ("fiscal year ended December 31, 2018") or date the opening pages state."""
    opening = [e.text for e in elements if e.page is None or e.page <= _TITLE_PAGES][:200]
    text = " ".join(" ".join(opening).split())
    match = _PERIOD.search(text)
    if match:
        return match.group(1)[:200]
    match = _DATED.search(text)
    return match.group(1)[:200] if match else ""


def document_context(*, name: str, title: str, period: str) -> str:
    """The context line of a document; each part that repeats an earlier one is left out.

    A file name without words ("4983.txt", "0001.pdf") says nothing and is left out.
    """
    parts: list[str] = []
    label = readable_name(name)
    for part in (label if len(re.findall(r"[^\W\d_]", label)) >= 2 else "", title, period):
        part = " ".join(part.split())
        if part and not any(_fold(part) in _fold(seen) for seen in parts):
            parts.append(part)
    return SEPARATOR.join(parts)[:_MAX_LENGTH]


def _fold(text: str) -> str:
    """Case, punctuation, blanks to fill in ("___") and numbers do not make a heading another."""
    return " ".join(re.sub(r"[\W_]+", " ", re.sub(r"\d+", "#", text.lower())).split())


@dataclass(frozen=True)
class Described:
    title: str
    candidates: list[str]
    context: str


def described(elements: Sequence[Element], *, name: str, others: Collection[str] = ()) -> Described:
    """The title, title candidates and context line of a document named ``name``.

    ``others``: the title candidates of the collection's other documents. A candidate
    is a title only if none of them is the same. ``CHUNK_DOCUMENT_CONTEXT=false`` embeds
    the title alone (the file name where no title is found), as before the context line.
    """
    candidates = title_candidates(elements)
    distinct = distinct_title(candidates, others=others)
    title = distinct or readable_name(name)
    if not settings.CHUNK_DOCUMENT_CONTEXT:
        return Described(title=title, candidates=candidates, context=title)
    # Only a distinct title describes: the name alone is already in the line (when it has words).
    line = document_context(name=name, title=distinct, period=stated_period(elements))
    return Described(title=title, candidates=candidates, context=line)


def document_described(document: Document, elements: Sequence[Element]) -> Described:
    """``described`` for a stored document, against the collection's other documents.

    The version it replaces and documents of the same name are not others: a new version
    keeps its title, and so its unchanged passages keep their vectors.
    """
    others = (
        Document.objects.filter(collection_id=document.collection_id)
        .exclude(pk__in=[document.pk, document.supersedes_id or document.pk])
        .exclude(name=document.name)
        .exclude(title_candidates=[])
        .values_list("title_candidates", flat=True)
    )
    taken = {title for titles in others.iterator() for title in titles}
    return described(elements, name=document.name, others=taken)
