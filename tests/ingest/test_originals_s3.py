"""Originals in an S3-compatible bucket: upload, parse, download, delete, new versions, backup and restore.

A real S3 server (moto's, ``tests/support/s3_server.py``) behind django-storages and
boto3: nothing of the storage is mocked. Every test checks that the node's own disk
(the data directory) keeps no original, so another web node or worker would find
each one in the bucket.
"""

from __future__ import annotations

import io
import tarfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.models import Group
from django.core.management import call_command
from django.urls import reverse

from assistant.accounts.models import CollectionGrant
from assistant.backup.archive import ORIGINALS
from ingest import originals, pipeline, services
from ingest.models import Document
from tests.api.conftest import api_for, streamed
from tests.backup.support import wipe_database
from tests.factories import CollectionFactory, UserFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf
from tests.support.s3_server import S3Server, s3_server

PREFIX = "site-a"


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    with s3_server() as server:
        yield server


@pytest.fixture
def bucket(s3: S3Server, settings, tmp_path: Path) -> str:
    """A fresh bucket holding this test's originals; the data dir is the test's own."""
    name = s3.create_bucket(f"originals-{uuid.uuid4().hex[:10]}")
    settings.STORAGES = {**settings.STORAGES, "default": s3.storage_settings(name, prefix=PREFIX)}
    settings.DATA_DIR = tmp_path / "node-data"
    settings.DATA_DIR.mkdir()
    return name


def _local_files(settings) -> list[Path]:
    """Files the node keeps on its own disk where originals could have landed."""
    places = [Path(settings.MEDIA_ROOT), Path(settings.DATA_DIR) / "tmp"]
    return [p for place in places if place.is_dir() for p in place.rglob("*") if p.is_file()]


def _key(document: Document) -> str:
    return f"{PREFIX}/{document.file.name}"


def _upload(collection, name: str, content: bytes, **kwargs) -> Document:
    result = services.document_upload(collection=collection, name=name, fileobj=io.BytesIO(content), **kwargs)
    return result.document


pytestmark = pytest.mark.django_db


def test_an_upload_is_parsed_and_downloaded_through_the_bucket_alone(s3: S3Server, bucket: str, settings) -> None:
    staff = UserFactory.create(is_staff=True)
    collection = CollectionFactory.create(created_by=staff)
    content = make_pdf(HANDBOOK_PAGES)
    document = _upload(collection, "handbook.pdf", content, user=staff, enqueue=False)
    assert originals.has_local_paths() is False
    assert s3.keys(bucket) == [_key(document)]
    assert s3.read(bucket, _key(document)) == content

    pipeline.document_process(document_id=document.pk)
    document.refresh_from_db()
    assert (document.status, document.file_type, document.pages) == ("ready", "pdf", 3)
    assert document.chunk_count >= 3
    # Parsed from a temporary copy, which is gone: the node keeps nothing.
    assert _local_files(settings) == []

    download = api_for(staff).get(f"/documents/{document.pk}/download")
    assert download.status_code == 200 and streamed(download) == content
    assert 'filename="handbook.pdf"' in download["Content-Disposition"]


def test_a_restricted_original_in_the_bucket_is_served_only_to_its_group(s3: S3Server, bucket: str, client) -> None:
    staff = UserFactory.create(is_staff=True)
    collection = CollectionFactory.create(created_by=staff)
    board = Group.objects.create(name="board")
    member, outsider = UserFactory.create(), UserFactory.create()
    member.groups.add(board)
    for reader in (member, outsider):
        CollectionGrant.objects.create(collection=collection, user=reader, role="read")
    content = make_pdf(["Board minutes\nThe merger with Northwind closes in March."])
    minutes = _upload(collection, "minutes.pdf", content, user=staff, enqueue=False, restrict_to_groups=[board])
    pipeline.document_process(document_id=minutes.pk)
    assert Document.objects.get(pk=minutes.pk).status == "ready"

    assert api_for(outsider).get(f"/documents/{minutes.pk}/download").status_code == 404
    client.force_login(outsider)
    assert client.get(reverse("chat:document_original", args=[minutes.pk])).status_code == 404

    assert streamed(api_for(member).get(f"/documents/{minutes.pk}/download")) == content
    client.force_login(member)
    original = client.get(reverse("chat:document_original", args=[minutes.pk]))
    assert original.status_code == 200 and original["Content-Type"] == "application/pdf"
    assert streamed(original) == content


def test_archive_members_are_read_from_the_copy_while_they_are_stored(
    s3: S3Server, bucket: str, settings, formats_dir: Path
) -> None:
    collection = CollectionFactory.create()
    archive = _upload(collection, "simple.zip", (formats_dir / "simple.zip").read_bytes(), enqueue=False)
    pipeline.document_process(document_id=archive.pk, enqueue_children=False)
    archive.refresh_from_db()
    assert archive.status == "ready", archive.error
    members = list(Document.objects.filter(parent=archive))
    assert members, "the archive's members became no documents"
    assert set(s3.keys(bucket)) == {_key(d) for d in [archive, *members]}
    assert _local_files(settings) == []


def test_delete_removes_the_object_and_a_missing_object_is_not_found(s3: S3Server, bucket: str) -> None:
    staff = UserFactory.create(is_staff=True)
    collection = CollectionFactory.create(created_by=staff)
    kept = _upload(collection, "kept.txt", b"Kept.\n\nThe canteen opens at eight.", user=staff, enqueue=False)
    gone = _upload(collection, "gone.txt", b"Gone.\n\nThe library closes at six.", user=staff, enqueue=False)
    services.document_delete(document=gone)
    assert s3.keys(bucket) == [_key(kept)]

    s3.client().delete_object(Bucket=bucket, Key=_key(kept))  # lost behind the product's back
    response = api_for(staff).get(f"/documents/{kept.pk}/download")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"

    other = CollectionFactory.create()
    _upload(other, "a.txt", b"Alpha.", enqueue=False)
    services.collection_delete(collection=other)
    assert s3.keys(bucket) == []


def test_a_new_version_replaces_the_old_object_once_it_is_ready(s3: S3Server, bucket: str) -> None:
    staff = UserFactory.create(is_staff=True)
    collection = CollectionFactory.create(created_by=staff)
    old, new = b"Policy v1\n\nThe meal allowance is 40 euros.", b"Policy v2\n\nThe meal allowance is 60 euros."
    first = _upload(collection, "policy.txt", old, user=staff, enqueue=False)
    pipeline.document_process(document_id=first.pk)
    second = _upload(collection, "policy.txt", new, user=staff, enqueue=False)
    assert second.supersedes_id == first.pk
    assert set(s3.keys(bucket)) == {_key(first), _key(second)}  # the old one answers until the new one is ready
    pipeline.document_process(document_id=second.pk)
    assert not Document.objects.filter(pk=first.pk).exists()
    assert s3.keys(bucket) == [_key(second)]
    download = api_for(staff).get(f"/documents/{second.pk}/download")
    assert streamed(download) == new


def test_a_failing_bucket_refuses_the_upload_with_a_reason(s3: S3Server, bucket: str, settings) -> None:
    collection = CollectionFactory.create()
    settings.STORAGES = {**settings.STORAGES, "default": s3.storage_settings(f"{bucket}-missing")}
    with pytest.raises(services.UploadRejected, match="storage for originals did not accept it"):
        _upload(collection, "a.txt", b"Alpha.")
    assert not Document.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_backup_holds_the_bucket_originals_and_restore_puts_them_back(
    s3: S3Server, bucket: str, settings, tmp_path: Path
) -> None:
    staff = UserFactory.create(is_staff=True)
    collection = CollectionFactory.create(created_by=staff)
    contents = {"travel.txt": b"Travel\n\nHotels are booked by the travel office.", "b.txt": b"Bees.\n\nHoney."}
    documents = [_upload(collection, n, c, user=staff, enqueue=False) for n, c in contents.items()]
    pipeline.documents_process_here(document_ids=[d.pk for d in documents], together=True)
    stored = {d.file.name: contents[d.name] for d in documents}
    archive = tmp_path / "backup.tar"
    call_command("backup", output=str(archive), stdout=io.StringIO())
    with tarfile.open(archive) as tar:
        held = {m.name[len(ORIGINALS) :]: tar.extractfile(m).read() for m in tar if m.name.startswith(ORIGINALS)}  # type: ignore[union-attr]
    assert held == stored

    # The instance is lost: database wiped, the bucket emptied and something stale left in it.
    wipe_database()
    for key in s3.keys(bucket):
        s3.client().delete_object(Bucket=bucket, Key=key)
    s3.client().put_object(Bucket=bucket, Key=f"{PREFIX}/collections/999/stale", Body=b"stale")
    settings.INDEX_DIR = tmp_path / "new-indexes"
    call_command("restore", str(archive), force=True, stdout=io.StringIO())

    assert set(s3.keys(bucket)) == {f"{PREFIX}/{name}" for name in stored}
    for document in Document.objects.all():
        assert originals.original_open(document.file.name).read() == contents[document.name]
    assert _local_files(settings) == []


def test_readiness_names_a_bucket_that_does_not_answer(s3: S3Server, bucket: str, settings) -> None:
    from assistant.ops.readiness import readiness

    checks = {check.name: check for check in readiness(timeout=10)}
    assert checks["originals"].ok and checks["originals"].detail == f"s3://{bucket}/{PREFIX}"
    settings.STORAGES = {**settings.STORAGES, "default": s3.storage_settings(f"{bucket}-missing")}
    checks = {check.name: check for check in readiness(timeout=10)}
    assert not checks["originals"].ok and "404" in checks["originals"].detail
