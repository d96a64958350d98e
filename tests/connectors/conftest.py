"""A folder on disk as a connector's source, and syncs that ingest here (no worker)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.connectors import liveness, services, sync
from assistant.connectors.models import Connector, ConnectorItem
from ingest import pipeline
from ingest.models import Collection, Document
from tests.connectors.answers import answering, scripted_llm  # noqa: F401
from tests.connectors.cloud_fixtures import (  # noqa: F401
    cloud_wiki,
    dc_wiki,
    found,
    graph,
    readers,
    sealing_key,
    waits,
)
from tests.factories import CollectionFactory
from tests.support.cut import CuttableRelay


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


class Killed(BaseException):
    """What a killed worker leaves behind: nothing after this point runs (no handler, no finish)."""


def killed_after(connector: Connector, source_id: str) -> list[sync.ItemResult]:
    """A real run of ``connector`` killed right after it settled ``source_id`` (that item's transaction committed).

    Returns what it settled before it died. The documents it stored are left queued:
    their message died with the worker (``enqueue=False``).
    """
    settled: list[sync.ItemResult] = []

    def on_item(item: sync.ItemResult) -> None:
        settled.append(item)
        if item.source_id == source_id:
            raise Killed

    with pytest.raises(Killed):
        sync.connector_sync(connector=connector, enqueue=False, on_item=on_item)
    connector.refresh_from_db()
    assert connector.state == Connector.State.RUNNING and settled[-1].source_id == source_id
    return settled


def killed_reading(connector: Connector, source_id: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real run of ``connector`` killed while it reads ``source_id``'s bytes (that item not started)."""
    source_for = sync.source_for

    def dying_source(found: Connector) -> Any:
        source = source_for(found)
        open_item = source.open_item

        def open_or_die(item: Any) -> Any:
            if item.source_id == source_id:
                raise Killed
            return open_item(item)

        source.open_item = open_or_die  # type: ignore[method-assign]
        return source

    with monkeypatch.context() as patched, pytest.raises(Killed):
        patched.setattr(sync, "source_for", dying_source)
        sync.connector_sync(connector=connector, enqueue=False)
    connector.refresh_from_db()
    assert connector.state == Connector.State.RUNNING


def resumed(connector: Connector, settings: Any) -> sync.SyncReport:
    """The killed run taken up again as in production, and what it left queued ingested.

    Its heartbeat stops; the sweep sends it again; the task's run claims it and goes on.
    The new run's documents are ingested first (its worker's message), then those the
    killed run stored (the ingestion sweep re-sends documents left queued, later).
    """
    stall = settings.CONNECTOR_STALL_AFTER_S
    settings.CONNECTOR_STALL_AFTER_S = 0
    try:
        assert liveness.connectors_sweep()["resent"] == 1
    finally:
        settings.CONNECTOR_STALL_AFTER_S = stall
    connector.refresh_from_db()
    assert connector.state == Connector.State.QUEUED
    report = run(connector)
    left = list(Document.objects.filter(status=Document.Status.QUEUED).values_list("pk", flat=True))
    if left:
        pipeline.documents_process_here(document_ids=left, together=True)
    connector.refresh_from_db()
    assert connector.state == Connector.State.IDLE and connector.attempts == 0 and not connector.last_error
    return report


def held(collection: Collection) -> list[tuple[Any, ...]]:
    """What the collection answers from: each document's name, bytes, state, restriction, parent and passages."""
    return sorted(
        (
            d.name, d.content_hash, d.status, tuple(sorted(g.name for g in d.restricted_to_groups.all())),
            d.parent.name if d.parent else "", tuple(d.chunks.order_by("ordinal").values_list("text", flat=True)),
        )
        for d in Document.objects.filter(collection=collection).select_related("parent")
    )  # fmt: skip


def recorded(connector: Connector) -> list[tuple[Any, ...]]:
    """The connector's record of each item: id, version, bytes, access, memo, error, and its document's name."""
    return sorted(
        (r.source_id, r.version, r.content_hash, r.access, r.memo, r.error, r.document.name if r.document else "")
        for r in ConnectorItem.objects.filter(connector=connector).select_related("document")
    )


def assert_same_as_control(
    interrupted: Connector, control: Connector, *, users: dict, query: str, restricted: str
) -> None:
    """The interrupted and resumed connector holds what one uninterrupted sync gives: no duplicate, nothing lost.

    ``control`` synced the same source once, uninterrupted, into a collection the same
    readers (``users``) read. What they find for ``query`` is the same in both; ``restricted`` (a
    document only the ``hr`` member may read) is kept from the outsider in both.
    """
    assert held(interrupted.collection) == held(control.collection)
    assert recorded(interrupted) == recorded(control)
    versions = Document.objects.filter(collection=interrupted.collection, superseded_by__isnull=False)
    assert not versions.exists(), "an old version is still there beside its replacement"
    for reader in ("outsider", "member"):
        reached = found(users[reader], interrupted.collection, query)
        assert reached == found(users[reader], control.collection, query)
        assert (restricted in reached) == (reader == "member"), (reader, sorted(reached))


def names_found(user, collection: Collection, query: str = "policy of the company") -> set[str]:
    """The documents a user's retrieval reaches for ``query``, however weakly they match."""
    return set(found(user, collection, query))


def hr_and_public_policies(source: Path, collection: Collection) -> Connector:
    """``hr/salaries.md`` (the ``hr`` group reads it) and ``public/holidays.md`` (everyone), synced once."""
    write(source, "hr/salaries.md", "# Salaries\n\nThe salary policy of the company: bands A to F.")
    write(source, "public/holidays.md", "# Holidays\n\nThe holiday policy of the company: 30 days.")
    connector = folder_connector(collection, source, groups=[
        {"glob": "hr/**", "groups": ["hr"]}, {"glob": "public/**", "groups": ["*"]},
    ])  # fmt: skip
    run(connector)
    return connector


def assert_a_dropped_connection_is_made_again_once(
    host: str, port: int, connector_through: Callable[[int], Connector], *, unreachable: str, last: str = ""
) -> None:
    """A sync whose connection drops reconnects once; a server that stays away fails with ``unreachable``.

    The source holds four items. ``connector_through(port)`` makes a connector that reaches
    the server through a relay on ``port`` that cuts the connection on demand: after the
    first item (the sync reconnects and adds all four), then for good while the last is
    read again (that item fails with the reason, and the next sync's listing too). ``last``,
    when given, is that item's source id.
    """
    relay = CuttableRelay(host, port)
    try:
        connector = connector_through(relay.port)

        def drop_after_the_first(result: sync.ItemResult) -> None:
            if relay.cuts == 0:
                relay.cut()  # the connection goes away between two items

        report = sync.connector_sync(connector=connector, enqueue=False, on_item=drop_after_the_first)
        assert not report.error and list(actions(report).values()) == ["added"] * 4 and relay.cuts == 1

        def drop_for_good(result: sync.ItemResult) -> None:
            relay.refuse = True
            relay.cut()

        assert not last or report.items[-1].source_id == last
        last = report.items[-1].source_id
        ConnectorItem.objects.filter(connector=connector, source_id=last).delete()  # to be read again
        report = sync.connector_sync(connector=connector, enqueue=False, on_item=drop_for_good)
        assert [(i.source_id, i.action) for i in report.items if i.action != "unchanged"] == [(last, "failed")]
        assert unreachable in report.items[-1].error
        report = sync.connector_sync(connector=connector, enqueue=False)
        assert unreachable in report.error and report.items == []
    finally:
        relay.close()


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


@pytest.fixture
def control(collection: Collection, readers: dict) -> Collection:  # noqa: F811 (the fixture)
    """A second collection, read by the same readers, for a control sync of the same source."""
    other = CollectionFactory.create(name="Control")
    for reader, role in (("outsider", Role.READ), ("member", Role.READ), ("manager", Role.MANAGE)):
        collection_grant(collection=other, user=readers[reader], role=role)
    return other


def folder_connector(collection: Collection, root: Path, **settings_: object) -> Connector:
    return services.connector_add(
        collection=collection, kind="folder", name=f"share-{collection.pk}", settings={"path": str(root), **settings_}
    )
