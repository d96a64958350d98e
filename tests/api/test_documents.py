"""Documents through /api/v1: uploads (one or many, idempotent, limited), status, download, delete, re-index."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from assistant.chat.models import IdempotencyKey
from ingest import pipeline
from ingest import services as ingest_services
from ingest.models import Document
from tests.api.conftest import api_for, error_code
from tests.factories import CollectionFactory

pytestmark = pytest.mark.django_db


def upload(api, collection_id, files, **kw):
    return api.post(
        f"/collections/{collection_id}/documents",
        data={"files": [SimpleUploadedFile(name, content) for name, content in files]},
        **kw,
    )


def test_upload_many_then_list_get_download_and_delete(staff_api, collection, reader_api) -> None:
    response = upload(
        staff_api, collection.pk, [("a.md", b"# A\n\nAlpha."), ("b.txt", b"Beta."), ("c.md", b"# A\n\nAlpha.")]
    )
    assert response.status_code == 201, response.content
    uploaded = response.json()["documents"]
    assert [u["duplicate"] for u in uploaded] == [False, False, True]
    assert uploaded[2]["document"]["id"] == uploaded[0]["document"]["id"]
    assert uploaded[0]["document"]["status"] == "queued"
    listed = reader_api.get(f"/collections/{collection.pk}/documents").json()
    assert listed["total"] == 2
    assert {d["name"] for d in listed["items"]} == {"a.md", "b.txt"}
    assert {"status", "progress_done", "progress_total"} <= set(listed["items"][0])
    assert reader_api.get(f"/collections/{collection.pk}/documents?status=ready").json()["total"] == 0
    doc_id = uploaded[1]["document"]["id"]
    got = reader_api.get(f"/documents/{doc_id}")
    assert got.status_code == 200 and got.json()["name"] == "b.txt" and got.json()["collection_id"] == collection.pk
    download = reader_api.get(f"/documents/{doc_id}/download")
    assert download.status_code == 200
    assert b"".join(download.streaming_content) == b"Beta."
    assert 'filename="b.txt"' in download["Content-Disposition"]
    refused = reader_api.delete(f"/documents/{doc_id}")
    assert refused.status_code == 403 and error_code(refused) == "forbidden"
    assert staff_api.delete(f"/documents/{doc_id}").status_code == 204
    assert not Document.objects.filter(pk=doc_id).exists()
    assert reader_api.get(f"/documents/{doc_id}").status_code == 404


def test_another_users_documents_are_not_found(collection, staff_api, stranger_api) -> None:
    doc_id = upload(staff_api, collection.pk, [("a.md", b"Alpha.")]).json()["documents"][0]["document"]["id"]
    for response in (
        stranger_api.get(f"/documents/{doc_id}"),
        stranger_api.get(f"/documents/{doc_id}/download"),
        stranger_api.delete(f"/documents/{doc_id}"),
        stranger_api.post(f"/documents/{doc_id}/reindex"),
        upload(stranger_api, collection.pk, [("x.md", b"x")]),
    ):
        assert response.status_code == 404 and error_code(response) == "not_found"
    assert Document.objects.filter(collection=collection).count() == 1


def test_a_malformed_multipart_body_is_a_400(staff_api, collection) -> None:
    response = staff_api.post(
        f"/collections/{collection.pk}/documents", data=b"--x\r\n", content_type="multipart/form-data"
    )
    assert response.status_code == 400 and error_code(response) == "bad_request"


def test_upload_over_the_limit_is_413_naming_the_limit_and_stores_nothing(settings, staff_api, collection) -> None:
    settings.MAX_UPLOAD_BYTES = 1024 * 1024
    response = upload(staff_api, collection.pk, [("small.md", b"ok"), ("big.bin", b"x" * (1024 * 1024 + 1))])
    assert response.status_code == 413
    assert error_code(response) == "upload_too_large"
    error = response.json()["error"]
    assert "1 MB" in error["message"] and "big.bin" in error["message"]
    assert error["limit_bytes"] == 1024 * 1024
    assert not Document.objects.filter(collection=collection).exists()


def test_upload_with_an_idempotency_key_is_done_once(staff_api, collection) -> None:
    first = upload(staff_api, collection.pk, [("a.md", b"Alpha.")], headers={"Idempotency-Key": "k-1"})
    assert first.status_code == 201
    retry = upload(staff_api, collection.pk, [("a.md", b"Alpha.")], headers={"Idempotency-Key": "k-1"})
    assert retry.status_code == 201
    assert retry["Idempotent-Replayed"] == "true"
    assert retry.json() == first.json()
    assert retry.json()["documents"][0]["duplicate"] is False  # the first response, not a second upload
    other = upload(staff_api, collection.pk, [("a.md", b"Different bytes.")], headers={"Idempotency-Key": "k-1"})
    assert other.status_code == 422 and error_code(other) == "idempotency_key_reused"
    assert Document.objects.filter(collection=collection).count() == 1


def test_a_failed_upload_gives_its_idempotency_key_back(settings, staff_api, collection) -> None:
    settings.MAX_UPLOAD_BYTES = 10
    refused = upload(staff_api, collection.pk, [("a.md", b"more than ten bytes")], headers={"Idempotency-Key": "k"})
    assert refused.status_code == 413
    settings.MAX_UPLOAD_BYTES = 1024
    accepted = upload(staff_api, collection.pk, [("a.md", b"more than ten bytes")], headers={"Idempotency-Key": "k"})
    assert accepted.status_code == 201


def test_expired_idempotency_keys_are_forgotten(settings, staff_api, collection) -> None:
    upload(staff_api, collection.pk, [("a.md", b"Alpha.")], headers={"Idempotency-Key": "old"})
    IdempotencyKey.objects.update(created_at=timezone.now() - timedelta(hours=settings.API_IDEMPOTENCY_TTL_HOURS + 1))
    fresh = upload(staff_api, collection.pk, [("b.md", b"Beta.")], headers={"Idempotency-Key": "old"})
    assert fresh.status_code == 201 and "Idempotent-Replayed" not in fresh
    assert fresh.json()["documents"][0]["document"]["name"] == "b.md"


def test_reindex_queues_the_document_again(staff_api, staff) -> None:
    collection = CollectionFactory.create(created_by=staff)
    result = ingest_services.document_upload(
        collection=collection, name="n.md", fileobj=io.BytesIO(b"# Notes\n\nSome text."), enqueue=False
    )
    pipeline.document_process(document_id=result.document.pk)
    assert Document.objects.get(pk=result.document.pk).status == "ready"
    response = staff_api.post(f"/documents/{result.document.pk}/reindex")
    assert response.status_code == 202 and response.json()["status"] == "queued"
    pipeline.document_process(document_id=result.document.pk)
    again = api_for(staff).get(f"/documents/{result.document.pk}").json()
    assert again["status"] == "ready" and again["chunks"] >= 1
