"""Idempotency keys: a retried request gets the first response, not a second run.

A key is claimed with a row under a unique constraint before the work starts, so
two concurrent retries cannot both do it: the second sees the claim and is told the
first is still running. A failed first attempt gives its key up so a retry can go
ahead. Keys older than ``API_IDEMPOTENCY_TTL_HOURS`` are forgotten.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from assistant.chat.models import IdempotencyKey

MAX_KEY_CHARS = 200
# Longer than any upload or answer takes: a claim this old belongs to a dead process.
ABANDONED_AFTER = timedelta(minutes=15)


class IdempotencyConflict(Exception):
    """The key cannot be used for this request; ``code`` says why."""

    def __init__(self, code: str, message: str, status: int) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


@dataclass(frozen=True)
class Claim:
    record: IdempotencyKey
    replay: bool  # True: ``record`` holds the first response; return it as it is


def request_fingerprint(payload: Any) -> str:
    """A digest of what was asked; any JSON-serialisable description of the request."""
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def idempotency_claim(*, user: Any, key: str, scope: str, fingerprint: str) -> Claim:
    """Claim ``key`` for this request, or find the response it already produced."""
    key = key.strip()
    if not key or len(key) > MAX_KEY_CHARS:
        raise IdempotencyConflict(
            "invalid_idempotency_key", f"An Idempotency-Key has 1 to {MAX_KEY_CHARS} characters.", 400
        )
    cutoff = timezone.now() - timedelta(hours=settings.API_IDEMPOTENCY_TTL_HOURS)
    IdempotencyKey.objects.filter(created_at__lt=cutoff).delete()
    try:
        with transaction.atomic():
            record = IdempotencyKey.objects.create(user=user, key=key, scope=scope, fingerprint=fingerprint)
        return Claim(record=record, replay=False)
    except IntegrityError:
        pass
    existing = IdempotencyKey.objects.filter(user=user, key=key, scope=scope).first()
    if existing is None:  # given up by a failed first attempt between our two queries
        return idempotency_claim(user=user, key=key, scope=scope, fingerprint=fingerprint)
    record = existing
    if record.fingerprint != fingerprint:
        raise IdempotencyConflict(
            "idempotency_key_reused",
            "This Idempotency-Key was already used for a different request; use a new key for a new request.",
            422,
        )
    if record.status_code is None and record.created_at < timezone.now() - ABANDONED_AFTER:
        # The first attempt's process died without finishing or giving the key up.
        IdempotencyKey.objects.filter(pk=record.pk, status_code=None).delete()
        return idempotency_claim(user=user, key=key, scope=scope, fingerprint=fingerprint)
    if record.status_code is None:
        raise IdempotencyConflict(
            "idempotency_in_progress", "A request with this Idempotency-Key is still being processed; retry later.", 409
        )
    return Claim(record=record, replay=True)


def idempotency_complete(*, record: IdempotencyKey, status_code: int, response: Any) -> None:
    """Store the response the key will answer with from now on."""
    record.status_code = status_code
    record.response = response
    record.save(update_fields=["status_code", "response"])


def idempotency_release(*, record: IdempotencyKey) -> None:
    """Give the key up after a failed attempt, so a retry does the work."""
    IdempotencyKey.objects.filter(pk=record.pk, status_code=None).delete()
