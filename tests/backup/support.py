"""What both backup test modules check on a database they have put in place."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from django.db import IntegrityError, connection, connections, transaction

from assistant.accounts.selectors import read_scope
from assistant.audit import triggers
from assistant.audit.models import AuditEvent
from assistant.chat.retrieval import build_retriever
from ingest.models import Collection


def search(*, user: Any, collection: Collection, query: str, kind: str = "hybrid") -> str:
    """Every passage text ``user`` finds for ``query`` through the real scope and retriever, joined."""
    scope = read_scope(user=user, collections=[collection])
    return "\n".join(p.text for p in build_retriever(kind, scope=scope).retrieve(query, k=10))


def assert_append_only() -> None:
    """The audit log still refuses changes in the database itself, past the ORM."""
    assert triggers.installed(connection)
    event = AuditEvent.objects.order_by("pk").first()
    assert event is not None
    table = AuditEvent._meta.db_table
    for sql in (f"UPDATE {table} SET action = 'forged' WHERE id = %s", f"DELETE FROM {table} WHERE id = %s"):  # noqa: S608
        with pytest.raises(IntegrityError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(sql, [event.pk])
    assert AuditEvent.objects.get(pk=event.pk).action == event.action


def audit_rows() -> list[Any]:
    return list(AuditEvent.objects.order_by("pk").values())


def wipe_database() -> None:
    """Leave the test database with no tables at all: a fresh, empty database."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
        connections.close_all()
        return
    path = Path(connection.settings_dict["NAME"])
    connections.close_all()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
