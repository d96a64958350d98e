"""LOG_FORMAT=json as the settings wire it: a fresh process writes one JSON object per line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from tests.conftest import REPO

SCRIPT = """
import django, logging
django.setup()
from assistant.ops.context import bound
with bound(request="proc-req-0001", ingest="proc-ing-0001"):
    logging.getLogger("assistant.check").warning("two\\nlines", extra={"documents": [1, 2]})
"""


def _run(log_format: str, tmp_path) -> subprocess.CompletedProcess[str]:
    env = dict(
        os.environ, LOG_FORMAT=log_format, ASSISTANT_DATA_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="assistant.settings"
    )
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    return subprocess.run(
        [sys.executable, "-c", SCRIPT], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )


def test_json_log_lines_carry_the_ids(tmp_path) -> None:
    result = _run("json", tmp_path)
    assert result.returncode == 0, result.stderr
    (line,) = [line for line in result.stderr.splitlines() if "assistant.check" in line]
    event = json.loads(line)
    assert event["message"] == "two\nlines"  # one line on disk, whatever the message holds
    assert (event["request_id"], event["ingest_id"]) == ("proc-req-0001", "proc-ing-0001")
    assert (event["level"], event["documents"]) == ("WARNING", [1, 2])


def test_an_unknown_log_format_is_refused(tmp_path) -> None:
    result = _run("xml", tmp_path)
    assert result.returncode != 0
    assert "LOG_FORMAT must be text or json" in result.stderr


MULTIPROCESS = """
import django
django.setup()
from django.test import Client
client = Client()
assert client.get("/healthz").status_code == 200
print(client.get("/metrics").content.decode())
"""


def test_with_a_multiprocess_folder_metrics_are_written_there_and_summed(tmp_path) -> None:
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = dict(
        os.environ,
        ASSISTANT_DATA_DIR=str(tmp_path),
        DJANGO_SETTINGS_MODULE="assistant.settings",
        METRICS_ENABLED="true",
        PROMETHEUS_MULTIPROC_DIR=str(shared),
    )
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS], env=env, cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert 'assistant_http_request_duration_seconds_count{method="GET",route="healthz"} 1.0' in result.stdout
    assert any(shared.glob("*.db"))  # the process's values are in the shared folder
    assert "assistant_queue_messages" in result.stdout  # the state read at scrape time is there too
