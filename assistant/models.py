"""The project app's one table: how far each user's last write reached (``assistant.replica``)."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class ReadFence(models.Model):
    """The primary's WAL position after ``user``'s last write that changes what they may find.

    Written only when a read replica is configured; a search of ``user`` reads the
    replica once it has replayed this far (``assistant.replica``).
    """

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, primary_key=True, related_name="+")
    # ``pg_lsn - '0/0'``: the byte position in the WAL, comparable as a number.
    lsn = models.BigIntegerField()

    def __str__(self) -> str:
        return f"{self.user_id}@{self.lsn}"
