from __future__ import annotations

import pytest
from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

pytestmark = pytest.mark.django_db


def test_first_admin_gets_a_generated_password_shown_once(capsys, monkeypatch) -> None:
    monkeypatch.delenv("ASSISTANT_ADMIN_PASSWORD", raising=False)
    call_command("bootstrap_admin")
    out = capsys.readouterr().out
    password = out.split("password: ")[1].split()[0]
    assert authenticate(username="admin", password=password) is not None
    call_command("bootstrap_admin")
    again = capsys.readouterr().out
    assert password not in again
    assert "already exists" in again
    assert get_user_model().objects.filter(is_superuser=True).count() == 1


def test_admin_password_can_come_from_the_environment(capsys, monkeypatch) -> None:
    monkeypatch.setenv("ASSISTANT_ADMIN_PASSWORD", "from-the-env-123")
    call_command("bootstrap_admin")
    assert "from-the-env-123" not in capsys.readouterr().out
    assert authenticate(username="admin", password="from-the-env-123") is not None
