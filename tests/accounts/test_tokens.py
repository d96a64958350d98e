"""Personal API tokens: shown once, stored hashed, scoped, expiring, revocable."""

from __future__ import annotations

import io
import re
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from assistant.accounts.models import ApiToken
from assistant.accounts.services import TokenRequestInvalid, token_authenticate, token_create, token_revoke
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_token_is_returned_once_and_only_its_hash_is_stored() -> None:
    user = UserFactory.create()
    issued = token_create(user=user, name="notebook", scope="write", days=7)
    assert issued.plaintext.startswith(f"ast_{issued.token.prefix}_")
    assert len(issued.plaintext) > 50
    row = ApiToken.objects.get(pk=issued.token.pk)
    values = ApiToken.objects.filter(pk=row.pk).values().first()
    assert values is not None
    stored = " ".join(str(v) for v in values.values())
    assert issued.plaintext not in stored
    assert issued.plaintext.split("_", 2)[2] not in stored
    assert row.token_hash != issued.plaintext and len(row.token_hash) == 64
    assert timedelta(days=6, hours=23) < row.expires_at - timezone.now() <= timedelta(days=7)
    found = token_authenticate(plaintext=issued.plaintext)
    assert found is not None and found.user == user and found.scope == "write"
    assert ApiToken.objects.get(pk=row.pk).last_used_at is not None


def test_default_lifetime_and_limits(settings) -> None:
    settings.API_TOKEN_DEFAULT_DAYS = 30
    settings.API_TOKEN_MAX_DAYS = 60
    user = UserFactory.create()
    token = token_create(user=user, name="t").token
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert token.scope == "read"
    with pytest.raises(TokenRequestInvalid):
        token_create(user=user, name="t", days=61)
    with pytest.raises(TokenRequestInvalid):
        token_create(user=user, name="t", days=0)
    with pytest.raises(TokenRequestInvalid):
        token_create(user=user, name="t", scope="admin")


def test_revoked_expired_inactive_malformed_and_forged_tokens_fail() -> None:
    user = UserFactory.create()
    revoked = token_create(user=user, name="r")
    assert token_revoke(token=revoked.token)
    assert not token_revoke(token=revoked.token)
    expired = token_create(user=user, name="e")
    ApiToken.objects.filter(pk=expired.token.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    live = token_create(user=user, name="l")
    forged = live.plaintext[:-4] + ("AAAA" if not live.plaintext.endswith("AAAA") else "BBBB")
    for plaintext in (revoked.plaintext, expired.plaintext, forged, "", "ast_", "ast__x", "Bearer x", "ast_zz_yy"):
        assert token_authenticate(plaintext=plaintext) is None, plaintext
    assert token_authenticate(plaintext=live.plaintext) is not None
    user.is_active = False
    user.save()
    assert token_authenticate(plaintext=live.plaintext) is None


def test_command_creates_lists_and_revokes_tokens() -> None:
    user = UserFactory.create(username="carol")
    out, err = io.StringIO(), io.StringIO()
    call_command("token", "create", "--user", "carol", "--scope", "write", "--days", "3", stdout=out, stderr=err)
    plaintext = out.getvalue().strip()
    token = token_authenticate(plaintext=plaintext)
    assert token is not None and token.user == user and token.scope == "write"
    assert "Shown once" in err.getvalue()
    listing = io.StringIO()
    call_command("token", "list", "--user", "carol", stdout=listing)
    assert token.prefix in listing.getvalue() and plaintext not in listing.getvalue()
    call_command("token", "revoke", token.prefix, stdout=io.StringIO())
    assert token_authenticate(plaintext=plaintext) is None
    with pytest.raises(CommandError):
        call_command("token", "create", "--user", "nobody")
    with pytest.raises(CommandError):
        call_command("token", "create", "--user", "carol", "--days", "100000")


def test_tokens_page_shows_a_new_token_once_and_revokes_only_ones_own() -> None:
    user = UserFactory.create()
    other = token_create(user=UserFactory.create(), name="someone else's")
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get(reverse("accounts:tokens"))
    assert page.status_code == 200
    csrf = page.cookies["csrftoken"].value
    created = client.post(
        reverse("accounts:tokens"), {"name": "ide", "scope": "read", "days": "10", "csrfmiddlewaretoken": csrf}
    )
    assert created.status_code == 200
    assert created["Cache-Control"] == "no-store"
    match = re.search(r'id="token-plaintext">([^<]+)<', created.content.decode())
    assert match
    plaintext = match.group(1)
    token = token_authenticate(plaintext=plaintext)
    assert token is not None and token.user == user and token.name == "ide"
    again = client.get(reverse("accounts:tokens")).content.decode()
    assert plaintext not in again and f"ast_{token.prefix}_" in again
    assert "someone else" not in again
    refused = client.post(reverse("accounts:token_revoke", args=[other.token.pk]), {"csrfmiddlewaretoken": csrf})
    assert refused.status_code == 404
    assert token_authenticate(plaintext=other.plaintext) is not None
    done = client.post(reverse("accounts:token_revoke", args=[token.pk]), {"csrfmiddlewaretoken": csrf})
    assert done.status_code == 302
    assert token_authenticate(plaintext=plaintext) is None
    too_long = client.post(
        reverse("accounts:tokens"), {"name": "x", "scope": "read", "days": "100000", "csrfmiddlewaretoken": csrf}
    )
    assert "token-plaintext" not in too_long.content.decode()
