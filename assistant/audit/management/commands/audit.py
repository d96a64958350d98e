"""``manage.py audit export|purge|grant|revoke|auditors``: the audit log from a shell.

manage.py audit export --format jsonl --since 2026-01-01 --action question.answered > audit.jsonl
manage.py audit purge            # apply AUDIT_RETENTION_DAYS now (the worker does it daily)
manage.py audit grant (--user USER | --group GROUP)    # the auditor role: read and export the log
manage.py audit revoke (--user USER | --group GROUP)
manage.py audit auditors         # who holds the role, and how
"""

from __future__ import annotations

import sys
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from assistant.accounts.management.grantees import grantee_describe, grantee_from_options
from assistant.audit import auditors, services
from assistant.audit.models import AuditEvent
from assistant.audit.selectors import AuditFilter, audit_events


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"Not a date (YYYY-MM-DD): {value!r}") from exc


class Command(BaseCommand):
    help = (
        "Export the audit log (CSV or JSON Lines), purge it by the retention period, "
        "or grant, revoke and list the auditor role that reads it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="subcommand", required=True)
        export = sub.add_parser("export", help="write events to standard output (or --output), oldest first")
        export.add_argument("--format", choices=services.EXPORT_FORMATS, default="jsonl")
        export.add_argument("--since", help="from this date (YYYY-MM-DD), inclusive")
        export.add_argument("--until", help="to this date (YYYY-MM-DD), inclusive")
        export.add_argument(
            "--action", action="append", default=[], choices=AuditEvent.Action.values, help="repeat for several"
        )
        export.add_argument("--user", default="", help="only events by this user name")
        export.add_argument("--collection", default="", help="only events about this collection (name or id)")
        export.add_argument("--output", help="a file to write instead of standard output")
        purge = sub.add_parser("purge", help="delete events older than AUDIT_RETENTION_DAYS")
        purge.add_argument("--days", type=int, help="use this retention period instead of the setting")
        grant = sub.add_parser("grant", help="give a user or a group the auditor role (read and export the log)")
        revoke = sub.add_parser("revoke", help="take the auditor role from a user or a group")
        for action in (grant, revoke):
            who = action.add_mutually_exclusive_group(required=True)
            who.add_argument("--user")
            who.add_argument("--group")
        sub.add_parser("auditors", help="list who holds the auditor role")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["subcommand"] in ("grant", "revoke", "auditors"):
            getattr(self, f"_{options['subcommand']}")(options)
            return
        if options["subcommand"] == "purge":
            deleted = services.audit_purge(older_than_days=options["days"])
            self.stdout.write(f"Deleted {deleted} audit events.")
            return
        filters = AuditFilter(
            actions=tuple(options["action"]),
            username=options["user"],
            collection=options["collection"],
            since=_date(options["since"]) if options["since"] else None,
            until=_date(options["until"]) if options["until"] else None,
        )
        fmt = options["format"]
        services.audit_record(
            action=AuditEvent.Action.AUDIT_EXPORTED,
            details={"format": fmt, "filters": filters.as_dict(), "via": "manage.py audit export"},
        )
        lines = services.audit_export_lines(queryset=audit_events(filters=filters), fmt=fmt)
        if options["output"]:
            with open(options["output"], "w", encoding="utf-8", newline="") as out:
                out.writelines(lines)
        else:
            # Straight to the underlying stream: BaseCommand's wrapper would add newlines.
            stream = getattr(self.stdout, "_out", sys.stdout)
            stream.writelines(lines)
            stream.flush()

    def _grant(self, options: dict[str, Any]) -> None:
        holder = grantee_from_options(options)
        if auditors.auditor_grant(**holder):
            self.stdout.write(f"Granted the auditor role to {grantee_describe(holder)}.")
        else:
            self.stdout.write(
                f"{grantee_describe(holder).capitalize()} already holds the auditor role. Nothing changed."
            )

    def _revoke(self, options: dict[str, Any]) -> None:
        holder = grantee_from_options(options)
        if not auditors.auditor_revoke(**holder):
            self.stdout.write(
                f"{grantee_describe(holder).capitalize()} does not hold the auditor role. Nothing changed."
            )
            return
        self.stdout.write(f"Revoked the auditor role from {grantee_describe(holder)}.")
        if "user" in holder:
            remaining = auditors.auditor_sources(user=holder["user"])
            if remaining:
                self.stdout.write(f"They still read the audit log as: {', '.join(remaining)}.")

    def _auditors(self, options: dict[str, Any]) -> None:
        held = auditors.auditors()
        rows = [f"user {name} (granted)" for name in held.users]
        rows += [f"group {name}" for name in held.groups]
        rows += [f"user {name} (superuser)" for name in held.superusers]
        self.stdout.write("\n".join(rows) if rows else "Nobody holds the auditor role.")
