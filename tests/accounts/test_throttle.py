"""The per-token request limit: a fixed window per minute, each token counted on its own."""

from __future__ import annotations

from django.core.cache import cache

from assistant.accounts.throttle import token_throttle


def test_a_token_is_held_back_past_its_limit_until_the_next_minute() -> None:
    cache.clear()
    start = 6_000_000.0  # a window boundary: 100_000 minutes
    allowed = [token_throttle(token_id=1, per_minute=3, now=start + s) for s in (0, 1, 2)]
    assert allowed == [0, 0, 0]
    assert token_throttle(token_id=1, per_minute=3, now=start + 20) == 40  # seconds to the next window
    assert token_throttle(token_id=2, per_minute=3, now=start + 20) == 0  # another token
    assert token_throttle(token_id=1, per_minute=3, now=start + 60) == 0  # a new minute


def test_no_limit_when_switched_off() -> None:
    cache.clear()
    assert all(token_throttle(token_id=3, per_minute=0, now=1.0) == 0 for _ in range(1000))
