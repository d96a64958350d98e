"""/metrics: never public by default; the values an operator watches."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.factories import CollectionFactory, DocumentFactory
from tests.support.processes import free_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def enabled(settings):
    settings.METRICS_ENABLED = True
    settings.METRICS_TOKEN = "s3cret-metrics-token"
    return settings


def test_metrics_are_not_served_unless_enabled(client) -> None:
    assert client.get("/metrics").status_code == 404


def test_enabled_metrics_are_served_to_loopback_only(client, enabled) -> None:
    assert client.get("/metrics").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403


def test_a_bearer_token_opens_them_from_elsewhere(client, enabled) -> None:
    outside = {"REMOTE_ADDR": "203.0.113.9"}
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret-metrics-token", **outside).status_code == 200
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **outside).status_code == 403


def test_a_forwarded_address_does_not_open_them_without_a_trusted_proxy(client, enabled) -> None:
    response = client.get("/metrics", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="127.0.0.1")
    assert response.status_code == 403


def test_latency_is_labelled_by_route_not_path(client, enabled) -> None:
    client.get("/healthz")
    client.get("/no/such/page/12345")
    text = client.get("/metrics").content.decode()
    assert 'assistant_http_request_duration_seconds_count{method="GET",route="healthz"}' in text
    assert 'route="unmatched"' in text
    assert "/no/such/page" not in text


def test_documents_indexes_and_queues_are_read_at_scrape_time(client, enabled) -> None:
    collection = CollectionFactory.create()
    DocumentFactory.create(collection=collection, name="notes.md", content=b"# Notes\n\nSome text.", processed=True)
    text = client.get("/metrics").content.decode()
    assert 'assistant_documents{status="ready"} 1.0' in text
    assert 'assistant_documents{status="failed"} 0.0' in text
    assert 'assistant_index_files{kind="faiss"} 1.0' in text
    assert 'assistant_index_files{kind="bm25"} 1.0' in text
    assert 'assistant_queue_messages{queue="celery"}' in text
    assert not [line for line in text.splitlines() if line.startswith("assistant_scrape_errors_total{")]


def test_the_example_dashboard_only_charts_metrics_that_exist(client, enabled) -> None:
    import json
    import re
    from pathlib import Path

    dashboard = json.loads((Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json").read_text())
    charted = {
        re.sub(r"_(bucket|total)$", "", name)
        for panel in dashboard["panels"]
        for target in panel["targets"]
        for name in re.findall(r"\bassistant_[a-z_]+", target["expr"])
    }
    text = client.get("/metrics").content.decode()
    served = {re.sub(r"_total$", "", name) for name in re.findall(r"^# TYPE (assistant_[a-z_]+) ", text, re.MULTILINE)}
    assert charted and charted <= served, charted - served


WORKER_METRICS = """
import json, urllib.request, urllib.error
import django
django.setup()
import assistant.celery  # connects the worker's signals, as `celery -A assistant worker` does
from celery.signals import worker_process_init
worker_process_init.send(sender=None)  # what a worker's child process gets when it starts
seen = {}
for host in ("127.0.0.1", "127.0.0.2"):
    try:
        with urllib.request.urlopen(f"http://{host}:%(port)d/metrics", timeout=10) as response:
            seen[host] = "assistant_task_duration_seconds" in response.read().decode()
    except urllib.error.URLError as exc:
        seen[host] = type(exc.reason).__name__
print(json.dumps(seen))
"""


def test_a_worker_serves_its_metrics_on_the_address_and_port_it_is_given(tmp_path) -> None:
    port = free_port()
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="assistant.settings",
        ASSISTANT_DATA_DIR=str(tmp_path),
        METRICS_PORT=str(port),
        # Another loopback address than the default one: served there, and only there.
        METRICS_ADDR="127.0.0.2",
    )
    env.pop("DATABASE_URL", None)
    env.pop("CELERY_BROKER_URL", None)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    result = subprocess.run(
        [sys.executable, "-c", WORKER_METRICS % {"port": port}],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {
        "127.0.0.2": True,
        "127.0.0.1": "ConnectionRefusedError",
    }
