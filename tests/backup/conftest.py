from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.core.management import call_command
from django.db import connection


@pytest.fixture(autouse=True)
def _schema_back_after_a_failure(django_db_setup) -> Iterator[None]:
    """A test that failed between wiping and restoring must not leave later tests without tables."""
    yield
    if "django_migrations" not in connection.introspection.table_names():
        call_command("migrate", interactive=False, verbosity=0)
