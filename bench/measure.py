"""Whole processes, measured: wall time, peak memory of the process tree, the load around them.

For the benchmarks that run the product as it runs in production (``bench/ingest.py``):
start-up is included, and every process a command starts counts towards its memory.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
    return found


def _memory_kb(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) of one process in KiB, zeros if it is gone."""
    rss = hwm = 0
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


class TreeMemory:
    """Samples a process tree: the largest total RSS seen, and each process's own peak."""

    def __init__(self, pid: int, every: float = 0.2) -> None:
        self.pid, self.every = pid, every
        self.peak_total_kb = 0
        self.peak_by_pid: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> TreeMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def sample(self) -> None:
        pids, todo = [], [self.pid]
        while todo:
            pid = todo.pop()
            pids.append(pid)
            todo += _children(pid)
        total = 0
        for pid in pids:
            rss, hwm = _memory_kb(pid)
            total += rss
            self.peak_by_pid[pid] = max(self.peak_by_pid.get(pid, 0), hwm)
        self.peak_total_kb = max(self.peak_total_kb, total)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.sample()

    @property
    def peak_mb(self) -> float:
        return max(self.peak_total_kb, max(self.peak_by_pid.values(), default=0)) / 1024


@dataclass
class Ran:
    command: list[str]
    wall_s: float
    returncode: int
    peak_rss_mb: float
    stdout: str
    load: tuple[float, float] = (0.0, 0.0)


def run_measured(
    command: Sequence[str],
    *,
    env: dict[str, str],
    log: Path,
    cwd: Path = REPO,
    beside: subprocess.Popen[bytes] | None = None,
) -> Ran:
    """Run a command to completion: wall time, exit status, peak RSS of its whole tree.

    ``beside``: a process this one depends on (the worker); if it dies first, stop and fail
    instead of waiting forever.
    """
    load_before = os.getloadavg()[0]
    out_path = log.with_suffix(".stdout")
    started = time.perf_counter()
    with log.open("w") as err, out_path.open("w") as out:
        process = subprocess.Popen(list(command), env=env, cwd=cwd, stdout=out, stderr=err, text=True)
        with TreeMemory(process.pid) as memory:
            while True:
                try:
                    process.wait(timeout=0.5)
                    break
                except subprocess.TimeoutExpired:
                    if beside is not None and beside.poll() is not None:
                        process.kill()
                        process.wait()
                        raise SystemExit(f"the worker exited ({beside.returncode}) while {command[:4]} ran") from None
            wall = time.perf_counter() - started
    return Ran(
        list(command), wall, process.returncode, memory.peak_mb, out_path.read_text(), (load_before, os.getloadavg()[0])
    )


def ran_check(ran: Ran, what: str, log: Path) -> None:
    if ran.returncode != 0:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise SystemExit(f"{what} failed with status {ran.returncode}: {' '.join(ran.command)}\n{tail}")
