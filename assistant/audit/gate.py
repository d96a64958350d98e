"""The one way past the audit log's append-only guard.

Audit rows are never changed or removed, at two levels: the ORM refuses (see
``models``) and so does the database, with triggers installed by migration 0001.
Two services must get through: the retention purge and a user's deletion policy.
They do so inside ``audit_gate()``, which opens the gate for the current
transaction only:

* PostgreSQL: a transaction-local setting (``set_config(..., is_local => true)``)
  that the trigger reads; it vanishes with the transaction, so a gate can never be
  left open on a pooled connection;
* SQLite: a one-row control table, ``audit_gate``, set and reset inside the same
  transaction. SQLite admits one writer at a time, so no other connection can write
  while the gate is open, and readers only ever see it closed (committed state).

Neither stops someone who owns the database (they can drop a trigger); the guard is
against the product itself, its admin screens and anything talking SQL through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import DEFAULT_DB_ALIAS, connections, transaction

PG_SETTING = "assistant.audit_purge"
SQLITE_GATE_TABLE = "audit_gate"

_open: ContextVar[bool] = ContextVar("audit_gate_open", default=False)


def gate_is_open() -> bool:
    """True inside ``audit_gate()``: the ORM-level guard lets changes through."""
    return _open.get()


def _set_gate(using: str, is_open: bool) -> None:
    connection = connections[using]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT set_config(%s, %s, true)", [PG_SETTING, "on" if is_open else "off"])
        elif connection.vendor == "sqlite":
            cursor.execute(f"UPDATE {SQLITE_GATE_TABLE} SET open = %s WHERE id = 1", [1 if is_open else 0])  # noqa: S608


@contextmanager
def audit_gate(using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Let the enclosed statements change or delete audit rows, in one transaction.

    On an error the transaction (or savepoint) rolls back, taking the open gate
    with it; on success the gate is closed again before commit, so even the rest
    of an enclosing transaction runs with it closed.
    """
    with transaction.atomic(using=using):
        token = _open.set(True)
        try:
            _set_gate(using, True)
            yield
            _set_gate(using, False)
        finally:
            _open.reset(token)
