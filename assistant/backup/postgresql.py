"""PostgreSQL: ``pg_dump`` (custom format) from one snapshot, and a restore in one transaction.

The backup holds a repeatable-read transaction open, exports its snapshot and lets
``pg_dump`` read through it, so the dump, the counts and the list of originals in
the manifest all describe the same moment while the product keeps writing.

The restore drops the ``public`` schema and loads the dump in a single ``psql``
transaction, committed only once ``pg_restore`` has written the whole script: if
anything fails, the target is left as it was.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from django.db import connections

from assistant.backup.archive import BackupError

# Stops a restore that would wait on a running product's locks, instead of hanging.
_RESTORE_PREFIX = (
    b"BEGIN;\nSET LOCAL lock_timeout = '30s';\nDROP SCHEMA IF EXISTS public CASCADE;\nCREATE SCHEMA public;\n"
)


def _settings() -> dict[str, Any]:
    return connections["default"].settings_dict


def environment() -> dict[str, str]:
    """The client programs' connection settings, passed as libpq variables (no password on a command line)."""
    settings = _settings()
    env = dict(os.environ)
    for key, variable in (("HOST", "PGHOST"), ("PORT", "PGPORT"), ("USER", "PGUSER"), ("PASSWORD", "PGPASSWORD")):
        if settings.get(key):
            env[variable] = str(settings[key])
    env["PGDATABASE"] = str(settings["NAME"])
    options = settings.get("OPTIONS") or {}
    for option, variable in (("sslmode", "PGSSLMODE"), ("sslrootcert", "PGSSLROOTCERT")):
        if options.get(option):
            env[variable] = str(options[option])
    return env


def server_major() -> int:
    connection = connections["default"]
    connection.ensure_connection()
    return int(connection.pg_version) // 10000  # type: ignore[attr-defined]


def _major(version: str) -> int:
    found = re.search(r"(\d+)(?:\.\d+)?", version)
    return int(found.group(1)) if found else 0


def client(name: str, *, at_least: int) -> tuple[str, str]:
    """The path and version (``"pg_dump 15.20"``) of a PostgreSQL client program of major ``at_least`` or later.

    Debian keeps one set per major version under /usr/lib/postgresql: the server's
    own major is tried first, then PATH.
    """
    candidates = [f"/usr/lib/postgresql/{at_least}/bin/{name}", shutil.which(name) or ""]
    found = [c for c in candidates if c and os.access(c, os.X_OK)]
    if not found:
        raise BackupError(
            f"{name} was not found: install the PostgreSQL {at_least} client programs "
            f"(Debian: apt-get install postgresql-client-{at_least})"
        )
    path = found[0]
    output = subprocess.run([path, "--version"], capture_output=True, text=True, check=False).stdout  # noqa: S603
    version = output.split(")")[-1].strip() or output.strip()
    if _major(version) < at_least:
        raise BackupError(
            f"{path} is version {version} but PostgreSQL {at_least} is needed: "
            f"install postgresql-client-{at_least} (an older {name} cannot read a newer server or dump)"
        )
    return path, f"{name} {version}"


@contextmanager
def snapshot() -> Iterator[tuple[str, Any]]:
    """A read-only repeatable-read transaction on its own connection: (exported snapshot id, cursor)."""
    import psycopg

    settings = _settings()
    params = {
        "dbname": settings["NAME"],
        "user": settings.get("USER") or None,
        "password": settings.get("PASSWORD") or None,
        "host": settings.get("HOST") or None,
        "port": settings.get("PORT") or None,
    }
    options = {k: v for k, v in (settings.get("OPTIONS") or {}).items() if k in ("sslmode", "sslrootcert")}
    with psycopg.connect(**{k: v for k, v in params.items() if v}, **options) as conn:
        conn.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        conn.read_only = True
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_export_snapshot()")
            (snapshot_id,) = cursor.fetchone() or ("",)
            yield str(snapshot_id), cursor
        conn.rollback()


def dump(*, output: Path, snapshot_id: str) -> str:
    """Write the database as of ``snapshot_id`` to ``output`` (pg_dump's custom format). Returns the tool's version."""
    path, version = client("pg_dump", at_least=server_major())
    command = [
        path,
        "--format=custom",
        "--no-owner",
        "--no-privileges",
        f"--snapshot={snapshot_id}",
        "--file",
        str(output),
    ]
    result = subprocess.run(command, env=environment(), capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BackupError(f"pg_dump failed: {result.stderr.strip()}")
    return version


def check_dump(*, dump_file: Path, written_by: str) -> str:
    """The pg_restore that can read a dump ``written_by`` (``"pg_dump 15.20"``); refuses one that cannot."""
    path, _ = client("pg_restore", at_least=max(server_major(), _major(written_by.split(" ")[-1])))
    result = subprocess.run([path, "--list", str(dump_file)], capture_output=True, text=True, check=False)  # noqa: S603
    if result.returncode != 0:
        raise BackupError(f"pg_restore cannot read the archive's database dump: {result.stderr.strip()}")
    return path


def restore(*, dump_file: Path, written_by: str) -> None:
    """Replace the database's ``public`` schema with the dump, all in one transaction."""
    pg_restore = check_dump(dump_file=dump_file, written_by=written_by)
    psql, _ = client("psql", at_least=server_major())
    connections.close_all()
    with tempfile.TemporaryFile() as script_errors, tempfile.TemporaryFile() as loader_errors:
        script = subprocess.Popen(  # noqa: S603
            [pg_restore, "--no-owner", "--no-privileges", "--file", "-", str(dump_file)],
            stdout=subprocess.PIPE,
            stderr=script_errors,
        )
        loader = subprocess.Popen(  # noqa: S603
            [psql, "-X", "-q", "-v", "ON_ERROR_STOP=1", "--file", "-"],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=loader_errors,
            env=environment(),
        )
        if script.stdout is None or loader.stdin is None:  # for the type checker: both are pipes
            raise BackupError("could not start pg_restore and psql")
        try:
            loader.stdin.write(_RESTORE_PREFIX)
            shutil.copyfileobj(script.stdout, loader.stdin)
            if script.wait() == 0:
                loader.stdin.write(b"COMMIT;\n")  # only now: a script cut short is rolled back
            loader.stdin.close()
        except BrokenPipeError:
            script.kill()  # psql stopped on an error: its message follows
        script.stdout.close()
        script.wait()
        loader.wait()
        script_errors.seek(0)
        loader_errors.seek(0)
        script_error = script_errors.read().decode(errors="replace").strip()
        loader_error = loader_errors.read().decode(errors="replace").strip()
    if loader.returncode != 0:
        raise BackupError(f"loading the dump failed, the database is unchanged: {loader_error}")
    if script.returncode != 0:
        raise BackupError(f"pg_restore failed, the database is unchanged: {script_error}")
