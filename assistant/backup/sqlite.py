"""SQLite: copies through SQLite's online backup API, which is safe while the product writes.

A plain file copy of a database in WAL mode can miss committed pages still in the
``-wal`` file or catch a half-written page; the backup API copies a consistent
state, page by page, and restarts by itself if a writer changes it meanwhile.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from django.db import connections

from assistant.backup.archive import BackupError


def database_path() -> Path:
    return Path(connections["default"].settings_dict["NAME"])


def dump(*, output: Path) -> str:
    """Copy the live database to ``output``. Returns the library's version."""
    source = sqlite3.connect(database_path(), timeout=30)
    target = sqlite3.connect(output)
    try:
        source.backup(target, pages=1024)
    finally:
        target.close()
        source.close()
    return f"sqlite {sqlite3.sqlite_version}"


def check_copy(copy: Path) -> None:
    """Refuse a copy SQLite does not find whole."""
    try:
        connection = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
        try:
            result = connection.execute("PRAGMA integrity_check").fetchone()
        finally:
            connection.close()
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"the archive's database copy is not a SQLite database ({exc})") from exc
    if not result or result[0] != "ok":
        raise BackupError(f"the archive's database copy fails SQLite's integrity check ({result})")


def restore(*, copy: Path) -> None:
    """Replace the database's content with ``copy`` (in one step: readers see the old or the new)."""
    check_copy(copy)
    connections.close_all()
    path = database_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    source = sqlite3.connect(f"file:{copy}?mode=ro", uri=True)
    target = sqlite3.connect(path, timeout=30)
    try:
        source.backup(target)
    except sqlite3.Error as exc:
        raise BackupError(f"writing {path} failed: {exc}") from exc
    finally:
        target.close()
        source.close()
