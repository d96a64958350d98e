"""Production settings, single sign-on switching and the data boundary, each in a
fresh process with the environment an operator would set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PRODUCTION = {
    "DJANGO_SECRET_KEY": "k3J9-x2QpL0vN8sT4wY6zA1bC5dE7fG9hI0jK2lM4nO6pQ8rS0tU2vW4xY6zA8bC0",
    "DJANGO_DEBUG": "false",
    "DJANGO_SECURE": "true",
    "DJANGO_ALLOWED_HOSTS": "assistant.example.com",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://assistant.example.com",
}
OIDC = {
    "OIDC_RP_CLIENT_ID": "assistant",
    "OIDC_RP_CLIENT_SECRET": "oidc-client-secret",
    "OIDC_OP_AUTHORIZATION_ENDPOINT": "https://sso.example.com/realms/corp/protocol/openid-connect/auth",
    "OIDC_OP_TOKEN_ENDPOINT": "https://sso.example.com/realms/corp/protocol/openid-connect/token",
    "OIDC_OP_USER_ENDPOINT": "https://sso.example.com/realms/corp/protocol/openid-connect/userinfo",
    "OIDC_OP_JWKS_ENDPOINT": "https://sso.example.com/realms/corp/protocol/openid-connect/certs",
}
_INHERITED = (
    "DATABASE_URL",
    "CELERY_BROKER_URL",
    "LLM_BASE_URL",
    "EMBEDDING_BASE_URL",
    "DJANGO_SECURE",
    "DJANGO_DEBUG",
)


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _INHERITED and not k.startswith("OIDC_")}
    env.update(ASSISTANT_DATA_DIR=str(tmp_path), **extra)
    return env


def _python(tmp_path: Path, code: str, **extra: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", code], env=_env(tmp_path, **extra), cwd=REPO, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("sso", [False, True], ids=["password", "password+oidc"])
def test_check_deploy_is_clean_under_production_settings(tmp_path: Path, sso: bool) -> None:
    env = _env(tmp_path, **PRODUCTION, **(OIDC if sso else {}))
    out = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        env=env, cwd=REPO, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert "no issues" in out.stdout


def test_production_switch_needs_an_explicit_secret_key(tmp_path: Path) -> None:
    env = _env(tmp_path, DJANGO_SECURE="true")
    env.pop("DJANGO_SECRET_KEY", None)
    out = subprocess.run(
        [sys.executable, "manage.py", "check"], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    assert out.returncode != 0
    assert "DJANGO_SECRET_KEY" in out.stderr


PRELUDE = """
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
import django
django.setup()
from django.conf import settings
# Pages render here without a collectstatic step or a migrated database.
settings.STORAGES = {
    **settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}
}
settings.SESSION_ENGINE = "django.contrib.sessions.backends.signed_cookies"
"""

PAGES = (
    PRELUDE
    + """
from django.test import Client
from django.test.utils import setup_test_environment
setup_test_environment()
client = Client()
login = client.get("/accounts/login/")
sso = client.get("/oidc/authenticate/?next=/")
print(json.dumps({
    "installed": "mozilla_django_oidc" in settings.INSTALLED_APPS,
    "backends": settings.AUTHENTICATION_BACKENDS,
    "loaded": "mozilla_django_oidc" in sys.modules,
    "login_status": login.status_code,
    "sso_button": "single sign-on" in login.content.decode(),
    "sso_status": sso.status_code,
    "sso_location": sso.headers.get("Location", ""),
    "session_cookie_secure": settings.SESSION_COOKIE_SECURE,
}))
"""
)


def test_single_sign_on_is_off_and_not_even_imported_without_configuration(tmp_path: Path) -> None:
    result = _python(tmp_path, PAGES)
    assert result["login_status"] == 200
    assert result["installed"] is False
    assert result["loaded"] is False
    assert not any("oidc" in b.lower() for b in result["backends"])
    assert result["sso_button"] is False
    assert result["sso_status"] == 404
    # The embedded defaults serve plain HTTP on 127.0.0.1: no secure-only cookies.
    assert result["session_cookie_secure"] is False


def test_single_sign_on_switches_on_with_its_variables(tmp_path: Path) -> None:
    result = _python(tmp_path, PAGES, **OIDC)
    assert result["installed"] is True
    assert "assistant.accounts.oidc.GroupMappingOIDCBackend" in result["backends"]
    assert result["sso_button"] is True
    # The button starts the authorization code flow at the identity provider.
    assert result["sso_status"] == 302
    location = result["sso_location"]
    assert location.startswith(OIDC["OIDC_OP_AUTHORIZATION_ENDPOINT"] + "?")
    assert "client_id=assistant" in location
    assert "response_type=code" in location


BOUNDARY = (
    PRELUDE
    + """
from django.contrib.auth.models import User
from django.test import RequestFactory
from assistant.audit.views import data_boundary
request = RequestFactory().get("/portal/audit/data-boundary")
request.user = User(username="root", is_staff=True, is_superuser=True, is_active=True)
print(json.dumps({"html": data_boundary(request).content.decode()}))
"""
)


def test_data_boundary_names_the_database_and_broker_hosts_without_passwords(tmp_path: Path) -> None:
    html = _python(
        tmp_path,
        BOUNDARY,
        DATABASE_URL="postgres://assistant:db-pass-123@db.internal:5433/assistant",
        CELERY_BROKER_URL="redis://:redis-pass-456@cache.internal:6379/0",
        LLM_BASE_URL="http://vllm.internal:8000/v1,http://llm:llm-pass-000@vllm-b.internal:8001/v1",
        LLM_API_KEY="sk-llm-789",
        EMBEDDING_BASE_URL="http://tei.internal:8080/v1",
        EMBEDDING_API_KEY="sk-embed-321",
        **OIDC,
    )["html"]
    for shown in ("PostgreSQL", "db.internal:5433", "Redis", "cache.internal:6379", "http://vllm.internal:8000/v1",
                  "http://vllm-b.internal:8001/v1", "http://tei.internal:8080/v1", "Embedding server",
                  "https://sso.example.com/realms/corp/protocol/openid-connect/certs"):  # fmt: skip
        assert shown in html, shown
    for secret in ("db-pass-123", "redis-pass-456", "sk-llm-789", "llm-pass-000", "sk-embed-321", "oidc-client-secret"):
        assert secret not in html, secret


def test_data_boundary_on_the_embedded_defaults_is_all_local(tmp_path: Path) -> None:
    html = _python(tmp_path, BOUNDARY)["html"]
    assert "SQLite" in html
    assert str(tmp_path / "db.sqlite3") in html
    assert "local folder" in html
    assert "http://127.0.0.1:" in html
    assert "single sign-on" not in html.lower()
    assert "Embedding server" not in html  # the packaged model embeds in-process
