"""Which source links become links: web addresses (http, https), nothing else.

A connector records where each document lives (``ConnectorItem.link``): a web address,
a path on a share, an ``smb://`` or ``file://`` address. The link comes from the
source and is as untrusted as the document's text: a ``javascript:`` or ``data:``
address made a link would run inside the product's page when clicked. Only a web
address is opened (in a new tab, without this page as its opener or referrer);
everything else is shown as text to copy. The source panel, the citation list and the
citations streamed to the chat page all ask ``web_link``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

WEB_SCHEMES = frozenset({"http", "https"})


def web_link(link: str) -> str:
    """``link`` when it is an http or https address with a host; empty for anything else."""
    text = (link or "").strip()
    # Browsers drop tabs and line breaks inside an address ("java\tscript:" runs as
    # "javascript:"): an address holding any control character or space is text.
    if not text or any(ord(ch) <= 0x20 or ord(ch) == 0x7F for ch in text):
        return ""
    try:
        parts = urlsplit(text)
        host = parts.hostname
    except ValueError:  # an unclosed IPv6 bracket, a bad port
        return ""
    if parts.scheme.lower() not in WEB_SCHEMES or not host:
        return ""
    return text
