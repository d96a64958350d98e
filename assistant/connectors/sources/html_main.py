"""A web page's main content, without the site's boilerplate, and the links it holds.

An intranet page is mostly the same frame on every page (navigation, header,
footer, a cookie banner, a sidebar) around a little text of its own. Ingested as
is, the frame would be in every page's passages and answer every question. So
before a page becomes a document:

* the frame is removed: ``nav``, ``aside``, forms and scripts, a ``header`` or
  ``footer`` that is not part of an article, elements whose ARIA role is
  navigation, banner, contentinfo, complementary or search, hidden elements, and
  elements whose id or class names a frame part (cookie, consent, breadcrumb,
  menu, sidebar, navbar, skip-link, share);
* what remains is narrowed to the page's main content: ``<main>`` (or
  ``role=main``), else a single ``<article>``, else the block holding the most
  paragraph text, else the body.

The links come from the whole page (the navigation is how the pages are found).
A small readability-style pass with lxml (already installed with the parsers)
instead of a crawler library: it needs nothing new, and intranet templates are
regular enough that the semantic elements carry most of the signal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

_DROP_TAGS = ("script", "style", "noscript", "template", "iframe", "svg", "nav", "aside", "form", "button", "dialog")
_DROP_ROLES = {"navigation", "banner", "contentinfo", "complementary", "search", "dialog", "alertdialog"}
_FRAME_WORDS = re.compile(
    r"(?:^|[-_\s])(cookie|cookies|consent|gdpr|breadcrumbs?|menu|sidebar|navbar|nav|skip-?link|share|social|"
    r"site-?header|site-?footer|footer|masthead)(?:$|[-_\s])",
    re.IGNORECASE,
)


@dataclass
class Page:
    title: str
    html: bytes  # the main content as a small HTML document (what gets ingested)
    text: str  # its text, to tell an empty page
    links: list[str] = field(default_factory=list)  # absolute, fragment-free, in page order
    noindex: bool = False
    nofollow: bool = False


def _ancestor(element: Any, tags: tuple[str, ...]) -> bool:
    parent = element.getparent()
    while parent is not None:
        if parent.tag in tags or (parent.get("role") or "").lower() == "main":
            return True
        parent = parent.getparent()
    return False


def _is_frame(element: Any) -> bool:
    if element.tag in _DROP_TAGS:
        return True
    if (element.get("role") or "").lower() in _DROP_ROLES:
        return True
    if element.get("hidden") is not None or (element.get("aria-hidden") or "").lower() == "true":
        return True
    if element.tag in ("header", "footer") and not _ancestor(element, ("article", "main")):
        return True
    if element.tag in ("main", "article", "body", "html"):
        return False
    names = f"{element.get('id') or ''} {element.get('class') or ''}"
    return bool(names.strip()) and _FRAME_WORDS.search(names) is not None


def _text_weight(element: Any) -> int:
    return sum(len(p.text_content().strip()) for p in element.iter("p", "li", "td", "pre", "blockquote"))


def _main(body: Any) -> Any:
    for query in (".//main", ".//*[@role='main']"):
        found = body.xpath(query)
        if found:
            return found[0]
    articles = body.xpath(".//article")
    if len(articles) == 1:
        return articles[0]
    blocks = [e for e in body.iter("div", "section", "article") if _text_weight(e) > 0]
    if not blocks:
        return body
    best = max(blocks, key=_text_weight)
    # The innermost block holding most of the text, not a wrapper around everything.
    return best if _text_weight(best) >= 0.5 * _text_weight(body) else body


def page_read(content: bytes, url: str) -> Page:
    """The page at ``url`` (its bytes as served): main content, title, links, robots meta."""
    import lxml.html
    from lxml import etree

    try:
        document = lxml.html.document_fromstring(content)
    except (etree.ParserError, ValueError):
        return Page(title="", html=b"", text="")
    robots = " ".join(m.get("content") or "" for m in document.xpath("//meta[@name='robots' or @name='ROBOTS']"))
    base = document.xpath("//base[@href]")
    base_url = urljoin(url, base[0].get("href")) if base else url
    links = []
    for anchor in document.xpath("//a[@href] | //area[@href]"):
        if "nofollow" in (anchor.get("rel") or "").lower():
            continue
        href = anchor.get("href").strip()
        if href and not href.lower().startswith(("javascript:", "mailto:", "tel:", "data:", "#")):
            links.append(urljoin(base_url, href).split("#", 1)[0])
    titles = document.xpath("//title")
    title = " ".join(titles[0].text_content().split()) if titles else ""

    body = document.find("body")
    if body is None:
        body = document
    for element in list(body.iter()):
        if not isinstance(element.tag, str):  # a comment or processing instruction
            if element.getparent() is not None:
                element.drop_tree()
            continue
        if element.getparent() is not None and _is_frame(element):
            element.drop_tree()
    main = _main(body)
    for element in main.iter():
        for attribute in ("style", "class", "id", "onclick"):
            element.attrib.pop(attribute, None)
    text = " ".join(main.text_content().split())
    heading = "" if main.xpath(".//h1") else f"<h1>{_escape(title)}</h1>" if title else ""
    inner = lxml.html.tostring(main, encoding="unicode", method="html")
    html = (
        f'<!doctype html><html><head><meta charset="utf-8"><title>{_escape(title)}</title></head>'
        f"<body>{heading}{inner}</body></html>"
    )
    flags = robots.lower()
    return Page(
        title=title, html=html.encode(), text=text, links=list(dict.fromkeys(links)),
        noindex="noindex" in flags or "none" in flags.split(","), nofollow="nofollow" in flags,
    )  # fmt: skip


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
