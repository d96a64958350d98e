"""Answers render as Markdown, and nothing a document or the model writes can become markup."""

from __future__ import annotations

import re

from assistant.chat.rendering import answer_html, cited_sentences, markdown_html

CITATIONS = [{"n": 1, "document": "handbook.pdf", "chunk_id": 11}, {"n": 2, "document": 'a"<b>.pdf', "chunk_id": 12}]


def test_paragraphs_lists_tables_and_code_render() -> None:
    html = str(
        markdown_html("Intro **bold**.\n\n- one\n- two\n\n| a | b |\n|---|---|\n| 1 | 2 |\n\n```\nx = 1 < 2\n```")
    )
    assert "<strong>bold</strong>" in html
    assert "<ul>\n<li>one</li>" in html
    assert "<table>" in html and "<td>1</td>" in html
    assert "<pre><code>x = 1 &lt; 2\n</code></pre>" in html


def test_planted_markup_images_and_links_stay_inert_text() -> None:
    planted = (
        "<script>alert(1)</script> <img src=x onerror=alert(1)> <table><tr><td>raw</td></tr></table>\n\n"
        "![tracker](http://attacker.example/pixel.png) [click](javascript:alert(1)) "
        "[home](http://attacker.example/) <http://attacker.example/> http://attacker.example/x\n\n"
        "[ref]: http://attacker.example/ref\n\n[ref]"
    )
    html = str(answer_html(planted, citations=CITATIONS, message_id=5))
    for tag in ("<script", "<img", "<table", "<tr", "<td"):
        assert tag not in html
    assert "&lt;script&gt;" in html and "&lt;table&gt;" in html
    assert not re.search(r"\b(src|href)=\"(?!#m5-c)", html)  # the only links are citation chips
    assert "javascript:" not in html.replace("[click](javascript:alert(1))", "")
    assert "onerror=" not in html.replace("&lt;img src=x onerror=alert(1)&gt;", "")


def test_known_markers_become_chips_and_unknown_ones_stay_text() -> None:
    html = str(answer_html("Meals are 85 euros [1][2], not [9].", citations=CITATIONS, message_id=7))
    assert '<a class="cite" href="#m7-c1" data-n="1" data-chunk="11" aria-label="Source 1: handbook.pdf">1</a>' in html
    assert 'aria-label="Source 2: a&quot;&lt;b&gt;.pdf"' in html
    assert "[9]" in html and "#m7-c9" not in html
    # A marker inside a table cell is a chip too.
    table = str(answer_html("| x |\n|---|\n| 85 [1] |", citations=CITATIONS, message_id=7))
    assert 'href="#m7-c1"' in table


def test_the_sentences_an_answer_cites_are_marked_in_the_passage() -> None:
    passage = "Travel rules apply to all staff. The meal allowance abroad is 85 euros per day. Taxis need receipts."
    marked = cited_sentences(passage, answer="Abroad, the meal allowance is 85 euros [1]. Taxis are fine [2].", n=1)
    assert [s for s, m in marked if m] == ["The meal allowance abroad is 85 euros per day."]
    assert not any(m for _, m in cited_sentences(passage, answer="Nothing cites it.", n=1))
