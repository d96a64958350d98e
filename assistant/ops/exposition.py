"""What ``/metrics`` serves: this process's instruments (or every process's) and the state collector."""

from __future__ import annotations

import threading

from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.exposition import choose_encoder

from assistant.ops.collectors import StateCollector

_lock = threading.Lock()
_state: StateCollector | None = None


def _state_collector() -> StateCollector:
    global _state
    with _lock:
        if _state is None:
            _state = StateCollector()
            if not settings.PROMETHEUS_MULTIPROC_DIR:
                REGISTRY.register(_state)
        return _state


def registry() -> CollectorRegistry:
    """The registry a scrape reads: the process's own, or one summing every process's files."""
    state = _state_collector()
    if not settings.PROMETHEUS_MULTIPROC_DIR:
        return REGISTRY
    from prometheus_client import multiprocess

    combined = CollectorRegistry()
    multiprocess.MultiProcessCollector(combined, path=settings.PROMETHEUS_MULTIPROC_DIR)
    combined.register(state)
    return combined


def render(accept: str) -> tuple[bytes, str]:
    encoder, content_type = choose_encoder(accept)
    return encoder(registry()), content_type
