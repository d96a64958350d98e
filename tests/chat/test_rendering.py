from __future__ import annotations

from types import SimpleNamespace

from assistant.chat.templatetags.chat_extras import cite_links


def test_known_markers_link_to_their_source_and_text_is_escaped() -> None:
    message = SimpleNamespace(pk=7, citations=[{"n": 1}, {"n": 2}])
    html = cite_links("Use <b>receipts</b> [1][2], not [9].\nDone", message)
    assert '<a class="cite" href="#m7-c1">[1]</a><a class="cite" href="#m7-c2">[2]</a>' in html
    assert "[9]" in html and "#m7-c9" not in html
    assert "&lt;b&gt;receipts&lt;/b&gt;" in html
    assert "<br>Done" in html
