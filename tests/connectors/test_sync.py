"""A folder connector's syncs: what changes at the source is what changes in the collection, and nothing else."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from assistant.chat import services as chat_services
from assistant.connectors import liveness, selectors, sync
from assistant.connectors.models import Connector, ConnectorItem
from ingest import pipeline
from ingest.models import Chunk, Document
from tests.connectors.answers import PARKING, SALARIES, assert_answers
from tests.connectors.conftest import (
    actions,
    assert_same_as_control,
    folder_connector,
    killed_after,
    resumed,
    run,
    write,
)

pytestmark = pytest.mark.django_db


def texts(collection) -> dict[str, str]:
    return {
        d.name: " ".join(d.chunks.values_list("text", flat=True))
        for d in Document.objects.filter(collection=collection)
    }


def test_edit_add_delete_and_rename_at_the_source_are_reflected_by_the_next_sync(source: Path, collection) -> None:
    write(source, "alpha.md", "# Alpha\n\nThe alpha plan starts in spring.", mtime=1_700_000_000)
    write(source, "team/beta.md", "# Beta\n\nThe beta team meets on Tuesdays in room 4.", mtime=1_700_000_000)
    write(source, "gamma.txt", "Gamma notes about the old warehouse.", mtime=1_700_000_000)
    connector = folder_connector(collection, source, groups=[{"glob": "**", "groups": ["*"]}])

    first = run(connector)
    assert actions(first) == {"alpha.md": "added", "team/beta.md": "added", "gamma.txt": "added"}
    assert set(Document.objects.filter(collection=collection).values_list("status", flat=True)) == {"ready"}
    beta = Document.objects.get(collection=collection, name="beta.md")
    beta_chunks = set(beta.chunks.values_list("pk", flat=True))
    assert selectors.source_link(document_id=beta.pk) == str(source / "team" / "beta.md")

    write(source, "alpha.md", "# Alpha\n\nThe alpha plan now starts with the quokka survey.", mtime=1_700_000_100)
    write(source, "delta.md", "# Delta\n\nDelta covers the new harbour office.")
    (source / "gamma.txt").unlink()
    (source / "team" / "moved").mkdir()
    (source / "team" / "beta.md").rename(source / "team" / "moved" / "beta-renamed.md")

    second = run(connector)
    assert actions(second) == {
        "alpha.md": "updated", "delta.md": "added", "gamma.txt": "deleted", "team/moved/beta-renamed.md": "renamed",
    }  # fmt: skip
    found = texts(collection)
    assert set(found) == {"alpha.md", "delta.md", "beta-renamed.md"}  # the old alpha version was replaced
    assert "quokka" in found["alpha.md"] and "spring" not in found["alpha.md"]
    # The renamed file is the same document with the same passages: nothing re-embedded.
    beta.refresh_from_db()
    assert beta.name == "beta-renamed.md"
    assert set(beta.chunks.values_list("pk", flat=True)) == beta_chunks
    assert selectors.source_link(document_id=beta.pk) == str(source / "team" / "moved" / "beta-renamed.md")
    # One row per source item, each pointing at a document that exists.
    assert sorted(ConnectorItem.objects.values_list("source_id", flat=True)) == [
        "alpha.md", "delta.md", "team/moved/beta-renamed.md",
    ]  # fmt: skip

    # A question right after the sync finds the new text.
    passages = chat_services.passages_retrieve(user=None, collection=collection, query="quokka survey", k=3)
    assert passages and passages[0].document_name == "alpha.md" and "quokka" in passages[0].text

    # Nothing changed: nothing is read.
    third = run(connector)
    assert set(actions(third).values()) == {"unchanged"}
    assert third.fetched == 0 and third.bytes_read == 0
    connector.refresh_from_db()
    assert connector.state == Connector.State.IDLE and connector.seen == 3 and connector.fetched == 0


def test_an_answer_right_after_a_sync_cites_the_edited_text_and_keeps_the_restricted_file_from_outsiders(
    source: Path, collection, readers, answering
) -> None:
    write(source, "parking.md", f"# Parking\n\n{PARKING.before}", mtime=1_700_000_000)
    write(source, "hr/salaries.md", f"# Salaries\n\n{SALARIES.before}", mtime=1_700_000_000)
    connector = folder_connector(collection, source, groups=[
        {"glob": "hr/**", "groups": ["hr"]}, {"glob": "**", "groups": ["*"]},
    ])  # fmt: skip
    run(connector)
    assert_answers(collection=collection, readers=readers, public="parking.md", restricted="salaries.md", edited=False)

    write(source, "parking.md", f"# Parking\n\n{PARKING.after}", mtime=1_700_000_100)
    write(source, "hr/salaries.md", f"# Salaries\n\n{SALARIES.after}", mtime=1_700_000_100)
    assert actions(run(connector)) == {"parking.md": "updated", "hr/salaries.md": "updated"}
    assert_answers(collection=collection, readers=readers, public="parking.md", restricted="salaries.md", edited=True)


def test_a_touched_file_with_the_same_bytes_is_read_but_not_ingested_again(source: Path, collection) -> None:
    write(source, "note.md", "# Note\n\nSame words.", mtime=1_700_000_000)
    connector = folder_connector(collection, source)
    run(connector)
    os.utime(source / "note.md", (1_700_000_500, 1_700_000_500))
    report = run(connector)
    assert actions(report) == {"note.md": "unchanged"}
    assert report.fetched == 1 and not report.queued
    assert Document.objects.filter(collection=collection).count() == 1


def test_include_and_exclude_globs_choose_the_files(source: Path, collection) -> None:
    for name in ("a.md", "b.txt", "drafts/c.md", "docs/d.md", ".hidden.md", "docs/~$lock.md"):
        write(source, name, f"Text of {name}.")
    connector = folder_connector(collection, source, include=["*.md"], exclude=["drafts/"])
    report = sync.connector_sync(connector=connector, dry_run=True)
    assert sorted(actions(report)) == ["a.md", "docs/d.md"]


def test_dry_run_lists_what_would_change_and_changes_nothing(source: Path, collection) -> None:
    write(source, "keep.md", "# Keep\n\nKept.", mtime=1_700_000_000)
    write(source, "go.md", "# Go\n\nGoes away.", mtime=1_700_000_000)
    connector = folder_connector(collection, source)
    run(connector)
    write(source, "keep.md", "# Keep\n\nKept, and edited.", mtime=1_700_000_200)
    write(source, "new.md", "# New\n\nNew.")
    (source / "go.md").unlink()
    before = list(ConnectorItem.objects.values_list("source_id", "version", "content_hash", "document_id"))
    report = sync.connector_sync(connector=connector, dry_run=True)
    assert actions(report) == {"keep.md": "updated", "new.md": "added", "go.md": "deleted"}
    assert list(ConnectorItem.objects.values_list("source_id", "version", "content_hash", "document_id")) == before
    assert Document.objects.filter(collection=collection).count() == 2


def test_a_failing_item_is_recorded_and_the_sync_goes_on(source: Path, collection, formats_dir: Path) -> None:
    write(source, "good.md", "# Good\n\nA readable note about otters.")
    (source / "locked.pdf").write_bytes((formats_dir / "password.pdf").read_bytes())  # fails in ingestion
    (source / "escape.txt").symlink_to("/etc/hostname")  # refused by the connector
    connector = folder_connector(collection, source)

    report = run(connector)
    assert actions(report) == {"escape.txt": "failed", "good.md": "added", "locked.pdf": "added"}
    failed = next(i for i in report.items if i.action == "failed")
    assert "outside the folder" in failed.error
    statuses = dict(Document.objects.filter(collection=collection).values_list("name", "status"))
    assert statuses == {"good.md": "ready", "locked.pdf": "failed"}
    assert Document.objects.get(name="locked.pdf").error  # with a reason a person can read
    connector.refresh_from_db()
    assert connector.failed == 1 and "escape.txt" in connector.last_error
    assert ConnectorItem.objects.get(source_id="escape.txt").error == failed.error
    # Retried next time (it may have been fixed); the rest is in step.
    again = run(connector)
    assert actions(again) == {"escape.txt": "failed", "good.md": "unchanged", "locked.pdf": "unchanged"}


def test_a_sync_interrupted_mid_way_resumes_without_duplicates_or_losses(source: Path, collection, settings) -> None:
    for n in range(8):
        write(source, f"file-{n}.md", f"# File {n}\n\nThe content of file number {n}.")
    connector = folder_connector(collection, source)

    class Killed(BaseException):
        """What a killed worker leaves behind: nothing after this point runs (no handler, no finish)."""

    def kill_after_three(item: sync.ItemResult) -> None:
        if item.source_id == "file-2.md":
            raise Killed

    with pytest.raises(Killed):
        sync.connector_sync(connector=connector, enqueue=False, on_item=kill_after_three)
    connector.refresh_from_db()
    assert connector.state == Connector.State.RUNNING
    assert ConnectorItem.objects.count() == Document.objects.count() == 3

    # A second run while the first one's heartbeat is fresh leaves it alone...
    with pytest.raises(sync.SyncBusy):
        sync.connector_sync(connector=connector)
    # ...and once it has stalled, the sweep sends it again, like a stalled document.
    settings.CONNECTOR_STALL_AFTER_S = 0
    assert liveness.connectors_sweep()["resent"] == 1
    connector.refresh_from_db()
    assert connector.state == Connector.State.QUEUED

    report = run(connector)
    assert actions(report) == {f"file-{n}.md": "unchanged" if n < 3 else "added" for n in range(8)}
    # The first run's documents were stored, their message lost with the worker: a batch
    # takes queued companions along (and the ingestion sweep re-sends the rest).
    left = list(Document.objects.filter(status="queued").values_list("pk", flat=True))
    pipeline.documents_process_here(document_ids=left, together=True)
    names = list(Document.objects.filter(collection=collection).values_list("name", flat=True))
    assert sorted(names) == [f"file-{n}.md" for n in range(8)]
    assert ConnectorItem.objects.count() == 8
    assert set(Document.objects.values_list("status", flat=True)) == {"ready"}
    connector.refresh_from_db()
    assert connector.state == Connector.State.IDLE and connector.attempts == 0


def test_an_unmounted_share_deletes_nothing(source: Path, collection) -> None:
    write(source, "a.md", "# A\n\nText.")
    connector = folder_connector(collection, source)
    run(connector)
    (source / "a.md").unlink()  # what an empty mount point looks like
    report = run(connector)
    assert "lists no items" in report.error and report.items == []
    assert Document.objects.filter(collection=collection).count() == 1
    connector.refresh_from_db()
    assert "lists no items" in connector.last_error


def test_the_sweep_queues_due_connectors_only(source: Path, collection, django_capture_on_commit_callbacks) -> None:
    write(source, "a.md", "# A\n\nText.")
    due = folder_connector(collection, source)
    due.every_minutes = 5
    due.save()
    paused = Connector.objects.create(
        collection=collection, name="paused", kind="folder", settings=due.settings, every_minutes=5, paused=True
    )
    on_demand = Connector.objects.create(collection=collection, name="manual", kind="folder", settings=due.settings)
    with django_capture_on_commit_callbacks() as callbacks:
        assert liveness.connectors_sweep()["due"] == 1
    assert len(callbacks) == 1
    states = dict(Connector.objects.values_list("name", "state"))
    assert states == {due.name: "queued", paused.name: "idle", on_demand.name: "idle"}
    # Just finished: not due again until its interval has passed.
    run(Connector.objects.get(pk=due.pk))
    assert liveness.connectors_sweep()["due"] == 0


def test_a_paused_connector_does_not_run(source: Path, collection) -> None:
    write(source, "a.md", "# A\n\nText.")
    connector = folder_connector(collection, source)
    connector.paused = True
    connector.save()
    with pytest.raises(sync.SyncRefused):
        sync.connector_sync(connector=connector)
    assert not Chunk.objects.exists()


def test_a_sync_killed_in_its_deletion_phase_finishes_the_deletions_when_resumed(
    source: Path, collection, control, readers, settings
) -> None:
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    groups = [{"glob": "hr/**", "groups": ["hr"]}, {"glob": "**", "groups": ["*"]}]
    write(source, "keep.md", "# Keep\n\nThe staff canteen opens at noon.", mtime=1_700_000_000)
    write(source, "hr/pay.md", "# Pay\n\nStaff salary bands run from A to F.", mtime=1_700_000_000)
    write(source, "moved.md", "# Moved\n\nStaff parking is behind the depot.", mtime=1_700_000_000)
    for n in range(1, 5):
        write(source, f"go-{n}.md", f"# Go {n}\n\nStaff note number {n}, soon removed.", mtime=1_700_000_000)
    connector = folder_connector(collection, source, groups=groups)
    run(connector)
    write(source, "keep.md", "# Keep\n\nThe staff canteen now opens at eleven.", mtime=1_700_000_100)
    (source / "archive").mkdir()
    (source / "moved.md").rename(source / "archive" / "moved.md")
    for n in range(1, 5):
        (source / f"go-{n}.md").unlink()

    # Killed half-way through the deletions, which come after every listed item.
    settled = killed_after(connector, "go-2.md")
    assert [(i.source_id, i.action) for i in settled][-2:] == [("go-1.md", "deleted"), ("go-2.md", "deleted")]
    assert sorted(Document.objects.filter(name__startswith="go-").values_list("name", flat=True)) == [
        "go-3.md", "go-4.md",
    ]  # fmt: skip

    report = resumed(connector, settings)
    assert actions(report) == {
        "archive/moved.md": "unchanged", "hr/pay.md": "unchanged", "keep.md": "unchanged",
        "go-3.md": "deleted", "go-4.md": "deleted",
    }  # fmt: skip
    assert report.fetched == 0  # what the killed run settled is not read again
    assert not Document.objects.filter(name__startswith="go-").exists()
    assert sorted(ConnectorItem.objects.filter(connector=connector).values_list("source_id", flat=True)) == [
        "archive/moved.md", "hr/pay.md", "keep.md",
    ]  # fmt: skip
    run(uninterrupted := folder_connector(control, source, groups=groups))
    assert_same_as_control(connector, uninterrupted, users=readers, query="staff", restricted="pay.md")


def test_an_item_edited_again_after_its_killed_sync_keeps_one_document(
    source: Path, collection, control, readers, settings
) -> None:
    """The killed run's new version was stored but never ingested; the resumed run stores a newer one."""
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    groups = [{"glob": "hr/**", "groups": ["hr"]}, {"glob": "**", "groups": ["*"]}]
    write(source, "note.md", "# Note\n\nThe staff bus leaves at seven.", mtime=1_700_000_000)
    write(source, "hr/pay.md", "# Pay\n\nStaff salary bands run from A to F.", mtime=1_700_000_000)
    connector = folder_connector(collection, source, groups=groups)
    run(connector)
    write(source, "note.md", "# Note\n\nThe staff bus leaves at eight.", mtime=1_700_000_100)
    killed_after(connector, "note.md")
    assert Document.objects.filter(collection=collection, name="note.md").count() == 2  # the new one queued
    write(source, "note.md", "# Note\n\nThe staff bus leaves at nine, from the quokka gate.", mtime=1_700_000_200)

    report = resumed(connector, settings)
    assert actions(report) == {"hr/pay.md": "unchanged", "note.md": "updated"}
    notes = Document.objects.filter(collection=collection, name="note.md")
    assert [" ".join(d.chunks.values_list("text", flat=True)) for d in notes] == [
        "Note\nThe staff bus leaves at nine, from the quokka gate."
    ]
    run(uninterrupted := folder_connector(control, source, groups=groups))
    assert_same_as_control(connector, uninterrupted, users=readers, query="staff bus", restricted="pay.md")
