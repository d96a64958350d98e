from __future__ import annotations

import os
from typing import Any

from django.core.management.base import BaseCommand

from assistant.accounts.services import admin_bootstrap


class Command(BaseCommand):
    help = "Create the first admin user (password from ASSISTANT_ADMIN_PASSWORD, else generated and printed once)."

    def handle(self, *args: Any, **options: Any) -> None:
        username = os.environ.get("ASSISTANT_ADMIN_USER", "admin")
        given = os.environ.get("ASSISTANT_ADMIN_PASSWORD", "")
        created, password = admin_bootstrap(username=username, password=given)
        if not created:
            self.stdout.write("An admin user already exists.")
        elif given:
            self.stdout.write(self.style.SUCCESS(f"Created admin user '{username}' with ASSISTANT_ADMIN_PASSWORD."))
        else:
            self.stdout.write(self.style.SUCCESS(f"Created admin user '{username}' with password: {password}"))
            self.stdout.write("This password is shown only once.")
