"""Which documents, and which sections, a question names.

Questions about company documents usually say whose and which one: "3M's capital
expenditure in FY2018, from the cash flow statement", "the travel policy's per diem for
2024". A passage rarely says it: a table on page 60 of a report names neither its company
nor its year nor, in its rows, its statement. Two signals that the passage's own words
cannot give, each a number in [0, 1] that ``HybridRetriever`` adds to its fused score:

* **Document match**: the question's words against each readable document's *card*: the
  words of its file name made readable (``3M 2018 10K``) and the years of the period it
  says it covers (``ingest.context``: "fiscal year ended December 31, 2018"). The file
  name is chosen by a person to say what the file is; the title the parser guessed is
  left out, being on most reports a cover page's boilerplate or an address, and so is a
  file name that is only an id. Words are weighted by how rare they are among the cards
  (IDF over the documents the asker may read) and scores divided by the best one. A
  question that names no document scores every card 0 and changes nothing.
* **Section match**: how much of a passage's section (its heading path below the
  document's title) the question covers ("balance sheet" covers most of "Consolidated
  Balance Sheets"), each word weighted by its rarity among the candidates' sections, so
  "Consolidated" counts little. A passage headed only by its document's title is in no
  section.

Both read words the way the lexical index does (``ingest.lexical.tokenize``: lower case,
stop words out, stemmed), after two spellings that file names and questions disagree on
are reconciled: a year glued to letters or a quarter is also read alone ("FY2018", "2023Q2",
"Q22023"), and two
adjacent words of the question are also read joined ("General Mills" finds
``GENERALMILLS_2020_10K.pdf``).
"""

from __future__ import annotations

import itertools
import math
import re
import threading
from collections import Counter
from collections.abc import Mapping

from assistant.accounts.scope import Scope
from ingest.context import SEPARATOR, readable_name
from ingest.lexical import tokenize
from ingest.models import Document

_YEAR = r"(?:19|20)\d\d"
_GLUED_YEAR = re.compile(
    rf"[^\W\d_]{{2,}}(?={_YEAR}(?!\d))|(?<=[^\W\d_]){_YEAR}(?!\d)"
    rf"|(?<![^\W_]){_YEAR}(?=[^\W\d_])|(?<={_YEAR})[^\W\d_][^\W_]*"
    # A quarter before its year: "Q22023".
    rf"|(?<![^\W_])[Qq][1-4](?={_YEAR}(?!\d))|(?<=(?<![^\W_])[Qq][1-4]){_YEAR}(?!\d)"
)
_WORD = re.compile(r"[^\W\d_]+")
_CARD_CACHE_MAX = 50_000

_cards: dict[tuple[str, str], dict[str, float]] = {}
_cards_lock = threading.Lock()


def with_glued_years(text: str) -> str:
    """``text`` plus the parts of letter-year compounds read alone: "FY2018" adds "FY 2018"."""
    parts = _GLUED_YEAR.findall(text)
    return f"{text} {' '.join(parts)}" if parts else text


def question_terms(question: str) -> set[str]:
    """The question's words as the cards and headings are read, adjacent words also joined."""
    words = _WORD.findall(question)
    joined = " ".join(a + b for a, b in itertools.pairwise(words))
    return set(tokenize([f"{with_glued_years(question)} {joined}"])[0])


def card_terms(name: str, context: str) -> dict[str, float]:
    """A document's card: the words of its readable file name and the years its context line states.

    Cached per name and line. Numbers other than years are left out: a file named by an
    id ("198309074.txt") names nothing a question would say.
    """
    key = (name, context)
    with _cards_lock:
        known = _cards.get(key)
    if known is not None:
        return known
    named = tokenize([with_glued_years(readable_name(name))])[0]
    weights = {t: 1.0 for t in named if not t.isdigit() or re.fullmatch(_YEAR, t)}
    # The period a report covers closes its context line ("fiscal year ended December 31,
    # 2018"). A bare date there is only the first date the opening pages mention.
    stated = context.rsplit(SEPARATOR, 1)[1] if SEPARATOR in context else ""
    if re.search(r"\bended\b", stated, re.IGNORECASE):
        weights.update(dict.fromkeys(re.findall(rf"(?<!\d){_YEAR}(?!\d)", stated), 1.0))
    with _cards_lock:
        if len(_cards) >= _CARD_CACHE_MAX:
            _cards.clear()
        _cards[key] = weights
    return weights


def _idf(frequencies: Counter[str], total: int) -> dict[str, float]:
    return {t: math.log(1 + (total - n + 0.5) / (n + 0.5)) for t, n in frequencies.items()}


def document_scores(scope: Scope, terms: set[str]) -> dict[int, float]:
    """How well each readable ready document's card matches ``terms``, the best 1.0; {} if none does.

    One query. Hidden documents are not read: neither their cards nor their words' rarity.
    """
    if not terms or not scope.collection_ids:
        return {}
    rows = Document.objects.filter(collection_id__in=scope.collection_ids, status=Document.Status.READY).exclude(
        id__in=scope.hidden_document_ids
    )
    if scope.document_ids is not None:
        rows = rows.filter(id__in=scope.document_ids)
    cards = {pk: card_terms(name, context) for pk, name, context in rows.values_list("id", "name", "context")}
    if len(cards) < 2:
        return {}
    idf = _idf(Counter(t for card in cards.values() for t in card), len(cards))
    scores = {pk: sum(idf[t] * w for t, w in card.items() if t in terms) for pk, card in cards.items()}
    best = max(scores.values())
    if best <= 0:
        return {}
    return {pk: score / best for pk, score in scores.items() if score > 0}


def named_documents(scores: Mapping[int, float], *, most: int) -> list[int]:
    """The documents the question names outright: the best match and any tied with it."""
    best = sorted((pk for pk, s in scores.items() if s >= 0.999), key=lambda pk: -scores[pk])
    return best[:most]


def section_of(heading: str, title: str) -> str:
    """The part of a heading path below the document's title: its section ("" for none).

    A passage headed by its document's title alone (an abstract, a one-page memo) is in
    no section; what the question says of the title is the document match's to weigh.
    """
    if title and heading.startswith(title):
        heading = heading[len(title) :].lstrip(" \u203a>/-:")  # the path's separator
    return heading


def section_coverage(terms: set[str], sections: Mapping[int, str]) -> dict[int, float]:
    """For each passage (by id), the rarity-weighted share of its section's words the question contains.

    Rarity is counted among the given passages' sections, so a word every section has
    ("Consolidated") counts for little.
    """
    words = {s: set(tokenize([with_glued_years(s)])[0]) for s in set(sections.values()) if s}
    idf = _idf(Counter(t for ws in words.values() for t in ws), len(words) or 1)
    shares: dict[str, float] = {}
    for section, ws in words.items():
        total = sum(idf[t] for t in ws)
        shares[section] = sum(idf[t] for t in ws & terms) / total if total else 0.0
    return {pk: shares[s] for pk, s in sections.items() if shares.get(s)}
