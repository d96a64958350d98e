"""Every response carries the Content-Security-Policy and its companion headers.

The pages are found by walking the URL configuration, so a page added later is
checked without being listed here. Each is requested signed out, as a plain user
and as a superuser; whatever the status (page, redirect, 403, 404, 405, 500), the
headers must be there.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db

CONVERTER = re.compile(r"<(?:(?P<kind>\w+):)?\w+>")
# One for every converter: object 1 exists for the signed-in runs (the user, a collection).
SAMPLE = {"int": "1", "str": "1", "slug": "1", "path": "1", "uuid": "00000000-0000-0000-0000-000000000000"}


def _route(pattern: URLPattern | URLResolver) -> str | None:
    """The pattern as a path with sample values, or None for a regex we cannot fill."""
    text = str(pattern.pattern)
    if text.startswith("^") or "(?P" in text:
        # A regular expression (the admin's app index): keep it when it is literal.
        literal = text.lstrip("^").rstrip("$")
        return None if re.search(r"[()\[\]\\*+?|]", literal) else literal
    return CONVERTER.sub(lambda m: SAMPLE.get(m["kind"] or "str", "1"), text)


def _paths(patterns: list, prefix: str = "") -> Iterator[str]:
    for pattern in patterns:
        route = _route(pattern)
        if route is None:
            continue
        if isinstance(pattern, URLResolver):
            yield from _paths(pattern.url_patterns, prefix + route)
        else:
            yield "/" + prefix + route


def all_paths() -> list[str]:
    return sorted(set(_paths(get_resolver().url_patterns)))


def _assert_headers(response, path: str) -> None:
    assert response.headers.get("Content-Security-Policy") == settings.CONTENT_SECURITY_POLICY, path
    assert response.headers.get("X-Content-Type-Options") == "nosniff", path
    assert response.headers.get("Permissions-Policy"), path


def test_the_policy_forbids_inline_script_eval_and_outside_origins() -> None:
    directives = dict(d.strip().split(" ", 1) for d in settings.CONTENT_SECURITY_POLICY.split(";"))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'"
    assert directives["style-src"] == "'self'"
    assert directives["object-src"] == "'none'"
    assert directives["frame-ancestors"] == "'none'"
    assert directives["base-uri"] == "'self'"
    assert directives["form-action"] == "'self'"
    everything = settings.CONTENT_SECURITY_POLICY
    for loophole in ("unsafe-inline", "unsafe-eval", "http:", "https:", "*"):
        assert loophole not in everything, loophole


def test_the_walk_reaches_the_main_pages() -> None:
    paths = all_paths()
    for page in ("/", "/portal/", "/portal/audit/", "/accounts/login/", "/admin/", "/api/v1/docs", "/healthz"):
        assert page in paths, page
    assert len(paths) > 40


@pytest.mark.parametrize("who", ["anonymous", "user", "superuser"])
def test_every_page_sends_the_policy(who: str) -> None:
    client = Client(raise_request_exception=False)
    CollectionFactory.create()  # so that collection pages with id 1 have something to show
    if who != "anonymous":
        client.force_login(UserFactory.create(is_superuser=who == "superuser", is_staff=who == "superuser"))
    statuses = set()
    for path in all_paths():
        response = client.get(path)
        statuses.add(response.status_code)
        _assert_headers(response, path)
    assert 200 in statuses


def test_static_files_and_unknown_paths_send_the_policy(settings) -> None:
    settings.WHITENOISE_USE_FINDERS = True
    client = Client()
    css = client.get("/static/assistant/app.css")
    assert css.status_code == 200
    _assert_headers(css, "/static/assistant/app.css")
    _assert_headers(client.get("/no/such/page"), "/no/such/page")
    _assert_headers(client.get("/api/v1/no-such-endpoint"), "/api/v1/no-such-endpoint")
