"""A folder on disk as a connector's source, and syncs that ingest here (no worker)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assistant.connectors import services, sync
from assistant.connectors.models import Connector
from ingest import pipeline
from ingest.models import Collection
from tests.connectors.answers import answering, scripted_llm  # noqa: F401
from tests.connectors.cloud_fixtures import cloud_wiki, dc_wiki, graph, readers, sealing_key, waits  # noqa: F401
from tests.factories import CollectionFactory


def write(root: Path, relative: str, text: str, *, mtime: float | None = None) -> Path:
    """A file in the source; ``mtime`` set explicitly, so a change is seen on any file system."""
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def run(connector: Connector) -> sync.SyncReport:
    """One real sync, then the documents it queued ingested here, as a worker would."""
    report = sync.connector_sync(connector=connector, enqueue=False)
    if report.queued:
        pipeline.documents_process_here(document_ids=report.queued, together=True)
    return report


def actions(report: sync.SyncReport) -> dict[str, str]:
    return {item.source_id: item.action for item in report.items}


@pytest.fixture(autouse=True)
def _quiet_heartbeat(settings) -> None:
    # The run's side thread would wait on the test's open transaction (SQLite) to beat.
    settings.CONNECTOR_HEARTBEAT_S = 60.0


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "share"
    root.mkdir()
    return root


@pytest.fixture
def collection() -> Collection:
    return CollectionFactory.create(name="Share")


def folder_connector(collection: Collection, root: Path, **settings_: object) -> Connector:
    return services.connector_add(
        collection=collection, kind="folder", name=f"share-{collection.pk}", settings={"path": str(root), **settings_}
    )
