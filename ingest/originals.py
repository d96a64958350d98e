"""Where uploaded originals are kept: the one module that stores, reads and removes them.

The storage is Django's default storage (``settings.STORAGES["default"]``), chosen
by the settings from the environment:

- the embedded default: files under ``ASSISTANT_DATA_DIR/files``;
- ``ORIGINALS_DIR``: the same files in a folder of their own, which several web
  nodes and workers mount (NFS, a shared volume), so any node serves any download
  and any worker parses any upload;
- ``STORAGE_S3_BUCKET``: objects in an S3-compatible bucket (django-storages).

A stored name is opaque (``collections/<id>/<uuid>``, ``ingest.models``); the row
keeps the name the uploader gave. Parsers read a file on disk: where the storage has
no local paths, ``original_local_path`` copies the object to a temporary file in the
node's own data directory for as long as the parse needs it.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.files import File
from django.core.files.storage import Storage, default_storage

from ingest import disk

logger = logging.getLogger(__name__)

REMOTE_REFUSED = (
    "The file could not be stored: the storage for originals did not accept it. Try again; if it keeps failing, "
    "ask an administrator to check the storage (STORAGE_S3_*)."
)
_CHUNK = 1024 * 1024


class OriginalRefused(Exception):
    """The storage refused an upload's bytes; the message says why, in an uploader's words."""


def storage() -> Storage:
    """The storage every document's ``file`` field uses."""
    return default_storage


def has_local_paths() -> bool:
    """True when originals are files this process can open by path (a local or mounted folder)."""
    try:
        storage().path("")
    except NotImplementedError:
        return False
    return True


def original_save(*, document: Any, name: str, fileobj: IO[bytes]) -> None:
    """Write the uploaded bytes under the document's (opaque) file name; sets ``document.file``.

    A full data disk or a storage that refuses the bytes raises ``OriginalRefused``
    with a reason, and the part already written is removed.
    """
    store = storage()
    target = document.file.field.generate_filename(document, name)
    try:
        document.file = store.save(target, File(fileobj), max_length=document.file.field.max_length)
    except OSError as exc:
        _remove_partial(store, target)
        if disk.caused_by_full_disk(exc):
            logger.error("Upload of %r refused: no space left on the data disk (%s)", name, exc)
            raise OriginalRefused(disk.UPLOAD_REFUSED) from exc
        raise
    except Exception as exc:
        if has_local_paths():
            raise
        # An object store that is down or refuses the request (botocore's errors are not OSErrors).
        logger.error("Upload of %r refused: the storage for originals failed (%s)", name, exc)
        _remove_partial(store, target)
        raise OriginalRefused(REMOTE_REFUSED) from exc


def _remove_partial(store: Storage, target: str) -> None:
    try:
        if store.exists(target):
            store.delete(target)
    except Exception:
        logger.warning("Could not remove the partial original %s", target, exc_info=True)


def original_open(name: str | None) -> IO[bytes]:
    """The stored bytes of ``name``, for a download; ``FileNotFoundError`` if they are gone."""
    if not name:
        raise FileNotFoundError("the document has no stored original")
    if has_local_paths() and not Path(storage().path(name)).is_file():
        raise FileNotFoundError(name)
    # An object store answers a missing object with FileNotFoundError when it is opened.
    return storage().open(name, "rb")


@contextmanager
def original_local_path(name: str | None) -> Iterator[Path]:
    """A path on this node holding the original's bytes, valid until the block ends.

    With local paths that is the stored file itself (which may be missing: the caller
    finds out when it opens it); otherwise a temporary copy in the node's data directory
    (``DATA_DIR/tmp``), removed afterwards, and a missing object raises ``FileNotFoundError``.
    """
    if not name:
        raise FileNotFoundError("the document has no stored original")
    store = storage()
    if has_local_paths():
        yield Path(store.path(name))
        return
    folder = Path(settings.DATA_DIR) / "tmp"
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / f"original-{uuid.uuid4().hex}"
    try:
        with store.open(name, "rb") as source:
            stored_object = getattr(source, "obj", None)  # django-storages' S3 object
            if stored_object is not None:
                # boto3's managed transfer: ranged parts in parallel, straight to the file.
                stored_object.download_file(str(copy))
            else:
                with open(copy, "xb") as target:
                    shutil.copyfileobj(source, target, _CHUNK)
        yield copy
    finally:
        copy.unlink(missing_ok=True)


def originals_delete(names: Iterable[str | None]) -> None:
    """Remove stored originals (a name already gone is no error)."""
    store = storage()
    for name in names:
        if name:
            store.delete(name)


def originals_stored() -> list[str]:
    """Every name in the storage, sorted (what a restore would replace)."""
    if has_local_paths():
        root = Path(storage().path(""))
        if not root.is_dir():
            return []
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    found: list[str] = []
    pending = [""]
    while pending:
        folder = pending.pop()
        folders, files = storage().listdir(folder)
        prefix = f"{folder}/" if folder else ""
        found += [prefix + f for f in files]
        pending += [prefix + d for d in folders]
    return sorted(found)


def originals_check() -> str:
    """Where originals go, once the storage showed it can take one; raises when it cannot (``/readyz``).

    A folder must exist or be creatable and take a file (a full disk or a share that is
    not mounted fails here); a bucket must answer ``HeadBucket`` with these keys.
    """
    store = storage()
    if has_local_paths():
        folder = Path(store.path(""))
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".readyz-", delete=True) as probe:
            probe.write(b"ok")
            probe.flush()
            os.fsync(probe.fileno())
        return str(folder)
    bucket = store.bucket  # type: ignore[attr-defined]
    bucket.meta.client.head_bucket(Bucket=bucket.name)
    location = getattr(store, "location", "")
    return f"s3://{bucket.name}/{location}".rstrip("/")


def staging_parent() -> Path:
    """Where a restore unpacks an archive: beside the originals' folder (renames stay on one
    file system), or in the node's data directory when originals are objects."""
    if has_local_paths():
        return Path(storage().path("")).parent
    return Path(settings.DATA_DIR)


def originals_replace(source: Path) -> None:
    """Make the storage hold exactly the files under ``source`` (a restore), under their relative names.

    A folder is swapped in by renames; a bucket gets every file uploaded, then loses the
    objects the archive does not hold.
    """
    if has_local_paths():
        _swap_folder(source, Path(storage().path("")))
        return
    store = storage()
    keep = set()
    files = sorted(p for p in source.rglob("*") if p.is_file()) if source.is_dir() else []
    for path in files:
        name = path.relative_to(source).as_posix()
        with open(path, "rb") as handle:
            saved = store.save(name, File(handle))
        if saved != name:  # a storage renaming on collision would break every row's reference
            raise OSError(f"the storage stored {name} as {saved}: set it to overwrite (file_overwrite)")
        keep.add(name)
    originals_delete(n for n in originals_stored() if n not in keep)


def _swap_folder(source: Path, target: Path) -> None:
    """Put ``source`` in ``target``'s place (same file system: renames), removing what was there."""
    if not source.is_dir():
        source.mkdir(parents=True)
    aside = None
    if target.exists():
        aside = target.with_name(f".{target.name}-replaced-{os.getpid()}")
        target.rename(aside)
    source.rename(target)
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
