"""Which source links become links: http and https only, the rest is text to copy."""

from __future__ import annotations

import pytest

from assistant.chat.links import web_link


@pytest.mark.parametrize(
    "link",
    [
        "https://wiki.example.com/spaces/HR/pages/1/Allowance",
        "http://intranet.internal:8080/handbook/travel.html?x=1#meal",
        "HTTPS://WIKI.EXAMPLE.COM/",
    ],
)
def test_a_web_address_is_a_link(link: str) -> None:
    assert web_link(link) == link
    assert web_link(f"  {link} ") == link


@pytest.mark.parametrize(
    "link",
    [
        "javascript://wiki.example.com/%0Aalert(document.cookie)",
        "JavaScript:alert(1)",
        "java\tscript:alert(1)",  # a browser drops the tab and runs it
        "https://wiki.example.com/\njavascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "vbscript:msgbox(1)",
        "file:///srv/share/hr/allowance.md",
        "smb://fileserver/docs/team/beta.md",
        "/srv/share/hr/allowance.md",
        r"\\fileserver\docs\beta.md",
        "https://",
        "https:///no-host",
        "http://[::1",
        "//wiki.example.com/protocol-relative",
        "",
    ],
)
def test_anything_else_is_not(link: str) -> None:
    assert web_link(link) == ""
