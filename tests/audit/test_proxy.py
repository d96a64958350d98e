"""The sign-in lockout and the audit log behind the production stack's TLS proxy.

Run in a fresh process with the environment compose.yaml gives the web container,
so the test fails if the stack stops telling the application about its proxy: then
every user arrives from the proxy's address and one attacker locks everyone out.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from tests.audit.test_deploy import PRELUDE, _python
from tests.test_compose import COMPOSE_FILE, OPERATOR_ENV, interpolate

PROXY = "172.18.0.1"  # the address the web container sees every request come from
ATTACKER = "203.0.113.66"
COLLEAGUE = "198.51.100.7"

SIGN_INS = (
    PRELUDE
    + f"""
from django.core.management import call_command
call_command("migrate", verbosity=0)
from django.contrib.auth.models import User
from django.test import Client
from django.test.utils import setup_test_environment
from assistant.audit.models import AuditEvent
setup_test_environment()
User.objects.create_user("admin", password="the-right-password-42")

def sign_in(forwarded_for, password):
    # What the proxy sends on: the client's address appended, the scheme, the host.
    client = Client(REMOTE_ADDR={PROXY!r}, HTTP_X_FORWARDED_FOR=forwarded_for, HTTP_X_FORWARDED_PROTO="https",
                    HTTP_HOST="assistant.example.com")
    return client.post("/accounts/login/", {{"username": "admin", "password": password}}).status_code

attacker = [sign_in({ATTACKER!r}, "guess") for _ in range(settings.AXES_FAILURE_LIMIT)]
# A client-written entry left of the proxy's does not move the attacker elsewhere.
spoofed = sign_in("10.9.8.7, {ATTACKER}", "the-right-password-42")
colleague = sign_in({COLLEAGUE!r}, "the-right-password-42")
failed = AuditEvent.objects.filter(action="user.login_failed")
print(json.dumps({{
    "attacker": attacker, "spoofed": spoofed, "colleague": colleague,
    "failed_ips": sorted(set(failed.values_list("ip", flat=True))),
}}))
"""
)


def _web_environment(**operator: str) -> dict[str, str]:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    web: dict[str, Any] = interpolate(raw, {**OPERATOR_ENV, **operator})["services"]["web"]["environment"]
    # The Django settings only: the database and broker stay the test's own.
    return {k: str(v) for k, v in web.items() if k.startswith("DJANGO_")}


def test_behind_the_compose_proxy_one_client_cannot_lock_out_another(tmp_path: Path) -> None:
    env = _web_environment(DJANGO_ALLOWED_HOSTS="assistant.example.com")
    result = _python(tmp_path, SIGN_INS, **env)
    *refused, locked = result["attacker"]
    assert refused == [200] * len(refused)  # the form again, with its error
    assert locked == 429  # the limit reached: locked out
    assert result["spoofed"] == 429
    assert result["colleague"] == 302  # signed in, from the same proxy
    assert result["failed_ips"] == [ATTACKER]
