"""Single sign-on through the real mozilla-django-oidc flow against a provider on 127.0.0.1.

Only the identity provider is stand-in (tests/support/identity_provider.py): the
sign-in button, the redirect, the callback, the code exchange, the ID token's
signature check against the JWKS and the userinfo call all run as in production.
Time is moved by setting an identity's ``last_checked_at`` back, never by waiting.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import urlencode, urlsplit

import pytest
import requests
from asgiref.sync import async_to_sync
from django.contrib.auth.models import User
from django.test import AsyncClient, Client
from django.utils import timezone

from assistant.accounts.models import CollectionGrant, ExternalIdentity
from assistant.accounts.services import token_create
from assistant.accounts.sso import group_names
from assistant.audit.models import AuditEvent
from tests.factories import CollectionFactory, GroupFactory, UserFactory
from tests.support.identity_provider import IdentityProvider

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action
RECHECK = 300


@pytest.fixture
def provider(settings):
    with IdentityProvider() as idp:
        settings.OIDC_ENABLED = True
        settings.OIDC_RP_CLIENT_ID = idp.client_id
        settings.OIDC_RP_CLIENT_SECRET = idp.client_secret
        settings.OIDC_OP_AUTHORIZATION_ENDPOINT = idp.endpoint("auth")
        settings.OIDC_OP_TOKEN_ENDPOINT = idp.endpoint("token")
        settings.OIDC_OP_USER_ENDPOINT = idp.endpoint("userinfo")
        settings.OIDC_OP_JWKS_ENDPOINT = idp.endpoint("certs")
        settings.OIDC_RP_SIGN_ALGO = "RS256"
        settings.OIDC_RP_SCOPES = "openid email profile"
        settings.OIDC_PROXY = {"http": "", "https": ""}
        settings.LOGIN_REDIRECT_URL_FAILURE = "login"
        settings.AUTHENTICATION_BACKENDS = [
            *settings.AUTHENTICATION_BACKENDS,
            "assistant.accounts.oidc.GroupMappingOIDCBackend",
        ]
        settings.ROOT_URLCONF = "tests.audit.oidc_urls"
        settings.OIDC_RECHECK_SECONDS = RECHECK
        settings.OIDC_RECHECK_GRACE_SECONDS = 0
        yield idp


def sign_in(provider: IdentityProvider, subject: str, client: Client | None = None) -> Client:
    """The sign-in button, the provider's page (the person signs in there) and the callback."""
    client = client or Client()
    start = client.get("/oidc/authenticate/?next=/")
    assert start.status_code == 302 and start["Location"].startswith(provider.endpoint("auth"))
    at_provider = requests.get(
        start["Location"] + "&" + urlencode({"login_hint": subject}), allow_redirects=False, timeout=10
    )
    assert at_provider.status_code == 302, at_provider.text
    back = urlsplit(at_provider.headers["Location"])
    client.get(f"{back.path}?{back.query}")
    return client


def signed_in_as(client: Client) -> str:
    page = client.get("/")
    return page.context["user"].username if page.status_code == 200 else ""


def due(user: User) -> None:
    """Move the user's last check back past the interval (instead of waiting for it)."""
    ExternalIdentity.objects.filter(user=user).update(last_checked_at=timezone.now() - timedelta(seconds=RECHECK + 1))


@pytest.fixture
def finance_reports():
    """A collection only the finance group may read."""
    collection = CollectionFactory.create(name="Finance reports", created_by=UserFactory.create())
    CollectionGrant.objects.create(collection=collection, group=GroupFactory.create(name="finance"), role="read")
    return collection


def api_collections(token: str) -> tuple[int, list[str], dict]:
    response = Client().get("/api/v1/collections", headers={"Authorization": f"Bearer {token}"})
    body = response.json()
    return response.status_code, [c["name"] for c in body.get("items", [])], body


# --- Sign-in and the binding to issuer and subject --------------------------------


def test_first_sign_in_creates_a_user_bound_to_the_issuer_and_subject(provider, caplog) -> None:
    provider.person("0c1f", preferred_username="heidi", email="heidi@example.com", given_name="Heidi",
                    groups=["finance", "/hr", "finance"])  # fmt: skip
    caplog.set_level(logging.DEBUG)
    client = sign_in(provider, "0c1f")
    assert signed_in_as(client) == "heidi"
    user = User.objects.get(username="heidi")
    assert (user.email, user.first_name, user.has_usable_password()) == ("heidi@example.com", "Heidi", False)
    assert sorted(user.groups.values_list("name", flat=True)) == ["finance", "hr"]
    identity = ExternalIdentity.objects.get(user=user)
    assert (identity.issuer, identity.subject) == (provider.issuer, "0c1f")
    granted = AuditEvent.objects.filter(action=Action.PERMISSION_GRANTED)
    assert sorted(e.details["group"] for e in granted) == ["finance", "hr"]
    assert AuditEvent.objects.get(action=Action.SSO_BOUND).details["subject"] == "0c1f"
    # The refresh token is kept, but sealed: not in the row, the audit log or the logs.
    (refresh,) = provider.issued_refresh_tokens
    assert identity.refresh_token and refresh not in identity.refresh_token
    assert not any(refresh in str(e.details) for e in AuditEvent.objects.all())
    assert refresh not in caplog.text


def test_later_sign_ins_find_the_subject_even_under_a_new_user_name(provider) -> None:
    provider.person("0c1f", preferred_username="heidi", groups=["finance", "hr"])
    sign_in(provider, "0c1f")
    provider.person("0c1f", preferred_username="heidi.m", email="h@example.org", groups=["hr", "legal"])
    client = sign_in(provider, "0c1f")
    assert signed_in_as(client) == "heidi"  # the same account; the name stays
    user = User.objects.get(username="heidi")
    assert user.email == "h@example.org"
    assert sorted(user.groups.values_list("name", flat=True)) == ["hr", "legal"]
    revoked = AuditEvent.objects.filter(action=Action.PERMISSION_REVOKED)
    assert [e.details["group"] for e in revoked] == ["finance"]
    assert User.objects.count() == 1


def test_a_recycled_user_name_with_a_new_subject_does_not_get_the_old_account(provider, finance_reports) -> None:
    provider.person("old-heidi", preferred_username="heidi", groups=["finance"])
    sign_in(provider, "old-heidi")
    old = User.objects.get(username="heidi")
    # The first heidi left; the provider gives the name to a new person.
    del provider.people["old-heidi"]
    provider.person("new-heidi", preferred_username="heidi", groups=[])
    client = sign_in(provider, "new-heidi")
    assert signed_in_as(client) == ""
    page = client.get("/accounts/login/")
    assert "The user name &#x27;heidi&#x27; belongs to another account here" in page.content.decode()
    assert list(ExternalIdentity.objects.values_list("subject", flat=True)) == ["old-heidi"]
    assert list(old.groups.values_list("name", flat=True)) == ["finance"]
    refused = AuditEvent.objects.get(action=Action.SSO_REFUSED)
    assert refused.details["subject"] == "new-heidi" and refused.details["user"] == "heidi"


def test_a_local_account_with_a_password_is_never_taken_over(provider) -> None:
    local = UserFactory.create(username="root", is_superuser=True)
    provider.person("evil", preferred_username="root", groups=["admins"])
    client = sign_in(provider, "evil")
    assert signed_in_as(client) == ""
    local.refresh_from_db()
    assert local.has_usable_password() and not local.groups.exists()
    assert not ExternalIdentity.objects.exists()


def test_an_account_single_sign_on_made_before_identities_is_bound_once_if_recently_used(provider, settings) -> None:
    recent = User.objects.create_user(username="ivan", last_login=timezone.now() - timedelta(days=3))
    stale = User.objects.create_user(username="olga", last_login=timezone.now() - timedelta(days=400))
    provider.person("s-ivan", preferred_username="ivan")
    provider.person("s-olga", preferred_username="olga")
    assert signed_in_as(sign_in(provider, "s-ivan")) == "ivan"
    assert ExternalIdentity.objects.get(subject="s-ivan").user == recent
    # An account nobody used for longer than OIDC_LEGACY_BIND_DAYS may be a recycled name.
    assert signed_in_as(sign_in(provider, "s-olga")) == ""
    assert not ExternalIdentity.objects.filter(user=stale).exists()
    # Once bound, another subject with that name is refused too.
    provider.person("s-ivan-2", preferred_username="ivan")
    assert signed_in_as(sign_in(provider, "s-ivan-2")) == ""


def test_an_id_token_for_another_application_or_issuer_is_refused(provider, settings) -> None:
    provider.person("0c1f", preferred_username="heidi")
    provider.audience = "another-app"
    assert signed_in_as(sign_in(provider, "0c1f")) == ""
    provider.audience = provider.client_id
    settings.OIDC_OP_ISSUER = "https://sso.example.com/realms/other"
    assert signed_in_as(sign_in(provider, "0c1f")) == ""
    assert not User.objects.exists()
    settings.OIDC_OP_ISSUER = provider.issuer
    assert signed_in_as(sign_in(provider, "0c1f")) == "heidi"


def test_claims_without_a_user_name_are_refused(provider) -> None:
    provider.person("x", email="x@example.com")
    assert signed_in_as(sign_in(provider, "x")) == ""
    provider.person("y", preferred_username="y" * 151)
    assert signed_in_as(sign_in(provider, "y")) == ""
    assert not User.objects.exists()


def test_groups_claim_can_be_nested_or_a_single_name(settings) -> None:
    settings.OIDC_GROUPS_CLAIM = "realm_access.roles"
    assert group_names({"realm_access": {"roles": ["staff", "admins"]}}) == ["admins", "staff"]
    settings.OIDC_GROUPS_CLAIM = "team"
    assert group_names({"team": "support"}) == ["support"]
    assert group_names({"team": {"not": "a list"}}) == []


# --- The bounded re-check ----------------------------------------------------------


def test_within_the_interval_pages_and_tokens_make_no_call_to_the_provider(provider, finance_reports) -> None:
    provider.person("0c1f", preferred_username="heidi", groups=["finance"])
    client = sign_in(provider, "0c1f")
    token = token_create(user=User.objects.get(username="heidi"), name="cli").plaintext
    calls = provider.total_calls
    for _ in range(3):
        assert "Finance reports" in client.get("/").content.decode()
        assert api_collections(token)[1] == ["Finance reports"]
    assert provider.total_calls == calls


def test_groups_removed_at_the_provider_are_gone_from_the_session_after_the_interval(provider, finance_reports) -> None:
    provider.person("0c1f", preferred_username="heidi", groups=["finance"])
    client = sign_in(provider, "0c1f")
    user = User.objects.get(username="heidi")
    assert "Finance reports" in client.get("/").content.decode()  # the control
    provider.person("0c1f", preferred_username="heidi", groups=[])
    due(user)
    page = client.get("/")
    assert page.status_code == 200 and page.context["user"] == user  # still signed in
    assert "Finance reports" not in page.content.decode()
    assert provider.calls["token"] == 2 and provider.calls["userinfo"] == 2  # sign-in, then one re-check
    revoked = AuditEvent.objects.get(action=Action.PERMISSION_REVOKED)
    assert (revoked.details["group"], revoked.details["source"]) == ("finance", "oidc recheck")


def test_groups_removed_at_the_provider_are_gone_for_an_api_token_after_the_interval(provider, finance_reports) -> None:
    provider.person("0c1f", preferred_username="heidi", groups=["finance"])
    sign_in(provider, "0c1f")
    user = User.objects.get(username="heidi")
    token = token_create(user=user, name="cli").plaintext
    assert api_collections(token)[1] == ["Finance reports"]  # the control
    provider.person("0c1f", preferred_username="heidi", groups=[])
    due(user)
    status, names, _ = api_collections(token)
    assert (status, names) == (200, [])
    assert not user.groups.exists()
    # The rotated refresh token was kept: the next re-check works too.
    provider.person("0c1f", preferred_username="heidi", groups=["finance"])
    due(user)
    assert api_collections(token)[1] == ["Finance reports"]


def test_a_user_disabled_at_the_provider_loses_the_session_after_the_interval(provider, finance_reports) -> None:
    provider.person("0c1f", preferred_username="heidi", groups=["finance"])
    client = sign_in(provider, "0c1f")
    user = User.objects.get(username="heidi")
    provider.disabled.add("0c1f")
    assert signed_in_as(client) == "heidi"  # within the interval
    due(user)
    page = client.get("/")
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")
    assert "no longer confirms this account" in client.get(page["Location"]).content.decode()
    user.refresh_from_db()
    assert not user.is_active
    deactivated = AuditEvent.objects.get(action=Action.USER_DEACTIVATED)
    assert "Account disabled" in deactivated.details["reason"] and deactivated.target_id == str(user.pk)
    assert (deactivated.actor, deactivated.details["user"]) == (None, "heidi")  # the system did it


def test_a_user_disabled_at_the_provider_loses_api_tokens_after_the_interval(provider, finance_reports) -> None:
    provider.person("0c1f", preferred_username="heidi", groups=["finance"])
    other_session = sign_in(provider, "0c1f")
    user = User.objects.get(username="heidi")
    token = token_create(user=user, name="cli").plaintext
    provider.disabled.add("0c1f")
    assert api_collections(token)[1] == ["Finance reports"]  # within the interval
    due(user)
    status, _, body = api_collections(token)
    assert (status, body["error"]["code"]) == (401, "sso_account_refused")
    assert "no longer confirms this account" in body["error"]["message"]
    assert api_collections(token)[0] == 401
    openai = Client().get("/v1/models", headers={"Authorization": f"Bearer {token}"})
    assert openai.status_code == 401
    # The user's browser session ends as well, without another call to the provider
    # or another deactivation on record.
    calls = provider.total_calls
    assert signed_in_as(other_session) == ""
    assert provider.total_calls == calls
    assert AuditEvent.objects.filter(action=Action.USER_DEACTIVATED).count() == 1


def test_the_provider_gives_the_account_back_at_the_next_sign_in_there(provider, finance_reports) -> None:
    provider.person("0c1f", preferred_username="heidi", groups=["finance"])
    client = sign_in(provider, "0c1f")
    user = User.objects.get(username="heidi")
    provider.disabled.add("0c1f")
    due(user)
    assert signed_in_as(client) == ""
    provider.disabled.discard("0c1f")
    assert signed_in_as(sign_in(provider, "0c1f", client)) == "heidi"
    assert AuditEvent.objects.filter(action=Action.USER_REACTIVATED).count() == 1
    # An administrator's deactivation is not the provider's to undo.
    User.objects.filter(pk=user.pk).update(is_active=False)
    assert signed_in_as(client) == ""
    assert signed_in_as(sign_in(provider, "0c1f", client)) == ""


def test_an_unreachable_provider_fails_closed_after_the_grace_time(provider, settings, finance_reports) -> None:
    settings.OIDC_RECHECK_GRACE_SECONDS = 600
    provider.person("0c1f", preferred_username="heidi", groups=["finance"])
    client = sign_in(provider, "0c1f")
    user = User.objects.get(username="heidi")
    token = token_create(user=user, name="cli").plaintext
    provider.down = True
    due(user)  # due, but within the grace time: served, and asked again each time
    assert "Finance reports" in client.get("/").content.decode()
    assert api_collections(token)[0] == 200
    ExternalIdentity.objects.filter(user=user).update(last_checked_at=timezone.now() - timedelta(seconds=RECHECK + 601))
    page = client.get("/")
    assert page.status_code == 503 and "identity provider did not answer" in page.content.decode()
    status, _, body = api_collections(token)
    assert (status, body["error"]["code"]) == (503, "identity_provider_unavailable")
    openai = Client().get("/v1/models", headers={"Authorization": f"Bearer {token}"})
    assert openai.status_code == 503 and "identity provider did not answer" in openai.json()["error"]["message"]
    user.refresh_from_db()
    assert user.is_active  # nobody is deactivated for the provider's outage
    provider.down = False
    assert "Finance reports" in client.get("/").content.decode()  # the same session goes on
    assert api_collections(token)[0] == 200


@pytest.mark.django_db(transaction=True)
def test_the_recheck_also_guards_the_asynchronous_stack(provider, finance_reports) -> None:
    # uvicorn serves the site through ASGI, where the middleware runs its async path.
    provider.person("0c1f", preferred_username="heidi", groups=["finance"])
    client = sign_in(provider, "0c1f")
    user = User.objects.get(username="heidi")
    browser = AsyncClient()
    browser.cookies = client.cookies
    assert "Finance reports" in async_to_sync(browser.get)("/").content.decode()
    provider.disabled.add("0c1f")
    due(user)
    page = async_to_sync(browser.get)("/")
    assert page.status_code == 302 and page["Location"].startswith("/accounts/login/")
    assert not User.objects.get(pk=user.pk).is_active


def test_a_zero_interval_checks_every_request(provider, settings, finance_reports) -> None:
    settings.OIDC_RECHECK_SECONDS = 0
    provider.person("0c1f", preferred_username="heidi", groups=["finance"])
    client = sign_in(provider, "0c1f")
    before = provider.calls["userinfo"]
    for _ in range(3):
        client.get("/")
    assert provider.calls["userinfo"] == before + 3


def test_local_users_are_never_sent_to_the_provider(provider, finance_reports) -> None:
    local = UserFactory.create(username="root")
    client = Client()
    client.force_login(local)
    token = token_create(user=local, name="cli").plaintext
    assert signed_in_as(client) == "root"
    assert api_collections(token)[0] == 200
    assert provider.total_calls == 0
