"""LDAP is off unless LDAP_SERVER_URI is set: then nothing of ldap3 is loaded; on, the backend and the sync are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PROBE = """
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
import django
django.setup()
from django.conf import settings
import assistant.urls, assistant.directory.services, assistant.directory.backends, assistant.directory.tasks
print(json.dumps({
    "backends": settings.AUTHENTICATION_BACKENDS,
    "beat": settings.CELERY_BEAT_SCHEDULE.get("directory-sync"),
    "ldap3": "ldap3" in sys.modules,
}))
"""


def probe(tmp_path: Path, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LDAP_") and k != "DATABASE_URL"}
    clean.update(ASSISTANT_DATA_DIR=str(tmp_path), **env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=clean, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_off_without_a_server_and_nothing_of_ldap3_imported(tmp_path: Path) -> None:
    config = probe(tmp_path)
    assert "assistant.directory.backends.DirectoryBackend" not in config["backends"]
    assert config["beat"] is None
    assert config["ldap3"] is False


def test_on_with_a_server_the_backend_comes_last_and_the_sync_is_scheduled(tmp_path: Path) -> None:
    config = probe(
        tmp_path, LDAP_SERVER_URI="ldap://ldap.internal", LDAP_USER_SEARCH_BASE="ou=people,dc=x", LDAP_SYNC_SECONDS="90"
    )
    assert config["backends"][-1] == "assistant.directory.backends.DirectoryBackend"
    assert config["backends"].index("django.contrib.auth.backends.ModelBackend") < len(config["backends"]) - 1
    assert config["beat"] == {"task": "assistant.directory.tasks.directory_sync", "schedule": 90.0}
    assert config["ldap3"] is False  # still lazy: loaded by the first sign-in or sync
