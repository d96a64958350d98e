"""The People pages say where each user and group comes from, and when it was last synced."""

from __future__ import annotations

from datetime import datetime

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from assistant.accounts.models import ExternalIdentity
from assistant.directory.models import DirectoryAccount, DirectoryGroup, Source
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

SYNCED = timezone.make_aware(datetime(2026, 11, 5, 9, 30))


def test_users_and_groups_show_their_source_and_last_sync(client: Client) -> None:
    admin = UserFactory.create(username="root", is_staff=True, is_superuser=True)
    client.force_login(admin)
    ldap_user, scim_user, oidc_user = (UserFactory.create(username=n) for n in ("lena", "sam", "olga"))
    DirectoryAccount.objects.create(user=ldap_user, source=Source.LDAP, external_id="u1", last_synced_at=SYNCED)
    DirectoryAccount.objects.create(user=scim_user, source=Source.SCIM)
    ExternalIdentity.objects.create(user=oidc_user, issuer="https://idp", subject="s", last_checked_at=SYNCED)
    board = Group.objects.create(name="ldap:board")
    DirectoryGroup.objects.create(group=board, source=Source.LDAP, last_synced_at=SYNCED)
    Group.objects.create(name="local-team")

    page = client.get(reverse("portal:people")).content.decode()
    for name, label in (("lena", "Directory (LDAP)"), ("sam", "Provisioning (SCIM)"), ("olga", "Single sign-on (OIDC)"),
                        ("root", "Local")):  # fmt: skip
        row = page[page.index(f">{name}</a>") :].split("</tr>")[0]
        assert label in row, (name, row)
    lena_row = page[page.index(">lena</a>") :].split("</tr>")[0]
    assert "2026-11-05 09:30" in lena_row
    groups = client.get(reverse("portal:people_groups")).content.decode()
    assert "Directory (LDAP)" in groups.split(">ldap:board</a>")[1].split("</tr>")[0]
    assert "Local" in groups.split(">local-team</a>")[1].split("</tr>")[0]
    detail = client.get(reverse("portal:people_user", args=[ldap_user.pk])).content.decode()
    assert "Source: Directory (LDAP)" in detail and "last sync 2026-11-05 09:30" in detail

    client.cookies.load({"django_language": "de"})
    german = client.get(reverse("portal:people"), headers={"Accept-Language": "de"}).content.decode()
    assert "Verzeichnis (LDAP)" in german and "Quelle" in german
