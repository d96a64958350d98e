from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _vectors_setup(sender: AppConfig, using: str = "default", **kwargs: Any) -> None:
    """With ``VECTOR_STORE=pgvector``, every ``migrate`` (and test database) gets the vector table too.

    Nothing happens otherwise: migrations stay runnable on SQLite and on a PostgreSQL
    without pgvector (``ingest.pgvector_store``'s docstring says why).
    """
    from django.conf import settings

    if settings.VECTOR_STORE != "pgvector" or using != "default":
        return
    from ingest.pgvector_store import pgvector_setup

    pgvector_setup()


class IngestConfig(AppConfig):
    name = "ingest"
    verbose_name = "Collections and documents"

    def ready(self) -> None:
        post_migrate.connect(_vectors_setup, sender=self, dispatch_uid="ingest-vectors-setup")
