"""/readyz: every part's state, 503 naming the part that fails; nothing real is stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db


def test_ready_when_every_part_answers_without_a_sign_in(client, recording_llm) -> None:
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 200, body
    assert body["status"] == "ok" and body["failing"] == []
    assert set(body["checks"]) == {"database", "broker", "llm", "embedding", "indexes", "originals"}
    assert all(part["status"] == "ok" for part in body["checks"].values())
    assert "scripted-model" in body["checks"]["llm"]["detail"]  # loopback callers see the reasons


def test_the_llm_server_down_is_named(client, settings, recording_llm) -> None:
    settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    response = client.get("/readyz")
    body = response.json()
    assert response.status_code == 503
    assert body["failing"] == ["llm"]
    assert body["checks"]["llm"]["status"] == "failing"
    assert body["checks"]["database"]["status"] == "ok"


def test_the_broker_down_is_named(client, settings, recording_llm) -> None:
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{free_port()}/0"  # no Redis there
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["broker"]


def test_an_index_folder_that_cannot_be_written_is_named(client, settings, recording_llm, tmp_path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the index folder should be")
    settings.INDEX_DIR = blocker
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["indexes"]


def test_an_originals_folder_that_cannot_be_written_is_named(client, settings, recording_llm, tmp_path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the shared originals' mount should be")
    settings.MEDIA_ROOT = blocker / "originals"
    response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["failing"] == ["originals"]


def test_reasons_are_kept_from_callers_outside_the_allowed_networks(client, settings) -> None:
    settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    body = client.get("/readyz", REMOTE_ADDR="203.0.113.9").json()
    assert body["failing"] == ["llm"]
    assert all("detail" not in part for part in body["checks"].values())  # the LLM's address is not shown


def test_healthz_is_unchanged(client) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}


DATABASE_DOWN = """
import json
import django
django.setup()
from django.test import Client
response = Client().get("/readyz")
print(json.dumps({"status": response.status_code, "body": response.json()}))
"""


def test_the_database_down_is_named(settings, recording_llm, tmp_path) -> None:
    # A process of its own, configured for a PostgreSQL on a loopback port nothing listens
    # on: the test run's own database connection is left alone.
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="assistant.settings",
        ASSISTANT_DATA_DIR=str(tmp_path),
        DATABASE_URL=f"postgres://assistant@127.0.0.1:{free_port()}/assistant",
        LLM_BASE_URL=settings.LLM_BASE_URL,
        LLM_MODEL=settings.LLM_MODEL,
    )
    env.pop("CELERY_BROKER_URL", None)  # the file-system broker: no other part fails
    env.pop("DATABASE_REPLICA_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", DATABASE_DOWN], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == 503, answer
    assert answer["body"]["failing"] == ["database"]
    assert answer["body"]["checks"]["database"]["status"] == "failing"
    assert "OperationalError" in answer["body"]["checks"]["database"]["detail"]
    assert answer["body"]["checks"]["llm"]["status"] == "ok"
