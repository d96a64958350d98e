"""Single sign-on's user and group mapping, through the backend's own methods (no
identity provider is reachable from the tests; the redirect to one is tested in
test_deploy.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group, User

from assistant.audit.models import AuditEvent
from tests.factories import GroupFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def backend(settings):
    settings.OIDC_ENABLED = True
    settings.OIDC_RP_CLIENT_ID = "assistant"
    settings.OIDC_RP_CLIENT_SECRET = "secret"
    settings.OIDC_OP_TOKEN_ENDPOINT = "https://sso.example.com/token"
    settings.OIDC_OP_USER_ENDPOINT = "https://sso.example.com/userinfo"
    settings.OIDC_OP_JWKS_ENDPOINT = "https://sso.example.com/certs"
    settings.OIDC_RP_SIGN_ALGO = "RS256"
    settings.OIDC_GROUPS_CLAIM = "groups"
    settings.OIDC_USERNAME_CLAIM = "preferred_username"
    from assistant.accounts.oidc import GroupMappingOIDCBackend

    return GroupMappingOIDCBackend()


def claims(**extra):
    return {"sub": "0c1f", "preferred_username": "heidi", "email": "heidi@example.com", **extra}


def test_first_sign_in_creates_the_user_and_their_groups(backend) -> None:
    GroupFactory.create(name="finance")
    assert backend.verify_claims(claims())
    assert not backend.filter_users_by_claims(claims()).exists()
    user = backend.create_user(claims(groups=["finance", "/hr", "finance"], given_name="Heidi"))
    assert (user.username, user.email, user.first_name) == ("heidi", "heidi@example.com", "Heidi")
    assert not user.has_usable_password()
    assert sorted(user.groups.values_list("name", flat=True)) == ["finance", "hr"]
    assert Group.objects.filter(name="hr").exists()
    granted = AuditEvent.objects.filter(action=AuditEvent.Action.PERMISSION_GRANTED)
    assert sorted(e.details["group"] for e in granted) == ["finance", "hr"]
    assert {e.details["source"] for e in granted} == {"oidc"}


def test_later_sign_ins_follow_the_claim_adding_and_removing_groups(backend) -> None:
    user = backend.create_user(claims(groups=["finance", "hr"]))
    assert list(backend.filter_users_by_claims(claims())) == [user]
    backend.update_user(user, claims(groups=["hr", "legal"], email="h@example.org"))
    user.refresh_from_db()
    assert sorted(user.groups.values_list("name", flat=True)) == ["hr", "legal"]
    assert user.email == "h@example.org"
    revoked = AuditEvent.objects.filter(action=AuditEvent.Action.PERMISSION_REVOKED)
    assert [e.details["group"] for e in revoked] == ["finance"]
    backend.update_user(user, claims())  # no groups claim at all: no groups
    assert not user.groups.exists()


def test_groups_claim_can_be_nested_or_a_single_name(backend, settings) -> None:
    settings.OIDC_GROUPS_CLAIM = "realm_access.roles"
    user = backend.create_user(claims(realm_access={"roles": ["admins", "staff"]}))
    assert sorted(user.groups.values_list("name", flat=True)) == ["admins", "staff"]
    settings.OIDC_GROUPS_CLAIM = "team"
    backend.update_user(user, claims(team="support"))
    assert list(user.groups.values_list("name", flat=True)) == ["support"]


def test_claims_without_a_username_are_refused(backend) -> None:
    assert not backend.verify_claims({"sub": "x", "email": "x@example.com"})
    assert not backend.verify_claims(claims(preferred_username="x" * 151))


def test_a_local_account_with_a_password_is_never_taken_over(backend) -> None:
    local = UserFactory.create(username="heidi", is_superuser=True)
    assert not backend.filter_users_by_claims(claims()).exists()
    assert backend.create_user(claims(groups=["admins"])) is None
    local.refresh_from_db()
    assert local.has_usable_password()
    assert not local.groups.exists()
    assert User.objects.filter(username="heidi").count() == 1
