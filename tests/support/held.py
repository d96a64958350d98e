"""Which database connections a process holds right now, seen from outside it.

On PostgreSQL: the server's own list of sessions (``pg_stat_activity``) for one
database, kept to those whose client port is a socket the process has open (its
``/proc/<pid>/fd`` links matched to ``/proc/<pid>/net/tcp``). On SQLite: the
database's files the process has open. Linux only, like the machines tests run on.
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse


def _socket_inodes(pid: int) -> set[str]:
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue  # closed meanwhile
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    return inodes


def tcp_ports(pid: int) -> set[int]:
    """Local TCP ports of the sockets ``pid`` has open (IPv4 and IPv6)."""
    inodes = _socket_inodes(pid)
    ports = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) > 9 and fields[9] in inodes:
                ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def postgres_sessions(pid: int, database_url: str) -> list[tuple[int, str]]:
    """(client port, state) of each session of ``pid`` on the URL's database."""
    import psycopg

    ports = tcp_ports(pid)
    if not ports:
        return []
    parsed = urlparse(database_url)
    name = parsed.path.lstrip("/")
    with psycopg.connect(parsed._replace(scheme="postgresql").geturl(), autocommit=True) as conn:
        rows = conn.execute(
            "SELECT client_port, coalesce(state, '') FROM pg_stat_activity"
            " WHERE datname = %s AND client_port = ANY(%s) AND pid <> pg_backend_pid()",
            [name, list(ports)],
        ).fetchall()
    return [(int(port), str(state)) for port, state in rows]


def sqlite_files(pid: int, database: Path) -> list[str]:
    """The database's files (itself, its journal or WAL) that ``pid`` has open."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(database)):
            found.append(target)
    return found


def connections_held(pid: int, *, database_url: str, sqlite_path: Path) -> list[str]:
    """What ``pid`` holds of the database now, described; empty when nothing."""
    if database_url.startswith("postgres"):
        return [
            f"PostgreSQL session from port {port} ({state})" for port, state in postgres_sessions(pid, database_url)
        ]
    return [f"open file {path}" for path in sqlite_files(pid, sqlite_path)]
