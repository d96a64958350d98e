from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from assistant.accounts.models import ApiToken
from assistant.accounts.services import TokenRequestInvalid, token_create, token_revoke


class Command(BaseCommand):
    help = "Create, list or revoke personal API tokens."

    def add_arguments(self, parser: CommandParser) -> None:
        sub = parser.add_subparsers(dest="action", required=True)
        create = sub.add_parser("create", help="Issue a token; its plaintext is printed once.")
        create.add_argument("--user", required=True)
        create.add_argument("--scope", choices=ApiToken.Scope.values, default=ApiToken.Scope.READ)
        create.add_argument("--days", type=int, default=None, help="Lifetime in days (default API_TOKEN_DEFAULT_DAYS).")
        create.add_argument("--name", default="Command line")
        listing = sub.add_parser("list", help="A user's tokens (never their secrets).")
        listing.add_argument("--user", required=True)
        revoke = sub.add_parser("revoke", help="Revoke a token by its prefix (the part after 'ast_').")
        revoke.add_argument("prefix")

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "revoke":
            token = ApiToken.objects.filter(prefix=options["prefix"]).first()
            if token is None:
                raise CommandError(f"No token with prefix '{options['prefix']}'.")
            self.stdout.write("Revoked." if token_revoke(token=token) else "Already revoked.")
            return
        user = get_user_model().objects.filter(username=options["user"]).first()
        if user is None:
            raise CommandError(f"No user named '{options['user']}'.")
        if action == "list":
            for t in ApiToken.objects.filter(user=user):
                state = "revoked" if t.revoked_at else f"expires {t.expires_at:%Y-%m-%d}"
                self.stdout.write(f"{t.prefix}\t{t.scope}\t{state}\t{t.name}")
            return
        try:
            issued = token_create(user=user, name=options["name"], scope=options["scope"], days=options["days"])
        except TokenRequestInvalid as exc:
            raise CommandError(str(exc)) from exc
        # The bare token on stdout, so a script can capture it; the note on stderr.
        self.stdout.write(issued.plaintext)
        self.stderr.write(
            f"Token for {user} ({issued.token.scope}, expires {issued.token.expires_at:%Y-%m-%d}). Shown once."
        )
