"""PostgreSQL and Redis of a test's own, on free ports, that the test may stop and restart.

Fault tests restart the database and the broker under a running product. They never
touch the machine's shared servers (5432, 6379), which other runs use: each starts
its own from Debian's binaries, in a temporary folder, and removes it afterwards.

PostgreSQL refuses to run as root, so as root the cluster belongs to the ``postgres``
user and its commands run through ``runuser``.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.processes import Process, free_port
from tests.support.waiting import wait_until


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"), key=lambda p: int(Path(p).parts[4]))
    return Path(found[-1]).parent if found else None


def available() -> str:
    """Why private servers cannot run here ("" when they can)."""
    if _postgres_bin() is None:
        return "PostgreSQL binaries not found under /usr/lib/postgresql (apt-get install postgresql)"
    if shutil.which("redis-server") is None:
        return "redis-server not found (apt-get install redis-server)"
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        return "running as root without runuser: PostgreSQL cannot be started"
    return ""


class PrivatePostgres:
    """A throwaway cluster with trust authentication on 127.0.0.1:``port``.

    ``bin_dir``: another PostgreSQL's programs (the pgvector wheel's, for instance);
    ``standby_of``: a hot standby streaming from that running server (``pg_basebackup -R``)
    instead of a fresh cluster.
    """

    def __init__(self, *, bin_dir: Path | None = None, standby_of: PrivatePostgres | None = None) -> None:
        bin_dir = bin_dir or _postgres_bin()
        assert bin_dir is not None, available()
        self.bin = bin_dir
        self.port = free_port()
        # Not under pytest's tmp dirs: those are private to root, and the server may
        # run as another user.
        self.root = Path(tempfile.mkdtemp(prefix="assistant-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "postgres.log"
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres", "postgres")
        if standby_of is None:
            self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--no-sync", "-E", "UTF8")
        else:
            # initdb's trust rules cover replication from 127.0.0.1; -R writes the
            # standby.signal and primary_conninfo that make it follow the primary.
            self._run(
                "pg_basebackup", "-D", str(self.data), "-h", "127.0.0.1", "-p", str(standby_of.port), "-U", "postgres",
                "-R", "-X", "stream", "--checkpoint=fast", "--no-sync",
            )  # fmt: skip
        self.start()

    def _run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin / tool), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if check and result.returncode != 0:
            raise RuntimeError(
                f"{tool} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}\n{self.log_tail()}"
            )
        return result

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w", "-t", "60", "start")

    def stop(self, *, mode: str = "fast") -> None:
        """``fast``: clients disconnected, a clean shutdown; ``immediate``: as if the server crashed."""
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop", check=False)

    def restart(self, *, mode: str = "immediate") -> None:
        self.stop(mode=mode)
        self.start()

    def remove(self) -> None:
        self.stop(mode="immediate")
        shutil.rmtree(self.root, ignore_errors=True)


class PrivateRedis:
    """A Redis on 127.0.0.1:``port``; without persistence a restart loses every message, as in production."""

    def __init__(self, *, persistent: bool = False) -> None:
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="assistant-redis-"))
        self.persistent = persistent
        self.process: Process | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        persistence = ["--appendonly", "yes", "--appendfsync", "always"] if self.persistent else ["--appendonly", "no"]
        command = [
            "redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *persistence,
            "--dir", str(self.root),
        ]  # fmt: skip
        self.process = Process(f"redis-{self.port}", command, env=dict(os.environ), log_dir=self.root, cwd=self.root)
        self.process.wait_log("Ready to accept connections", timeout=30)

    def ping(self) -> bool:
        import redis

        try:
            return bool(redis.Redis.from_url(self.url, socket_timeout=2).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None
        wait_until(lambda: not self.ping(), 30, "Redis still answers after it was stopped")

    def restart(self) -> None:
        self.stop()
        self.start()

    def remove(self) -> None:
        if self.process is not None:
            self.process.stop()
        shutil.rmtree(self.root, ignore_errors=True)
