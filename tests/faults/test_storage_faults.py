"""The data directory's disk running full, and an index file truncated: a clear reason, then a full recovery.

The full disk is a real one: a 4 MB tmpfs mounted for the test (root only, as on the
project's machines and in CI), holding the uploaded originals and the indexes, filled
to the last byte. Nothing is patched: the product meets the same ENOSPC a full volume
gives it. The database is the test database, elsewhere.
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db.models import Count

from assistant.accounts.models import CollectionGrant, Role
from assistant.chat import services as chat
from assistant.ops import readiness
from ingest import disk, index, lexical, pipeline, services
from ingest.models import Chunk, Document
from tests.factories import CollectionFactory, DocumentFactory, GroupFactory, UserFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = [pytest.mark.django_db, pytest.mark.live, pytest.mark.embedded]

SECRET = "# Board\n\nThe merger code name is BLUEHERON and it closes on 14 May.\n"
PARKING = b"# Parking\n\nParking permits are issued by the reception desk on the ground floor.\n"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 4 MB file system, mounted for this test."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {result.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the disk refuses another byte; returns it (delete it to free the space)."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 65536)
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    try:
        while True:  # the last few bytes, so that not even a small file fits
            os.write(fd, b"\0")
    except OSError as exc:
        assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def files_under(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file()}


@pytest.fixture
def people():
    """A reader in the group a document is restricted to, and one (the outsider) who is not."""
    group = GroupFactory.create()
    member, outsider = UserFactory.create(), UserFactory.create()
    member.groups.add(group)
    return group, member, outsider


def grant(collection, *users) -> None:
    for user in users:
        CollectionGrant.objects.create(collection=collection, user=user, role=Role.READ)


def texts(user, collection, query: str) -> str:
    return "\n".join(p.text for p in chat.passages_retrieve(user=user, collection=collection, query=query, k=5))


def assert_no_duplicate_chunks() -> None:
    assert not Chunk.objects.values("document_id", "ordinal").annotate(n=Count("id")).filter(n__gt=1).exists()


def test_a_full_data_disk_refuses_the_upload_fails_processing_with_a_reason_and_recovers(
    settings, small_disk: Path, people
) -> None:
    group, member, outsider = people
    settings.MEDIA_ROOT = small_disk / "files"
    settings.INDEX_DIR = small_disk / "indexes"
    collection = CollectionFactory.create(name="Full disk")
    grant(collection, member, outsider)
    DocumentFactory.create(collection=collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True)
    board = DocumentFactory.create(collection=collection, name="board.md", content=SECRET, groups=[group])
    stored_before = files_under(small_disk / "files")
    filler = fill(small_disk)

    # An upload: refused with the reason, no row, no partial file.
    outcomes = services.documents_upload_many(
        collection=collection, files=[("parking.md", io.BytesIO(PARKING))], user=None, enqueue=False
    )
    assert [(o.name, o.error) for o in outcomes] == [("parking.md", disk.UPLOAD_REFUSED)]
    assert not Document.objects.filter(name="parking.md").exists()
    assert files_under(small_disk / "files") == stored_before

    # A document already stored: it fails with the reason, no chunks, no temporary file left.
    indexes_before = {p.name: p.read_bytes() for p in (small_disk / "indexes").glob("collection-*") if p.is_file()}
    pipeline.documents_process_here(document_ids=[board.pk])
    board.refresh_from_db()
    assert (board.status, board.error) == (Document.Status.FAILED, disk.PROCESSING_FAILED)
    assert not board.chunks.exists()
    assert [p.name for p in (small_disk / "indexes").iterdir() if p.name.endswith(".tmp")] == []
    assert {n: (small_disk / "indexes" / n).read_bytes() for n in indexes_before} == indexes_before
    # Readiness names the part that cannot write.
    check = readiness._run("indexes", readiness.CHECKS["indexes"], 2.0)
    assert not check.ok and "No space left on device" in check.detail, check
    # What was there keeps answering.
    assert "85 euros" in texts(member, collection, "daily meal allowance for international travel")

    # Space is back: the upload is sent again and the failed document reprocessed.
    filler.unlink()
    outcomes = services.documents_upload_many(
        collection=collection, files=[("parking.md", io.BytesIO(PARKING))], user=None, enqueue=False
    )
    assert outcomes[0].error == "" and outcomes[0].result is not None
    services.document_reprocess(document=board)
    pipeline.documents_process_here(document_ids=[board.pk, outcomes[0].result.document.pk])
    statuses = dict(Document.objects.values_list("name", "status"))
    assert statuses == dict.fromkeys(["handbook.pdf", "board.md", "parking.md"], Document.Status.READY)
    assert_no_duplicate_chunks()
    assert readiness._run("indexes", readiness.CHECKS["indexes"], 2.0).ok
    assert "reception desk" in texts(outsider, collection, "who issues parking permits")
    assert "BLUEHERON" in texts(member, collection, "merger code name")
    assert "BLUEHERON" not in texts(outsider, collection, "merger code name")


def truncate(path: Path) -> None:
    os.truncate(path, path.stat().st_size // 2)


def test_a_truncated_index_is_detected_and_rebuilt_from_the_database(settings, people) -> None:
    group, member, outsider = people
    collection = CollectionFactory.create(name="Truncated")
    grant(collection, member, outsider)
    DocumentFactory.create(collection=collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True)
    DocumentFactory.create(collection=collection, name="board.md", content=SECRET, groups=[group], processed=True)
    assert "85 euros" in texts(member, collection, "daily meal allowance for international travel")
    files = [index.index_path(collection.pk), lexical.lexical_path(collection.pk)]
    for path in files:
        truncate(path)

    # Readiness names the damaged files (and stays ready: the next search heals them).
    check = readiness._run("indexes", readiness.CHECKS["indexes"], 2.0)
    assert check.ok, check
    assert all(f"{path.name}: truncated" in check.detail for path in files), check.detail

    # The next search finds them unreadable, rebuilds both from the database, and answers.
    passages = chat.passages_retrieve(
        user=member, collection=collection, query="daily meal allowance for international travel", k=3
    )
    assert (passages[0].document_name, passages[0].page_start) == ("handbook.pdf", 2)
    assert index.index_file_problem(files[0]) == lexical.lexical_file_problem(files[1]) == ""
    assert "damaged" not in readiness._run("indexes", readiness.CHECKS["indexes"], 2.0).detail
    assert index.index_size(collection.pk) == lexical.lexical_size(collection.pk) == Chunk.objects.count()
    assert "BLUEHERON" in texts(member, collection, "merger code name")
    assert "BLUEHERON" not in texts(outsider, collection, "merger code name")

    # A writer that finds them truncated rebuilds them too, then adds its document.
    for path in files:
        truncate(path)
    parking = DocumentFactory.create(collection=collection, name="parking.md", content=PARKING, processed=True)
    assert parking.status == Document.Status.READY, parking.error
    assert index.index_size(collection.pk) == lexical.lexical_size(collection.pk) == Chunk.objects.count()
    assert_no_duplicate_chunks()
    assert "reception desk" in texts(outsider, collection, "who issues parking permits")
    assert "85 euros" in texts(outsider, collection, "daily meal allowance for international travel")
