"""Readiness: can this instance answer questions and take uploads right now?

``/healthz`` only says the process is alive; ``/readyz`` asks every part the product
depends on, each within ``READYZ_TIMEOUT_S``: the database, the Celery broker, the
language model servers (each one's state), the embedding server or the embedding
model's folder when one is configured, the index folder (it must exist and be
writable: every upload writes there; a full disk fails here, named), and where the
originals go (their folder writable, or their bucket answering). Index files
whose header and length disagree (truncated) are named in the index check's detail
without failing it: the next search rebuilds them.
With a read replica (``DATABASE_REPLICA_URL``) a ``replica`` part says how far behind it
is; a replica that does not answer is ``degraded``, never failing: searches read the
primary meanwhile (``assistant.replica``).
The checks run side by side, so the whole answer takes about the slowest one.
"""

from __future__ import annotations

import concurrent.futures
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from django.conf import settings
from django.db import connection


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    seconds: float
    # Working without this part, at a cost (the read replica: searches load the primary).
    degraded: bool = False


class Degraded(Exception):
    """A check's part is out, and the instance still works without it."""


def _database(timeout: float) -> str:
    try:
        with connection.cursor() as cursor:
            if connection.vendor == "postgresql":
                # Bound the probe itself, not just the wait for it.
                cursor.execute("SET statement_timeout = %s", [int(timeout * 1000)])
            cursor.execute("SELECT 1")
    finally:
        # The check runs in a worker thread: its connection must not outlive it.
        connection.close()
    return connection.vendor


def _broker(timeout: float) -> str:
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
        try:
            client.ping()
        finally:
            client.close()
        return "redis"
    if url.startswith("filesystem://"):
        _writable(Path(settings.BROKER_DIR) / "queue")
        return "filesystem"
    raise RuntimeError(f"no readiness check for the broker scheme {urlsplit(url).scheme!r}")


def _llm_models(url: str, timeout: float) -> str:
    import httpx

    headers = {"Authorization": f"Bearer {settings.LLM_API_KEY}"} if settings.LLM_API_KEY else {}
    # trust_env=False: the same rule as the LLM client, no proxy from the environment.
    response = httpx.get(f"{url.rstrip('/')}/models", headers=headers, timeout=timeout, trust_env=False)
    response.raise_for_status()
    models = [str(m.get("id")) for m in response.json().get("data", [])]
    return f"{url} serves {', '.join(models) or 'no model'}"


def _llm(timeout: float) -> str:
    if len(settings.LLM_BASE_URLS) < 2:
        return _llm_models(settings.LLM_BASE_URL, timeout)
    # Several servers: each is probed, and the probe takes it out of this process's pool
    # or brings it back (assistant/chat/llm_pool.py). Ready while one of them answers.
    from assistant.chat.llm_pool import settings_pool

    pool = settings_pool()
    parts = []
    for state in pool.states():
        try:
            _llm_models(state.url, timeout)
        except Exception as exc:
            pool.mark_down(state.url, f"{type(exc).__name__}: {exc}")
        else:
            pool.mark_up(state.url)
    for state in pool.states():
        if state.up:
            parts.append(f"{state.url}: up, {state.in_flight} answers in flight")
        else:
            parts.append(f"{state.url}: out ({state.error[:120]})")
    if not any(state.up for state in pool.states()):
        raise RuntimeError("no language model server answers: " + "; ".join(parts))
    return "; ".join(parts)


def _embedding(timeout: float) -> str:
    if settings.EMBEDDING_BASE_URL:
        # A server embeds: it must answer one text with a vector of the model's dimension.
        from ingest.embedding import server_backend

        return str(server_backend().health())
    # The embedding model runs inside the workers and the web process (no server):
    # what can be missing is a configured model folder.
    path = settings.EMBEDDING_MODEL_PATH
    if not path:
        return "packaged model, in-process"
    if not Path(path).is_dir():
        raise RuntimeError(f"EMBEDDING_MODEL_PATH {path} is not a folder")
    return f"{path}, in-process"


def _writable(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=directory, prefix=".readyz-", delete=True) as probe:
        probe.write(b"ok")
        probe.flush()
        os.fsync(probe.fileno())


def _indexes(timeout: float) -> str:
    directory = Path(settings.INDEX_DIR)
    _writable(directory)
    from ingest.indexes import indexes_damaged

    # A damaged file is named but does not fail the check: the indexes are caches, the
    # next search of that collection rebuilds them from the database, and a 503 would
    # take every instance sharing the volume out of service for something they heal.
    damaged = indexes_damaged()
    if damaged:
        return f"{directory}; damaged, rebuilt from the database by the next search: {'; '.join(damaged)}"
    return str(directory)


def _replica(timeout: float) -> str:
    from django.db import connections

    from assistant import replica

    try:
        with connections[replica.REPLICA].cursor() as cursor:
            cursor.execute("SET statement_timeout = %s", [int(timeout * 1000)])
            cursor.execute("SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn() - '0/0'::pg_lsn")
            recovering, replayed = cursor.fetchone()
    except Exception as exc:
        raise Degraded(f"not answering, searches read the primary: {type(exc).__name__}: {exc}") from exc
    finally:
        connections[replica.REPLICA].close()
    # It answers again: this process's searches may use it from now on.
    replica.replica_reset()
    if not recovering:
        return "answering, not a standby (reads what the primary has only if it is the primary)"
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn")
        (current,) = cursor.fetchone()
    connection.close()
    return f"streaming, {max(0, int(current) - int(replayed or 0))} bytes of WAL behind the primary"


def _originals(timeout: float) -> str:
    from ingest.originals import originals_check

    return originals_check()


CHECKS: dict[str, Callable[[float], str]] = {
    "database": _database,
    "broker": _broker,
    "llm": _llm,
    "embedding": _embedding,
    "indexes": _indexes,
    "originals": _originals,
}


def _run(name: str, check: Callable[[float], str], timeout: float) -> Check:
    started = time.monotonic()
    degraded = False
    try:
        detail = check(timeout)
        ok = True
    except Degraded as exc:
        detail, ok, degraded = str(exc)[:300], True, True
    except Exception as exc:  # every failure is a "not ready", named, never a 500
        detail, ok = f"{type(exc).__name__}: {exc}"[:300], False
    return Check(name=name, ok=ok, detail=detail, seconds=round(time.monotonic() - started, 4), degraded=degraded)


def readiness(*, timeout: float | None = None) -> list[Check]:
    """Every part's state, in ``CHECKS`` order; a check past the timeout is reported as failed."""
    from assistant import replica

    timeout = settings.READYZ_TIMEOUT_S if timeout is None else timeout
    checks = {**CHECKS, "replica": _replica} if replica.configured() else CHECKS
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readyz")
    try:
        futures = {name: pool.submit(_run, name, check, timeout) for name, check in checks.items()}
        deadline = time.monotonic() + timeout + 0.5
        results = []
        for name, future in futures.items():
            try:
                results.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
            except concurrent.futures.TimeoutError:
                results.append(Check(name=name, ok=False, detail=f"no answer within {timeout:g} s", seconds=timeout))
        return results
    finally:
        # A stuck check is left to finish on its own thread; the answer does not wait for it.
        pool.shutdown(wait=False, cancel_futures=True)
