"""Originals in a folder of their own (``ORIGINALS_DIR``), and how the settings choose the storage.

The shared-folder mode is the embedded file storage at another path: what matters is
that nothing of an original lands in the node's data directory, and that the
environment reaches ``STORAGES`` as documented (the bucket mode's own tests are in
``test_originals_s3.py``).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ingest import originals, pipeline, services
from tests.api.conftest import api_for, streamed
from tests.conftest import REPO
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_a_shared_folder_holds_every_original_and_the_data_dir_none(settings, tmp_path: Path) -> None:
    settings.DATA_DIR = tmp_path / "node-data"
    settings.DATA_DIR.mkdir()
    settings.MEDIA_ROOT = tmp_path / "shared" / "originals"
    staff = UserFactory.create(is_staff=True)
    collection = CollectionFactory.create(created_by=staff)
    content = b"Canteen\n\nThe canteen opens at eight and closes at three."
    document = services.document_upload(
        collection=collection, name="canteen.txt", fileobj=io.BytesIO(content), user=staff, enqueue=False
    ).document
    assert originals.has_local_paths()
    stored = Path(settings.MEDIA_ROOT) / str(document.file.name)
    assert stored.read_bytes() == content
    assert originals.originals_stored() == [document.file.name]

    pipeline.document_process(document_id=document.pk)
    document.refresh_from_db()
    assert document.status == "ready"
    assert streamed(api_for(staff).get(f"/documents/{document.pk}/download")) == content
    assert not [p for p in settings.DATA_DIR.rglob("*") if p.is_file()]

    services.document_delete(document=document)
    assert not stored.exists()
    assert originals.originals_stored() == []


SHOW = """
import json, django
django.setup()
from django.conf import settings
print(json.dumps({"media": str(settings.MEDIA_ROOT), "default": settings.STORAGES["default"]}))
"""


def _settings_under(tmp_path: Path, **variables: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STORAGE_S3_", "ORIGINALS_DIR"))}
    env.update(DJANGO_SETTINGS_MODULE="assistant.settings", ASSISTANT_DATA_DIR=str(tmp_path / "data"), **variables)
    out = subprocess.run([sys.executable, "-c", SHOW], env=env, cwd=REPO, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_environment_chooses_the_originals_storage(tmp_path: Path) -> None:
    embedded = _settings_under(tmp_path)
    assert embedded["media"] == str((tmp_path / "data" / "files").resolve())
    assert embedded["default"] == {"BACKEND": "django.core.files.storage.FileSystemStorage"}

    folder = _settings_under(tmp_path, ORIGINALS_DIR=str(tmp_path / "shared"))
    assert folder["media"] == str((tmp_path / "shared").resolve())
    assert folder["default"]["BACKEND"] == "django.core.files.storage.FileSystemStorage"

    bucket = _settings_under(
        tmp_path, STORAGE_S3_BUCKET="originals", STORAGE_S3_ENDPOINT_URL="https://s3.internal:9000",
        STORAGE_S3_ACCESS_KEY_ID="key-id", STORAGE_S3_SECRET_ACCESS_KEY="key-secret", STORAGE_S3_PREFIX="/prod/",
        STORAGE_S3_VERIFY="/etc/ssl/private-ca.pem",
    )  # fmt: skip
    assert bucket["default"]["BACKEND"] == "storages.backends.s3.S3Storage"
    options = bucket["default"]["OPTIONS"]
    assert (options["bucket_name"], options["endpoint_url"], options["location"]) == (
        "originals", "https://s3.internal:9000", "prod",
    )  # fmt: skip
    assert (options["access_key"], options["secret_key"], options["region_name"]) == ("key-id", "key-secret", None)
    assert options["verify"] == "/etc/ssl/private-ca.pem" and options["addressing_style"] == "path"
    assert options["file_overwrite"] is True and options["querystring_auth"] is False
    unchecked = _settings_under(tmp_path, STORAGE_S3_BUCKET="originals", STORAGE_S3_VERIFY="false")
    assert unchecked["default"]["OPTIONS"]["verify"] is False
    assert unchecked["default"]["OPTIONS"]["access_key"] is None  # boto3's own chain then
