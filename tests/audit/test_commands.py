"""``manage.py audit export|purge`` and the periodic purge task."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from assistant.audit.models import AuditEvent
from assistant.audit.tasks import purge_audit_events

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action


def test_export_command_writes_jsonl_filtered_by_action_and_date(tmp_path, capsys) -> None:
    now = timezone.now()
    AuditEvent.objects.create(action=Action.USER_LOGIN, actor_username="old", created_at=now - timedelta(days=40))
    AuditEvent.objects.create(action=Action.USER_LOGIN, actor_username="new")
    AuditEvent.objects.create(action=Action.DOCUMENT_DELETED, actor_username="new")
    since = (now - timedelta(days=1)).date().isoformat()
    call_command("audit", "export", "--format", "jsonl", "--action", "user.login", "--since", since)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert [(x["action"], x["actor_username"]) for x in lines] == [("user.login", "new")]
    out = tmp_path / "audit.csv"
    call_command("audit", "export", "--format", "csv", "--output", str(out))
    text = out.read_text()
    assert text.startswith("id,created_at,action,")
    assert text.count("\n") == 1 + 5  # header, three events, and both exports' own records
    assert AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED).count() == 2


def test_export_command_rejects_a_bad_date() -> None:
    with pytest.raises(CommandError, match="Not a date"):
        call_command("audit", "export", "--since", "last tuesday")


def test_purge_command_and_task_apply_the_retention(settings, capsys) -> None:
    settings.AUDIT_RETENTION_DAYS = 7
    now = timezone.now()
    AuditEvent.objects.create(action=Action.USER_LOGIN, created_at=now - timedelta(days=8))
    AuditEvent.objects.create(action=Action.USER_LOGIN, created_at=now - timedelta(days=3))
    call_command("audit", "purge")
    assert "Deleted 1 audit events" in capsys.readouterr().out
    AuditEvent.objects.create(action=Action.USER_LOGIN, created_at=now - timedelta(days=5))
    assert purge_audit_events() == 0
    assert purge_audit_events.apply(kwargs={}).get() == 0
    call_command("audit", "purge", "--days", "4")
    assert not AuditEvent.objects.filter(created_at__lt=now - timedelta(days=4)).exists()


def test_the_worker_beat_runs_the_purge() -> None:
    entry = django_settings.CELERY_BEAT_SCHEDULE["purge-audit-events"]
    assert entry["task"] == purge_audit_events.name
    assert entry["schedule"] == 24 * 3600
