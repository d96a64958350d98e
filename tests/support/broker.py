"""What waits on the pass's broker (Redis, or the embedded file-system broker), read directly."""

from __future__ import annotations

from typing import Any

from assistant import celery_app


def drain(queue: str) -> list[Any]:
    """Every message waiting on ``queue``, taken off it."""
    taken = []
    with celery_app.connection_for_read() as connection:
        channel: Any = connection.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            taken.append(message)
    return taken
