"""``manage.py flush`` with the audit log's gate open.

Flushing empties every table on purpose (the test suite does it between
transactional tests; an operator does it to start over). On SQLite it deletes row
by row, which the audit log's trigger would refuse; the gate lets this one
deliberate wipe through, in the same transaction as the flush.
"""

from __future__ import annotations

from typing import Any

from django.core.management.commands import flush

from assistant.audit.gate import audit_gate


class Command(flush.Command):
    def handle(self, **options: Any) -> None:
        with audit_gate(using=options["database"]):
            super().handle(**options)
