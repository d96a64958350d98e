"""Rendering of stored answers: citation markers become links to their sources, source links safe ones."""

from __future__ import annotations

import re
from typing import Any

from django import template
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext, gettext_noop

from assistant.chat import links

register = template.Library()

_MARKER = re.compile(r"\[(\d{1,3})\]")


@register.filter
def cite_links(text: str, message: Any) -> SafeString:
    """Escape the answer, then link each ``[n]`` that names one of its sources."""
    known = {c.get("n") for c in (message.citations or [])}

    def link(match: re.Match[str]) -> str:
        n = int(match.group(1))
        if n not in known:
            return match.group(0)
        return f'<a class="cite" href="#m{message.pk}-c{n}">[{n}]</a>'

    return mark_safe(_MARKER.sub(link, escape(text)).replace("\n", "<br>"))  # noqa: S308 (escaped above)


LOW_RELEVANCE_WARNING = gettext_noop(
    "The passages found are only weakly related to this question: the answer may not be supported by the documents."
)


@register.filter
def low_relevance(citations: Any) -> bool:
    """A stored answer whose best passage was below ``RETRIEVAL_WEAK_RELEVANCE`` (as the live page showed)."""
    from django.conf import settings

    known = [float(c["relevance"]) for c in citations or [] if isinstance(c, dict) and c.get("relevance") is not None]
    return bool(known) and max(known) < settings.RETRIEVAL_WEAK_RELEVANCE


@register.simple_tag
def low_relevance_warning() -> str:
    return gettext(LOW_RELEVANCE_WARNING)


@register.simple_tag
def answer_body(message: Any) -> SafeString:
    """A stored answer as Markdown, sanitized, its citation markers chips (``assistant.chat.rendering``)."""
    from assistant.chat.rendering import answer_html

    return answer_html(message.content, citations=message.citations or [], message_id=message.pk)


@register.filter
def searched_for(message: Any) -> str:
    """What retrieval searched for a question (its rewrite, then the question), when it was rewritten."""
    from assistant.chat.rewrite import searched_queries

    query = (getattr(message, "retrieval_query", "") or "").strip()
    if not query or query == message.content.strip():
        return ""
    return " · ".join(searched_queries(question=message.content, query=query))


@register.filter
def web_link(link: str) -> str:
    """A source link fit to be an ``href`` (http, https), else empty: see ``assistant.chat.links``."""
    return links.web_link(link)
