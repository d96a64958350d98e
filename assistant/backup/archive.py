"""The backup archive: a tar file of the database copy, the originals and a manifest.

The manifest comes last, written once every member's SHA-256 is known: an archive cut
short has no manifest, and a damaged member no longer matches its checksum. Reading
checks everything into a staging folder before the caller touches anything.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any

FORMAT = 1
MANIFEST = "manifest.json"
DATABASE_MEMBERS = {"postgresql": "database/postgresql.dump", "sqlite": "database/db.sqlite3"}
ORIGINALS = "originals/"
SECRET_KEY = "secret_key"  # noqa: S105 (the member's name, not a key)
_CHUNK = 1024 * 1024


class BackupError(Exception):
    """A backup or restore that cannot go on; the message says why, in an operator's words."""


@dataclass
class Manifest:
    version: str  # the product's version that wrote it
    created_at: str
    vendor: str  # "postgresql" or "sqlite"
    database_tool: str  # what copied the database, with its version
    migrations: list[tuple[str, str]]  # every applied (app, migration) in the copy
    counts: dict[str, int | None]
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> sha256, size
    missing_originals: list[str] = field(default_factory=list)
    format: int = FORMAT

    @property
    def heads(self) -> dict[str, str]:
        """The last applied migration of each app (names sort by their number)."""
        heads: dict[str, str] = {}
        for app, name in self.migrations:
            heads[app] = max(heads.get(app, name), name)
        return heads

    def as_json(self) -> bytes:
        data = asdict(self)
        data["heads"] = self.heads
        return json.dumps(data, indent=2, sort_keys=True).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Manifest:
        try:
            data = json.loads(raw)
            if data.get("format") != FORMAT:
                raise BackupError(
                    f"the archive's format {data.get('format')!r} is not one this version reads ({FORMAT})"
                )
            return cls(
                version=str(data["version"]),
                created_at=str(data["created_at"]),
                vendor=str(data["vendor"]),
                database_tool=str(data["database_tool"]),
                migrations=[(str(app), str(name)) for app, name in data["migrations"]],
                counts={str(k): v for k, v in data["counts"].items()},
                members={str(k): dict(v) for k, v in data["members"].items()},
                missing_originals=[str(n) for n in data.get("missing_originals", [])],
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BackupError(f"the archive's manifest is unreadable ({exc})") from exc


class _Hashing:
    """A file object that hashes what is read through it."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.inner.read(size)
        self.digest.update(data)
        return data


class ArchiveWriter:
    """Writes ``path`` under a temporary name and renames it only once it is complete."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.partial = path.with_name(f".{path.name}.partial")
        self.members: dict[str, dict[str, Any]] = {}
        self._tar = tarfile.open(self.partial, "w", format=tarfile.PAX_FORMAT)  # noqa: SIM115

    def add_file(self, name: str, source: Path | str) -> None:
        with open(source, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            info = tarfile.TarInfo(name)
            info.size, info.mode = size, 0o600
            hashing = _Hashing(handle)
            self._tar.addfile(info, hashing)
        self.members[name] = {"sha256": hashing.digest.hexdigest(), "size": size}

    def add_bytes(self, name: str, data: bytes, *, checked: bool = True) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode = len(data), 0o600
        self._tar.addfile(info, io.BytesIO(data))
        if checked:
            self.members[name] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}

    def finish(self, manifest: Manifest) -> None:
        manifest.members = dict(self.members)
        self.add_bytes(MANIFEST, manifest.as_json(), checked=False)
        self._tar.close()
        with open(self.partial, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(self.partial, self.path)

    def abort(self) -> None:
        self._tar.close()
        self.partial.unlink(missing_ok=True)


def _safe_name(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts:
        raise BackupError(f"the archive names an unsafe path: {name!r}")
    return path


def archive_unpack(path: Path, staging: Path) -> Manifest:
    """Check the archive at ``path`` member by member and unpack it into ``staging``.

    Nothing outside ``staging`` is written. Raises ``BackupError`` for a file that is
    missing, not an archive, cut short, or whose members do not match the manifest.
    """
    if not path.is_file():
        raise BackupError(f"{path}: no such backup archive")
    damaged = f"{path} is not a complete backup archive; it may be truncated or damaged"
    try:
        with tarfile.open(path, "r:") as tar:
            try:
                manifest_member = tar.getmember(MANIFEST)
            except KeyError:
                raise BackupError(f"{damaged} (it has no manifest)") from None
            raw = tar.extractfile(manifest_member)
            manifest = Manifest.from_json(raw.read() if raw else b"")
            seen: set[str] = set()
            for member in tar.getmembers():
                if member.name == MANIFEST:
                    continue
                expected = manifest.members.get(member.name)
                if expected is None or not member.isfile():
                    raise BackupError(f"{damaged} (unexpected member {member.name!r})")
                target = staging.joinpath(*_safe_name(member.name).parts)
                target.parent.mkdir(parents=True, exist_ok=True)
                source = tar.extractfile(member)
                digest = hashlib.sha256()
                with open(target, "wb") as out:
                    while source and (block := source.read(_CHUNK)):
                        digest.update(block)
                        out.write(block)
                if digest.hexdigest() != expected["sha256"]:
                    raise BackupError(f"checksum mismatch for {member.name} in {path}: the archive is damaged")
                seen.add(member.name)
    except (tarfile.TarError, EOFError) as exc:
        raise BackupError(f"{damaged} ({exc})") from exc
    missing = sorted(set(manifest.members) - seen)
    if missing:
        raise BackupError(f"{damaged} (missing {', '.join(missing[:5])})")
    return manifest
