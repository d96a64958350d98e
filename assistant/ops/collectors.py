"""Values read at scrape time: documents by status, index files on disk, queue depths, and
with several LLM servers each one's state as the scraped process sees it.

Each is one bounded read (a GROUP BY over the five statuses, one directory listing,
one ``LLEN`` per queue); a part that cannot be read is left out of that scrape and
counted in ``assistant_scrape_errors`` instead of failing the whole scrape.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from django.conf import settings
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

# Index files by kind: ``collection-<id>.faiss`` (FAISS) and ``collection-<id>.bm25.npz`` (BM25).
INDEX_KINDS = {".faiss": "faiss", ".bm25.npz": "bm25"}


def celery_queues() -> list[str]:
    """The queues the workers read: the default one plus every queue a route or queue setting names."""
    names = {getattr(settings, "CELERY_TASK_DEFAULT_QUEUE", "celery") or "celery"}
    for route in (getattr(settings, "CELERY_TASK_ROUTES", None) or {}).values():
        if isinstance(route, dict) and route.get("queue"):
            names.add(str(route["queue"]))
    for queue in getattr(settings, "CELERY_TASK_QUEUES", None) or ():
        names.add(str(getattr(queue, "name", queue)))
    return sorted(names)


def documents_by_status() -> dict[str, int]:
    from django.db.models import Count

    from ingest.models import Document

    counts = dict.fromkeys(Document.Status.values, 0)
    for row in Document.objects.values("status").annotate(n=Count("id")).order_by():
        counts[row["status"]] = row["n"]
    return counts


def index_files() -> dict[str, tuple[int, int]]:
    """Per kind of index: (files, bytes) in ``INDEX_DIR``."""
    found = dict.fromkeys(INDEX_KINDS.values(), (0, 0))
    directory = Path(settings.INDEX_DIR)
    if not directory.is_dir():
        return found
    with os.scandir(directory) as entries:
        for entry in entries:
            for suffix, kind in INDEX_KINDS.items():
                if entry.name.startswith("collection-") and entry.name.endswith(suffix) and entry.is_file():
                    files, size = found[kind]
                    found[kind] = (files + 1, size + entry.stat().st_size)
    return found


def queue_depths(queues: Iterable[str]) -> dict[str, int]:
    """Messages waiting per queue: ``LLEN`` on Redis, files in the folder on the file-system broker."""
    url = settings.CELERY_BROKER_URL
    if url.startswith(("redis://", "rediss://")):
        import redis

        client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            return {queue: int(client.llen(queue)) for queue in queues}
        finally:
            client.close()
    if url.startswith("filesystem://"):
        wanted = {f"{queue}.msg": queue for queue in queues}
        depths = dict.fromkeys(queues, 0)
        with os.scandir(Path(settings.BROKER_DIR) / "queue") as entries:
            for entry in entries:
                # Names are ``<sortable>.<queue>.msg``; a leading dot is a message still being written.
                queue = wanted.get(entry.name.partition(".")[2])
                if queue is not None and not entry.name.startswith("."):
                    depths[queue] += 1
        return depths
    raise ValueError("queue depth is read from Redis or the file-system broker only")


class StateCollector(Collector):
    """Gauges read from the database, the index folder and the broker when Prometheus scrapes."""

    def __init__(self) -> None:
        self.errors: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        yield from self._part("documents", self._documents)
        yield from self._part("indexes", self._indexes)
        yield from self._part("queues", self._queues)
        yield from self._part("llm_servers", self._llm_servers)
        errors = CounterMetricFamily(
            "assistant_scrape_errors", "Parts of the state that could not be read at a scrape.", labels=["part"]
        )
        for part, count in sorted(self.errors.items()):
            errors.add_metric([part], count)
        yield errors

    def _part(self, name: str, read: object) -> list[Metric]:
        try:
            return list(read())  # type: ignore[operator]
        except Exception:
            logger.warning("metrics: could not read %s", name, exc_info=True)
            self.errors[name] = self.errors.get(name, 0) + 1
            return []

    def _documents(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily("assistant_documents", "Documents by ingestion status.", labels=["status"])
        for status, count in sorted(documents_by_status().items()):
            gauge.add_metric([status], count)
        yield gauge

    def _indexes(self) -> Iterator[Metric]:
        sizes = GaugeMetricFamily("assistant_index_bytes", "Bytes of index files on disk, by kind.", labels=["kind"])
        files = GaugeMetricFamily(
            "assistant_index_files", "Index files on disk (one per collection), by kind.", labels=["kind"]
        )
        for kind, (count, size) in sorted(index_files().items()):
            sizes.add_metric([kind], size)
            files.add_metric([kind], count)
        yield sizes
        yield files

    def _queues(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "assistant_queue_messages", "Messages waiting in each Celery queue.", labels=["queue"]
        )
        for queue, depth in sorted(queue_depths(celery_queues()).items()):
            gauge.add_metric([queue], depth)
        yield gauge

    def _llm_servers(self) -> Iterator[Metric]:
        """Each LLM server as this process sees it (only with several servers in ``LLM_BASE_URL``)."""
        if len(settings.LLM_BASE_URLS) < 2:
            return
        from assistant.chat.llm_pool import settings_pool

        up = GaugeMetricFamily(
            "assistant_llm_server_up", "1 while this process sends answers to the LLM server.", labels=["server"]
        )
        in_flight = GaugeMetricFamily(
            "assistant_llm_server_in_flight",
            "Answers this process is streaming from each LLM server.",
            labels=["server"],
        )
        for state in settings_pool().states():
            up.add_metric([state.url], 1 if state.up else 0)
            in_flight.add_metric([state.url], state.in_flight)
        yield up
        yield in_flight
