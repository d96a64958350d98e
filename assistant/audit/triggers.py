"""Database triggers that make ``audit_auditevent`` append-only (see ``gate.py``).

Installed by migration 0001. Keep in mind on SQLite: a migration that rebuilds the
table (Django does so for most field changes there) drops its triggers with the
old table, so any later migration that alters ``AuditEvent`` must end with
``migrations.RunPython(triggers.install, triggers.uninstall)`` again;
``tests/audit/test_append_only.py`` fails if the triggers are missing.

The one UPDATE both allow is setting ``actor_id`` to NULL with every other column
unchanged: that is what deleting a user does to the rows naming them (the
username snapshot keeps saying who it was).
"""

from __future__ import annotations

from typing import Any

from assistant.audit.gate import PG_SETTING, SQLITE_GATE_TABLE

TABLE = "audit_auditevent"
# Every column but actor_id: an UPDATE that changes any of them is refused.
_UNCHANGED = (
    "id", "created_at", "action", "actor_username", "collection_id", "collection_name",
    "target_type", "target_id", "details", "ip",
)  # fmt: skip

POSTGRESQL_INSTALL = [
    f"""
CREATE OR REPLACE FUNCTION audit_event_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF current_setting('{PG_SETTING}', true) = 'on' THEN
        IF TG_OP = 'DELETE' THEN
            RETURN OLD;
        END IF;
        RETURN NEW;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.actor_id IS NULL
       AND (to_jsonb(NEW) - 'actor_id') = (to_jsonb(OLD) - 'actor_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION '{TABLE} is append-only: % refused', TG_OP USING ERRCODE = 'restrict_violation';
END;
$$
""",
    f"""
CREATE TRIGGER audit_event_append_only BEFORE UPDATE OR DELETE ON {TABLE}
FOR EACH ROW EXECUTE FUNCTION audit_event_append_only()
""",
]
POSTGRESQL_UNINSTALL = [
    f"DROP TRIGGER IF EXISTS audit_event_append_only ON {TABLE}",
    "DROP FUNCTION IF EXISTS audit_event_append_only()",
]

# Identifiers below are this module's constants; nothing from outside enters the SQL.
_GATE_CLOSED = f"(SELECT open FROM {SQLITE_GATE_TABLE} WHERE id = 1) IS NOT 1"  # noqa: S608
_ONLY_ACTOR_FORGOTTEN = " AND ".join(["NEW.actor_id IS NULL", *(f"NEW.{c} IS OLD.{c}" for c in _UNCHANGED)])

SQLITE_INSTALL = [
    # Not a Django model on purpose: ``flush`` empties every model's table, and the
    # gate's row must survive it.
    f"CREATE TABLE IF NOT EXISTS {SQLITE_GATE_TABLE} (id INTEGER PRIMARY KEY CHECK (id = 1), open INTEGER NOT NULL)",
    f"INSERT OR IGNORE INTO {SQLITE_GATE_TABLE} (id, open) VALUES (1, 0)",  # noqa: S608
    f"""
CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON {TABLE}
WHEN {_GATE_CLOSED}
BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: DELETE refused'); END
""",
    f"""
CREATE TRIGGER IF NOT EXISTS audit_event_no_update BEFORE UPDATE ON {TABLE}
WHEN {_GATE_CLOSED} AND NOT ({_ONLY_ACTOR_FORGOTTEN})
BEGIN SELECT RAISE(ABORT, '{TABLE} is append-only: UPDATE refused'); END
""",
]
SQLITE_UNINSTALL = [
    "DROP TRIGGER IF EXISTS audit_event_no_delete",
    "DROP TRIGGER IF EXISTS audit_event_no_update",
]


def install(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    statements = {"postgresql": POSTGRESQL_INSTALL, "sqlite": SQLITE_INSTALL}.get(vendor, [])
    for sql in statements:
        schema_editor.execute(sql, params=None)  # the SQL holds a literal %


def uninstall(apps: Any, schema_editor: Any) -> None:
    vendor = schema_editor.connection.vendor
    statements = {"postgresql": POSTGRESQL_UNINSTALL, "sqlite": SQLITE_UNINSTALL}.get(vendor, [])
    for sql in statements:
        schema_editor.execute(sql, params=None)  # the SQL holds a literal %


def installed(connection: Any) -> bool:
    """Whether the database behind ``connection`` carries every append-only trigger (a restore checks this)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT count(*) FROM pg_trigger WHERE tgrelid = %s::regclass AND tgname = 'audit_event_append_only'",
                [TABLE],
            )
            return bool(cursor.fetchone()[0])
        if connection.vendor == "sqlite":
            cursor.execute("SELECT count(*) FROM sqlite_master WHERE type = 'trigger' AND tbl_name = %s", [TABLE])
            return int(cursor.fetchone()[0]) == 2
    return True
