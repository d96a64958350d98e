"""Celery application. Tasks live beside the pipeline they run (``ingest/tasks.py``)."""

from __future__ import annotations

import os

from celery import Celery

from assistant import privacy  # noqa: F401
from assistant.ops import celery_signals  # noqa: F401  (ids in task headers, task metrics)
from assistant.ops.health import WorkerHeartbeat

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")

app = Celery("assistant")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
# Each worker writes a heartbeat for its health check while it consumes.
app.steps["consumer"].add(WorkerHeartbeat)
