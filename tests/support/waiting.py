"""The one way tests wait for something another process does: poll a condition until a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def wait_until(
    condition: Callable[[], T | None],
    timeout: float,
    message: str | Callable[[], str],
    *,
    interval: float = 0.2,
    error: type[Exception] = AssertionError,
) -> T:
    """Call ``condition`` until it returns something truthy, and return that.

    After ``timeout`` seconds, raise ``error`` with ``message`` (called then, when it is
    a function, so it can show the latest state or logs). ``condition`` may raise to
    stop early (a process that exited). The timeout is a safety net for a hung run,
    never what a test measures.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = condition()
        if found:
            return found
        if time.monotonic() >= deadline:
            raise error(message() if callable(message) else message)
        time.sleep(interval)
