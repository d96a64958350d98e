"""How often one API token may call: a fixed window per minute, counted in Django's cache.

The default cache lives in the web process, which is what ``make run`` and compose
start (one uvicorn process); with several web processes each counts on its own.
"""

from __future__ import annotations

import time

from django.core.cache import cache

WINDOW_S = 60


def token_throttle(*, token_id: int, per_minute: int, now: float | None = None) -> int:
    """Count one request by this token: 0 when it may go on, else the seconds until it may call again.

    ``per_minute`` of 0 or less means no limit. Refused requests count too, so a client
    hammering past the limit does not get a fresh allowance by being refused.
    """
    if per_minute <= 0:
        return 0
    now = time.time() if now is None else now
    window = int(now // WINDOW_S)
    key = f"token-throttle:{token_id}:{window}"
    cache.add(key, 0, timeout=WINDOW_S * 2)
    try:
        count = cache.incr(key)
    except ValueError:  # evicted between add and incr
        cache.set(key, 1, timeout=WINDOW_S * 2)
        count = 1
    if count <= per_minute:
        return 0
    return max(1, int((window + 1) * WINDOW_S - now + 0.999))
