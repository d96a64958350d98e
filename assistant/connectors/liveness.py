"""How a connector's run shows it is alive, and how a run nobody is doing any more is taken up again.

A run touches its connector's heartbeat from a side thread (``heartbeat``); the beat
task ``connectors_tick`` calls ``connectors_sweep``, which sends again the runs whose
heartbeat stopped (a killed worker) and queues the connectors whose schedule is due.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from functools import partial

from django import db
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from assistant.connectors.models import Connector

logger = logging.getLogger(__name__)

State = Connector.State


def connector_enqueue(connector_id: int, *, task_id: str | None = None) -> None:
    """Send the connector's run to the workers (as the task ``task_id`` when the caller chose one)."""
    from assistant.connectors import tasks

    tasks.sync_connector.apply_async(args=(connector_id,), task_id=task_id)


@contextmanager
def heartbeat(connector_id: int) -> Iterator[None]:
    """Touch the connector's heartbeat from a side thread while the run works.

    A side thread, so that one slow item (a large file on a slow mount) does not make
    a live run look stalled; a killed worker's heartbeat stops with it.
    """
    stop = threading.Event()

    def beat() -> None:
        try:
            while not stop.wait(settings.CONNECTOR_HEARTBEAT_S):
                Connector.objects.filter(pk=connector_id, state=State.RUNNING).update(heartbeat_at=timezone.now())
        except Exception:  # a missed beat is not worth failing the run for
            logger.warning("Heartbeat for connector %s stopped", connector_id, exc_info=True)
        finally:
            db.connection.close()  # this thread's own connection

    thread = threading.Thread(target=beat, name=f"connector-heartbeat-{connector_id}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def connectors_sweep() -> dict[str, int]:
    """Send again the runs nobody is doing any more, then the connectors whose time has come.

    * running with a stopped heartbeat (a killed worker), or queued for as long
      (a lost message): sent again; the run resumes where the last one stopped.
      After ``CONNECTOR_MAX_ATTEMPTS`` interrupted runs in a row the connector
      stops with the reason, until its next scheduled time;
    * idle, not paused, scheduled, and due: queued.
    """
    now = timezone.now()
    stalled_before = now - timedelta(seconds=settings.CONNECTOR_STALL_AFTER_S)
    resent = gave_up = due = 0
    stalled = Connector.objects.filter(state__in=[State.RUNNING, State.QUEUED]).filter(
        db.models.Q(heartbeat_at__lt=stalled_before) | db.models.Q(heartbeat_at=None)
    )
    for connector in stalled:
        if connector.attempts >= settings.CONNECTOR_MAX_ATTEMPTS:
            reason = (
                f"The sync was interrupted {connector.attempts} times without finishing; stopped until its next run."
            )
            Connector.objects.filter(pk=connector.pk).update(
                state=State.IDLE, heartbeat_at=None, finished_at=now, attempts=0, last_error=reason
            )
            gave_up += 1
            continue
        if Connector.objects.filter(pk=connector.pk, state=connector.state, heartbeat_at=connector.heartbeat_at).update(
            state=State.QUEUED, heartbeat_at=now
        ):
            logger.warning("Connector %s stopped answering; its sync is sent again", connector.pk)
            transaction.on_commit(partial(connector_enqueue, connector.pk))
            resent += 1
    for connector in Connector.objects.filter(state=State.IDLE, paused=False, every_minutes__gt=0):
        last = connector.finished_at or connector.started_at
        if last is not None and last + timedelta(minutes=connector.every_minutes) > now:
            continue
        if Connector.objects.filter(pk=connector.pk, state=State.IDLE).update(state=State.QUEUED, heartbeat_at=now):
            transaction.on_commit(partial(connector_enqueue, connector.pk))
            due += 1
    return {"resent": resent, "gave_up": gave_up, "due": due}
