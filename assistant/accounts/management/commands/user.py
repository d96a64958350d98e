"""``manage.py user add NAME [--group GROUP]... [--password PASSWORD] [--email EMAIL]``"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from assistant.accounts.services import user_add


class Command(BaseCommand):
    help = "Manage users from the shell."

    def add_arguments(self, parser: Any) -> None:
        actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        add = actions.add_parser(
            "add", help="Create a user (or find the existing one) and add them to groups, created if missing."
        )
        add.add_argument("name")
        add.add_argument("--group", dest="groups", action="append", default=[], metavar="GROUP")
        add.add_argument("--password", default="", help="Without one, a new user cannot sign in until it is set.")
        add.add_argument("--email", default="")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            done = user_add(
                username=options["name"],
                groups=options["groups"],
                password=options["password"],
                email=options["email"],
            )
        except ValidationError as exc:
            raise CommandError("Password refused: " + " ".join(exc.messages)) from exc
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        name = done.user.username
        if done.created:
            note = "" if done.password_set else f" (no password yet: `manage.py changepassword {name}`)"
            self.stdout.write(f"Created user '{name}'{note}.")
        else:
            self.stdout.write(f"User '{name}' already exists." + (" Password changed." if done.password_set else ""))
        for group in done.groups_created:
            self.stdout.write(f"Created group '{group}'.")
        for group in done.groups_added:
            self.stdout.write(f"Added '{name}' to group '{group}'.")
        if not done.created and not done.groups_added and not done.password_set:
            self.stdout.write("Nothing changed.")
