"""Read replicas: searches read a PostgreSQL streaming replica, everything else the primary.

With ``DATABASE_REPLICA_URL`` set, ``settings.DATABASES`` has a ``replica`` alias and
``ReplicaRouter`` is installed. The router sends every write, every migration and every
read outside a search to the primary (``default``); only a read made inside
``replica_read`` (the retrievers' chunk, document and vector reads) goes to the replica.
Unset, none of this is installed and every query goes where it always went.

The rules (docs/scale.md, "Read replicas"):

* **Who may see what is decided on the primary.** The search scope (readable
  collections, documents restricted away from the asker) is read before the search,
  outside ``replica_read``, so a revoke or a restriction holds from the next question
  however far the replica lags. The replica only says what there is to find; the
  documents of what it found are checked against the primary (still there, ready)
  before anything is shown, so a document deleted a moment ago is never served either.
* **Read-your-writes.** After a user's write that changes what they may find (an upload
  or new version, a restriction, a delete, and the worker finishing one of their
  uploads), the primary's WAL position is kept for that user in ``ReadFence`` on the
  primary (the larger of the old and new one, in one statement, so racing writers
  cannot move it back). A search of that user reads the replica only once the replica
  has replayed up to that position (``pg_last_wal_replay_lsn()``), else the primary.
  Everyone else reads the replica as it is: another user's upload reaches them after
  the replication delay.
* **A replica that fails is left alone for a while.** A search whose replica query
  fails (down, unreachable, refusing) is run again on the primary, with a warning in
  the log; for ``DATABASE_REPLICA_RETRY_S`` this process sends searches to the primary
  without trying. ``/readyz`` then shows the replica ``degraded``: still ready, since
  every search has the primary to fall back on.
* A search inside a transaction on the primary reads the primary (it must see its own
  uncommitted rows).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from contextvars import ContextVar
from typing import Any, TypeVar

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections, transaction

logger = logging.getLogger(__name__)

PRIMARY = DEFAULT_DB_ALIAS
REPLICA = "replica"

T = TypeVar("T")

# The alias reads go to inside ``replica_read`` (None: the primary, Django's default).
_reading_from: ContextVar[str | None] = ContextVar("replica_reading_from", default=None)

_state_lock = threading.Lock()
_down_until = 0.0
_last_error = ""


def configured() -> bool:
    """Whether a replica is configured (``DATABASE_REPLICA_URL``)."""
    return REPLICA in connections.settings


class ReplicaRouter:
    """Writes and migrations on the primary; reads where ``replica_read`` points them (the primary outside it)."""

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return _reading_from.get() or PRIMARY

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return PRIMARY

    def allow_relation(self, obj1: Any, obj2: Any, **hints: Any) -> bool:
        return True  # the same database, one copy behind the other

    def allow_migrate(self, db: str, app_label: str, **hints: Any) -> bool:
        return db == PRIMARY


def reading_alias() -> str:
    """The alias a read made now goes to: raw SQL of the read path (pgvector) asks here."""
    return _reading_from.get() or PRIMARY


@contextmanager
def _reads_on(alias: str) -> Iterator[None]:
    token = _reading_from.set(alias)
    try:
        yield
    finally:
        _reading_from.reset(token)


@contextmanager
def primary_reads() -> Iterator[None]:
    """Reads inside go to the primary, even within ``replica_read``: for reads that write what they read.

    An index rebuilt from the replica's rows would keep what the replica lacked.
    """
    with _reads_on(PRIMARY):
        yield


def _lsn(alias: str, sql: str, params: Iterable[Any] = ()) -> int | None:
    with connections[alias].cursor() as cursor:
        cursor.execute(sql, list(params))
        row = cursor.fetchone()
    return None if row is None or row[0] is None else int(row[0])


def fence_lsn(user_id: int) -> int | None:
    """The WAL position ``user_id``'s last write reached on the primary (None: none remembered)."""
    return _lsn(PRIMARY, "SELECT lsn FROM assistant_readfence WHERE user_id = %s", [user_id])


def replayed_lsn() -> int | None:
    """How far the replica has replayed the primary's WAL (None: it is not in recovery, a primary itself)."""
    return _lsn(REPLICA, "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn")


def _replica_down() -> bool:
    return time.monotonic() < _down_until


def _mark_down(exc: BaseException) -> None:
    global _down_until, _last_error
    with _state_lock:
        _down_until = time.monotonic() + settings.DATABASE_REPLICA_RETRY_S
        _last_error = f"{type(exc).__name__}: {exc}".strip()[:300]
    with suppress(DatabaseError):
        connections[REPLICA].close()
    logger.warning(
        "Read replica failed, searches read the primary for %g s: %s", settings.DATABASE_REPLICA_RETRY_S, _last_error
    )


def replica_state() -> tuple[bool, str]:
    """(up, last error): down while this process is leaving the replica alone after a failure."""
    return not _replica_down(), _last_error


def replica_reset() -> None:
    """Forget a failure now (tests, and ``/readyz`` once the replica answers again)."""
    global _down_until
    with _state_lock:
        _down_until = 0.0


def read_alias(*, user_id: int | None) -> str:
    """Where a search of ``user_id`` reads (``None``: an operator at the shell, nothing remembered)."""
    if not configured() or _replica_down() or connections[PRIMARY].in_atomic_block:
        return PRIMARY
    fence = fence_lsn(user_id) if user_id is not None else None
    if fence is None:
        return REPLICA
    try:
        replayed = replayed_lsn()
    except (OperationalError, InterfaceError) as exc:
        _mark_down(exc)
        return PRIMARY
    if replayed is not None and replayed < fence:
        return PRIMARY
    return REPLICA


def replica_read(read: Callable[[], T], *, user_id: int | None) -> T:
    """``read()`` with its queries on the replica when the rules allow it, else on the primary.

    ``read`` must only read: when the replica fails half-way it is run again on the primary.
    """
    if read_alias(user_id=user_id) == PRIMARY:
        return read()
    try:
        with _reads_on(REPLICA):
            return read()
    except (OperationalError, InterfaceError) as exc:
        # A lost or refused connection, or a query the standby cancelled (a conflict
        # with recovery): the same read on the primary.
        _mark_down(exc)
    return read()


def replica_release() -> None:
    """Close this thread's replica connection (while an answer streams, say), if there is one."""
    if configured():
        connections[REPLICA].close()


def fence_after_commit(*, user_ids: Iterable[int | None]) -> None:
    """Remember, once this transaction commits, how far the primary's WAL is, for each of ``user_ids``.

    Their next searches read the primary until the replica has replayed this far.
    Nothing happens without a replica.
    """
    wanted = sorted({u for u in user_ids if u is not None})
    if not wanted or not configured():
        return
    transaction.on_commit(lambda: _fence(wanted), using=PRIMARY)


def _fence(user_ids: list[int]) -> None:
    try:
        with connections[PRIMARY].cursor() as cursor:
            # The insert position, not the flush position: it is past every committed
            # record, whatever ``synchronous_commit`` says.
            cursor.execute(
                "INSERT INTO assistant_readfence (user_id, lsn)"
                " SELECT u, pg_current_wal_insert_lsn() - '0/0'::pg_lsn FROM unnest(%s::bigint[]) AS u"
                " ON CONFLICT (user_id) DO UPDATE SET lsn = GREATEST(assistant_readfence.lsn, EXCLUDED.lsn)",
                [user_ids],
            )
    except DatabaseError:
        # The write itself is committed; without a fence the writer may see the replica's
        # older copy for the length of the replication delay.
        logger.warning("Could not remember the write position for users %s", user_ids, exc_info=True)
