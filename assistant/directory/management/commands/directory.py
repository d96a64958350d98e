from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = "The company directory: sync LDAP users and groups now; create, list or revoke SCIM tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        sub.add_parser("sync", help="Update LDAP users' groups; deactivate those gone from the directory.")
        create = sub.add_parser("scim-token", help="Issue a bearer token for a SCIM client (printed once).")
        create.add_argument("--name", default="SCIM client")
        sub.add_parser("scim-tokens", help="List SCIM tokens (never their secrets).")
        revoke = sub.add_parser("scim-token-revoke", help="Revoke a SCIM token by its prefix.")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        from assistant.directory.scim import tokens

        action = options["action"]
        if action == "sync":
            self._sync()
        elif action == "scim-token":
            plaintext = tokens.scim_token_create(name=options["name"]).plaintext
            self.stdout.write(plaintext)
            self.stderr.write("SCIM bearer token: shown once. Give it to the identity provider's provisioning.")
        elif action == "scim-tokens":
            for token in tokens.ScimToken.objects.all():
                state = "revoked" if token.revoked_at else "active"
                self.stdout.write(f"{token.prefix}\t{state}\t{token.name}")
        else:
            found = tokens.ScimToken.objects.filter(prefix=options["prefix"]).first()
            if found is None:
                raise CommandError(f"No SCIM token with prefix '{options['prefix']}'.")
            self.stdout.write("Revoked." if tokens.scim_token_revoke(token=found) else "Already revoked.")

    def _sync(self) -> None:
        from assistant.directory.ldapclient import DirectoryUnavailable
        from assistant.directory.services import directory_sync

        if not settings.LDAP_ENABLED:
            raise CommandError("The directory is off: set LDAP_SERVER_URI (docs/directory.md).")
        try:
            report = directory_sync()
        except DirectoryUnavailable as exc:
            raise CommandError(f"The directory did not answer; nothing was changed: {exc}") from exc
        self.stdout.write(
            f"Checked {report.checked} directory user(s): {len(report.updated)} with changed groups "
            f"(+{report.memberships_added}/-{report.memberships_removed}), "
            f"{len(report.deprovisioned)} deactivated ({', '.join(report.deprovisioned) or 'none'})."
        )
