"""Answers as HTML: Markdown rendered, sanitized, citation markers turned into chips.

What a model writes is untrusted (a document can make it repeat anything), so the
renderer is told to trust nothing: markdown-it-py with raw HTML off (a ``<table>``
or ``<script>`` in the text stays text), and no links or images at all (a planted
``![](http://…)`` or ``[x](javascript:…)`` stays literal text, so nothing loads from
outside and nothing navigates away). Its output then goes through nh3 (the Rust
``ammonia`` sanitizer) with a fixed list of tags and attributes, so even a renderer
bug cannot let markup through. The only links are the citation chips added here,
each pointing inside the page.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

ALLOWED_TAGS = {
    "p", "br", "hr", "strong", "em", "del", "code", "pre", "blockquote",
    "ul", "ol", "li", "table", "thead", "tbody", "tr", "th", "td",
    "h1", "h2", "h3", "h4", "h5", "h6", "a", "mark", "span",
}  # fmt: skip
ALLOWED_ATTRIBUTES = {
    "a": {"href", "class", "data-n", "data-chunk", "aria-label"},
    "ol": {"start"},
    "th": {"style"},
    "td": {"style"},
    "mark": {"class"},
}
_MARKER = re.compile(r"\[(\d{1,3})\]")


@lru_cache(maxsize=1)
def _markdown() -> Any:
    from markdown_it import MarkdownIt

    # commonmark with raw HTML off, plus tables and strikethrough; no links, no
    # images, no autolinks, no reference definitions: text that looks like one stays text.
    md = MarkdownIt("commonmark", {"html": False, "linkify": False})
    md.enable(["table", "strikethrough"])
    md.disable(["link", "image", "autolink", "html_inline", "html_block", "reference"])
    return md


def _sanitize(html: str) -> str:
    import nh3

    return str(
        nh3.clean(
            html,
            tags=ALLOWED_TAGS,
            attributes=ALLOWED_ATTRIBUTES,
            url_schemes=set(),  # only links inside the product (the chips are fragments)
            link_rel=None,
            filter_style_properties={"text-align"},
            strip_comments=True,
        )
    )


def markdown_html(text: str) -> SafeString:
    """Markdown rendered to sanitized HTML (no links, no images, no raw HTML)."""
    return mark_safe(_sanitize(_markdown().render(text or "")))  # noqa: S308 (sanitized by nh3)


def answer_html(text: str, *, citations: Sequence[Mapping[str, Any]], message_id: int | str) -> SafeString:
    """A stored answer as the page shows it: Markdown, and each known ``[n]`` a chip opening its source."""
    by_number = {c.get("n"): c for c in citations}

    def chip(match: re.Match[str]) -> str:
        n = int(match.group(1))
        citation = by_number.get(n)
        if citation is None:
            return match.group(0)
        label = escape(f"Source {n}: {citation.get('document', '')}")
        return (
            f'<a class="cite" href="#m{message_id}-c{n}" data-n="{n}" '
            f'data-chunk="{int(citation.get("chunk_id") or 0)}" aria-label="{label}">{n}</a>'
        )

    # The rendered HTML has no links or attributes of its own: every "[n]" left in it
    # is text the answer wrote.
    rendered = _markdown().render(text or "")
    return mark_safe(_sanitize(_MARKER.sub(chip, rendered)))  # noqa: S308 (sanitized by nh3)


_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])|\n+")
_WORD = re.compile(r"[^\W_]{3,}")
_COMMON = frozenset({
    "the", "and", "are", "for", "was", "were", "with", "that", "this", "from", "per", "not",
    "has", "have", "you", "your", "our", "its", "can", "may", "will", "all", "any",
})  # fmt: skip


def _words(text: str) -> set[str]:
    return {w.casefold() for w in _WORD.findall(text)} - _COMMON


def cited_sentences(passage: str, *, answer: str, n: int) -> list[tuple[str, bool]]:
    """The passage cut into sentences, each marked when it supports what the answer cited ``[n]`` for.

    The answer's sentences that carry ``[n]`` are compared word by word with the
    passage's; the closest (and any as close) are marked. Without such a sentence
    nothing is marked.
    """
    sentences = [s for s in _SENTENCE.split(passage) if s.strip()]
    claims = [s for s in re.split(r"(?<=[.!?])\s+|\n+", answer) if f"[{n}]" in s]
    wanted = set().union(*(_words(_MARKER.sub(" ", c)) for c in claims)) if claims else set()
    if not wanted or not sentences:
        return [(s, False) for s in sentences]
    overlap = [len(_words(s) & wanted) for s in sentences]
    best = max(overlap)
    if best == 0:
        return [(s, False) for s in sentences]
    return [(s, score == best or score >= max(2, best - 1)) for s, score in zip(sentences, overlap, strict=True)]


def highlighted_html(sentences: Iterable[tuple[str, bool]]) -> SafeString:
    """Sentences as escaped text, the marked ones in ``<mark>``."""
    parts = [f'<mark class="cited">{escape(s)}</mark>' if marked else str(escape(s)) for s, marked in sentences]
    return mark_safe(" ".join(parts))  # noqa: S308 (each part escaped)
