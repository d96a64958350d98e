"""The audit log is append-only in the ORM and in the database; only the retention
purge and the user deletion policy get through, through the gate."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from assistant.audit.gate import audit_gate
from assistant.audit.models import AppendOnlyError, AuditEvent
from assistant.audit.services import audit_purge, audit_record
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

TABLE = AuditEvent._meta.db_table


def _event(**fields) -> AuditEvent:
    return audit_record(action=AuditEvent.Action.USER_LOGIN, **fields)


def _raw(sql: str, params: list) -> int:
    """Run SQL past the ORM, in a savepoint so a refusal leaves the test's transaction usable."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


def test_the_database_this_suite_runs_on_has_the_triggers() -> None:
    # The suite runs on both databases; each must carry its own triggers, and a
    # later migration that rebuilt the table without them would fail here.
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT tgname FROM pg_trigger WHERE tgrelid = %s::regclass AND NOT tgisinternal", [TABLE])
            assert {r[0] for r in cursor.fetchall()} == {"audit_event_append_only"}
        else:
            assert connection.vendor == "sqlite"
            cursor.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [TABLE])
            assert {r[0] for r in cursor.fetchall()} == {"audit_event_no_delete", "audit_event_no_update"}
            cursor.execute("SELECT open FROM audit_gate WHERE id = 1")
            assert cursor.fetchone() == (0,)


def test_orm_refuses_to_change_or_delete_an_event() -> None:
    event = _event(details={"n": 1})
    event.details = {"n": 2}
    with pytest.raises(AppendOnlyError):
        event.save()
    with pytest.raises(AppendOnlyError):
        event.delete()
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).update(details={"n": 3})
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.get(pk=event.pk).details == {"n": 1}


def test_database_refuses_update_and_delete_past_the_orm() -> None:
    event = _event(details={"n": 1})
    with pytest.raises(IntegrityError, match="append-only"):
        _raw(f"UPDATE {TABLE} SET action = %s WHERE id = %s", ["user.login_failed", event.pk])  # noqa: S608
    with pytest.raises(IntegrityError, match="append-only"):
        _raw(f"DELETE FROM {TABLE} WHERE id = %s", [event.pk])  # noqa: S608
    # Even the one allowed change (forgetting the actor) may not smuggle in another.
    actor = UserFactory.create()
    mine = _event(actor=actor)
    with pytest.raises(IntegrityError, match="append-only"):
        _raw(f"UPDATE {TABLE} SET actor_id = NULL, actor_username = %s WHERE id = %s", ["someone", mine.pk])  # noqa: S608
    assert AuditEvent.objects.filter(pk__in=[event.pk, mine.pk]).count() == 2
    assert AuditEvent.objects.get(pk=event.pk).action == "user.login"


def test_the_gate_lets_statements_through_and_closes_behind_them() -> None:
    event, other = _event(), _event()
    with audit_gate():
        assert _raw(f"DELETE FROM {TABLE} WHERE id = %s", [event.pk]) == 1  # noqa: S608
    assert not AuditEvent.objects.filter(pk=event.pk).exists()
    # Closed again within the same (test) transaction.
    with pytest.raises(IntegrityError):
        _raw(f"DELETE FROM {TABLE} WHERE id = %s", [other.pk])  # noqa: S608
    with pytest.raises(AppendOnlyError):
        AuditEvent.objects.filter(pk=other.pk).delete()


def test_a_failure_inside_the_gate_rolls_back_and_leaves_it_closed() -> None:
    event = _event()
    with pytest.raises(RuntimeError), audit_gate():
        AuditEvent.objects.filter(pk=event.pk).delete()
        raise RuntimeError("boom")
    assert AuditEvent.objects.filter(pk=event.pk).exists()
    with pytest.raises(IntegrityError):
        _raw(f"DELETE FROM {TABLE} WHERE id = %s", [event.pk])  # noqa: S608


def test_deleting_a_user_keeps_their_events_with_the_name(settings) -> None:
    settings.USER_DELETION_POLICY = "keep"
    actor = UserFactory.create(username="carol")
    event = _event(actor=actor)
    actor.delete()
    event = AuditEvent.objects.get(pk=event.pk)
    assert event.actor_id is None
    assert event.actor_username == "carol"


def test_retention_purge_removes_only_old_events_and_records_itself(settings) -> None:
    settings.AUDIT_RETENTION_DAYS = 30
    now = timezone.now()
    old = [AuditEvent.objects.create(action="user.login", created_at=now - timedelta(days=31)) for _ in range(3)]
    recent = AuditEvent.objects.create(action="user.login", created_at=now - timedelta(days=29))
    assert audit_purge(now=now) == 3
    assert not AuditEvent.objects.filter(pk__in=[e.pk for e in old]).exists()
    assert AuditEvent.objects.filter(pk=recent.pk).exists()
    purge = AuditEvent.objects.get(action=AuditEvent.Action.AUDIT_PURGED)
    assert purge.details["deleted"] == 3
    assert purge.details["retention_days"] == 30
    # The gate is closed again afterwards.
    with pytest.raises(IntegrityError):
        _raw(f"DELETE FROM {TABLE} WHERE id = %s", [recent.pk])  # noqa: S608


def test_retention_zero_keeps_everything(settings) -> None:
    settings.AUDIT_RETENTION_DAYS = 0
    ancient = AuditEvent.objects.create(action="user.login", created_at=timezone.now() - timedelta(days=3650))
    assert audit_purge() == 0
    assert AuditEvent.objects.filter(pk=ancient.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_flush_empties_the_log_and_the_guard_stays() -> None:
    # Transactional tests end with a flush, which deletes row by row on SQLite.
    _event()
    call_command("flush", interactive=False, verbosity=0)
    assert not AuditEvent.objects.exists()
    event = _event()
    with pytest.raises(IntegrityError):
        _raw(f"DELETE FROM {TABLE} WHERE id = %s", [event.pk])  # noqa: S608
