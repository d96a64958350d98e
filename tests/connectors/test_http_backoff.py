"""Transient answers of an HTTP source back off and retry, within bounds; the waits are recorded, not slept."""

from __future__ import annotations

import socket
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from assistant.connectors.http import Backoff, HttpClient, HttpError, retry_after_s
from tests.connectors.fake_confluence import FakeConfluence


def client(wiki: FakeConfluence, attempts: int = 5, max_wait_s: float = 60) -> HttpClient:
    return HttpClient(
        base_url=wiki.site, service="Confluence", backoff=Backoff(attempts=attempts, max_wait_s=max_wait_s),
        auth_headers=lambda _refresh: {"Authorization": f"Bearer {wiki.PAT}"},
    )  # fmt: skip


def test_retry_after_is_read_as_seconds_or_as_an_http_date() -> None:
    now = datetime(2026, 12, 3, 12, 0, 0, tzinfo=UTC)
    assert retry_after_s("7") == 7.0
    assert retry_after_s("Thu, 03 Dec 2026 12:00:30 GMT", now) == 30.0
    assert retry_after_s("Thu, 03 Dec 2026 11:00:00 GMT", now) == 0.0  # already past
    assert retry_after_s("soon") is None and retry_after_s(None) is None


def test_a_429_with_retry_after_is_waited_out_and_retried(dc_wiki, waits) -> None:
    dc_wiki.add_space("ENG", ["confluence-users"])
    dc_wiki.throttle("/rest/api/content", times=2, retry_after="3")
    found = client(dc_wiki).get_json("rest/api/content?spaceKey=ENG")
    assert found["results"] == [] and waits == [3.0, 3.0]
    assert len(dc_wiki.paths("/rest/api/content")) == 3


def test_a_503_naming_an_http_date_waits_until_then(dc_wiki, waits) -> None:
    dc_wiki.add_space("ENG", ["confluence-users"])
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=20), usegmt=True)
    dc_wiki.throttle("/rest/api/content", times=1, retry_after=when, status=503)
    client(dc_wiki).get_json("rest/api/content?spaceKey=ENG")
    assert len(waits) == 1 and 0 < waits[0] <= 20


def test_connection_errors_back_off_exponentially_with_jitter_then_fail_with_the_reason(waits) -> None:
    with socket.socket() as probe:  # a port nobody listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = HttpClient(base_url=f"http://127.0.0.1:{port}", service="the wiki",
                         backoff=Backoff(attempts=4, max_wait_s=100, base_s=1, cap_s=3))  # fmt: skip
    with pytest.raises(HttpError, match=r"cannot reach the wiki .*gave up after 4 tries"):
        nowhere.get_json("rest/api/space")
    assert len(waits) == 3
    assert all(0 <= wait <= min(3, 2**n) for n, wait in enumerate(waits))


def test_the_total_wait_is_bounded_whatever_the_service_asks(dc_wiki, waits) -> None:
    dc_wiki.throttle("/rest/api/content", times=100, retry_after="50")
    with pytest.raises(HttpError, match=r"answered 429 \(Retry-After 50\).*pass the limit of 120 s"):
        client(dc_wiki, attempts=10, max_wait_s=120).get_json("rest/api/content?spaceKey=ENG")
    assert waits == [50.0, 50.0]


def test_a_refusal_is_not_retried_and_says_what_was_refused(dc_wiki, waits) -> None:
    wrong = HttpClient(
        base_url=dc_wiki.site, service="Confluence", auth_headers=lambda _: {"Authorization": "Bearer x"}
    )
    with pytest.raises(HttpError, match="Confluence answered 401") as refused:
        wrong.get_json("rest/api/content?spaceKey=ENG")
    assert refused.value.status == 401 and waits == []


def test_a_link_to_another_site_is_not_followed(dc_wiki) -> None:
    with pytest.raises(HttpError, match="another site"):
        client(dc_wiki).get_json("http://attacker.example/rest/api/content")
