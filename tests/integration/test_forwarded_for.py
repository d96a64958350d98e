"""The real web server (uvicorn, as ``make run`` and compose start it) with no proxy
configured: an X-Forwarded-For written by the client names no one.

Otherwise a client could sign in with a new invented address each time and never be
locked out, and write any address it likes into the audit log.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant import processes
from tests.conftest import REPO
from tests.integration.conftest import BrowserSession
from tests.support.processes import Process, free_port

pytestmark = pytest.mark.live


def _manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_client_written_forwarded_for_does_not_escape_the_lockout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(ASSISTANT_DATA_DIR=str(tmp_path / "data"), LOGIN_FAILURE_LIMIT="3")
    env.pop("DJANGO_PROXY_COUNT", None)
    _manage(env, "migrate", "--noinput", "-v0")
    _manage(env, "collectstatic", "--noinput", "-v0")
    _manage(env, "user", "add", "grace", "--password", "the-right-password-42")
    port = free_port()
    web = Process("web", processes.web_command(host="127.0.0.1", port=port), env=env, log_dir=tmp_path, cwd=REPO)
    try:
        web.wait_http(f"http://127.0.0.1:{port}/healthz", timeout=60)
        statuses = []
        for n in range(4):
            session = BrowserSession(f"http://127.0.0.1:{port}")
            session.http.headers["X-Forwarded-For"] = f"198.51.100.{n + 1}"
            statuses.append(session.login("grace", "wrong-password").status_code)
        assert statuses == [200, 200, 429, 429], web.log_tail()
    finally:
        web.stop()
    exported = _manage(env, "audit", "export", "--format", "jsonl", "--action", "user.login_failed")
    ips = {json.loads(line)["ip"] for line in exported.stdout.splitlines() if line.strip()}
    assert ips == {"127.0.0.1"}
