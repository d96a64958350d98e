"""``manage.py mcp --as USER``: the Model Context Protocol server over stdio, for local clients.

The client (an IDE, a desktop chat client) starts this command and talks to it over
stdin and stdout. It acts with exactly that user's permissions, as the HTTP endpoint
does with a token; every tool call is audited with the transport ``stdio``.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = "Serve the Model Context Protocol over stdio with one user's permissions (docs/mcp.md)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--as", dest="as_user", required=True, metavar="USER", help="The user to act as.")

    def handle(self, *args: Any, **options: Any) -> None:
        from assistant.mcp.calls import Caller  # deferred: the SDK loads only for this command
        from assistant.mcp.server import build_server

        user = get_user_model().objects.filter(username=options["as_user"]).first()
        if user is None or not user.is_active:
            raise CommandError(f"No active user named '{options['as_user']}'.")
        # stdout carries the protocol: nothing else may be written to it.
        build_server(local=Caller(user=user, transport="stdio")).run("stdio")
