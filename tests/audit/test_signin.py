"""Login throttling and the production HTTPS switches, through the test client."""

from __future__ import annotations

import pytest
from django.urls import reverse

from assistant.audit.models import AuditEvent
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _login(client, password: str, ip: str = "10.0.0.5"):
    return client.post(reverse("login"), {"username": "grace", "password": password}, REMOTE_ADDR=ip)


def test_repeated_failures_lock_the_name_from_that_address(client, settings) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    UserFactory.create(username="grace")
    for _ in range(2):
        assert _login(client, "guess").status_code == 200  # the form again, with an error
    locked = _login(client, "guess")
    assert locked.status_code == 429
    assert b"Too many failed sign-ins" in locked.content
    # Now even the right password is refused, without being checked...
    assert _login(client, "pw-for-tests").status_code == 429
    assert "_auth_user_id" not in client.session
    # ...but only for that name from that address.
    assert _login(client, "pw-for-tests", ip="10.0.0.6").status_code == 302
    failed = AuditEvent.objects.filter(action=AuditEvent.Action.USER_LOGIN_FAILED).order_by("id")
    assert [e.details["locked_out"] for e in failed] == [False, False, True, True]


def test_a_successful_sign_in_resets_the_count(client, settings) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    UserFactory.create(username="grace")
    _login(client, "guess")
    _login(client, "guess")
    assert _login(client, "pw-for-tests").status_code == 302
    client.logout()
    _login(client, "guess")
    _login(client, "guess")
    assert _login(client, "pw-for-tests").status_code == 302


def test_secure_mode_redirects_to_https_except_the_health_check(client, settings) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    response = client.get(reverse("login"))
    assert response.status_code == 301
    assert response.headers["Location"].startswith("https://")
    assert client.get("/healthz").status_code == 200
    secure = client.get(reverse("login"), secure=True)
    assert secure.status_code == 200
    assert secure.headers["Strict-Transport-Security"].startswith("max-age=3600")


def test_a_tls_proxy_header_counts_as_https_when_configured(client, settings) -> None:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    assert client.get(reverse("login"), HTTP_X_FORWARDED_PROTO="https").status_code == 200
    assert client.get(reverse("login"), HTTP_X_FORWARDED_PROTO="http").status_code == 301
