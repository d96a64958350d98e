"""A mounted folder (a local disk, an NFS or SMB mount): files under a path, filtered by globs.

Settings: ``path`` (absolute), ``include`` and ``exclude`` (globs on the path
relative to it, ``connectors.sources.globs``; default: everything), and ``groups``:
an ordered list of ``{"glob": ..., "groups": [...]}``, the first that matches a
file deciding who may read it (``"*"``: every reader of the collection). A file no
entry matches is seen only by the collection's managers.

Hidden files and folders and Office lock files (``~$...``) are skipped. A link is
followed only to a file inside the folder: one pointing elsewhere fails as an item,
so a link planted in a share cannot pull ``/etc`` into a collection.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO, Any

from assistant.connectors.sources import EVERYONE, ItemError, SourceError, SourceItem
from assistant.connectors.sources.globs import first_match, glob_matches


def _patterns(value: Any, name: str) -> list[str]:
    if value in (None, ""):
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        raise ValueError(f"'{name}' must be a list of glob patterns.")
    return [v.strip() for v in value]


def _mapping(value: Any) -> list[dict[str, Any]]:
    if value in (None, ""):
        return []
    if isinstance(value, dict):  # {"glob": ["group", ...]}, in its order
        value = [{"glob": k, "groups": v} for k, v in value.items()]
    if not isinstance(value, list):
        raise ValueError('\'groups\' must be a list of {"glob": ..., "groups": [...]} entries.')
    cleaned = []
    for entry in value:
        if not isinstance(entry, dict) or not isinstance(entry.get("glob"), str) or not entry["glob"].strip():
            raise ValueError("Each entry of 'groups' needs a 'glob'.")
        groups = entry.get("groups", [])
        if isinstance(groups, str):
            groups = [g for g in groups.split(",") if g.strip()]
        if not isinstance(groups, list) or not all(isinstance(g, str) and g.strip() for g in groups):
            raise ValueError(f"The groups for '{entry['glob']}' must be a list of group names (or \"*\").")
        cleaned.append({"glob": entry["glob"].strip(), "groups": [g.strip() for g in groups]})
    return cleaned


class FolderSource:
    def __init__(self, settings: dict[str, Any], credentials: dict[str, str]) -> None:
        self.root = Path(settings["path"])
        self.include = settings.get("include") or ["**"]
        self.exclude = settings.get("exclude") or []
        self.mapping = settings.get("groups") or []

    @staticmethod
    def clean_settings(settings: dict[str, Any]) -> dict[str, Any]:
        raw = str(settings.get("path") or "").strip()
        if not raw:
            raise ValueError("A folder connector needs --path, the folder to read.")
        path = Path(raw)
        if not path.is_absolute():
            raise ValueError(f"The path must be absolute: {raw}")
        if not path.is_dir():
            raise ValueError(f"No such folder (or not readable here): {raw}")
        return {
            "path": str(path),
            "include": _patterns(settings.get("include"), "include"),
            "exclude": _patterns(settings.get("exclude"), "exclude"),
            "groups": _mapping(settings.get("groups")),
        }

    def _wanted(self, relative: str) -> bool:
        name = relative.rsplit("/", 1)[-1]
        if name.startswith(("~$", ".")):
            return False
        return first_match(self.include, relative) is not None and first_match(self.exclude, relative) is None

    def list_items(self) -> Iterator[SourceItem]:
        if not self.root.is_dir():
            raise SourceError(f"The folder {self.root} does not exist or is not mounted.")
        failures: list[OSError] = []
        for folder, dirs, files in os.walk(self.root, onerror=failures.append):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            base = Path(folder)
            for name in sorted(files):
                path = base / name
                relative = path.relative_to(self.root).as_posix()
                if not self._wanted(relative):
                    continue
                try:
                    stat = path.stat()
                    version = f"{stat.st_mtime_ns}:{stat.st_size}"
                    size = stat.st_size
                except OSError:  # a dangling link: listed, and it fails as an item
                    version, size = "unreadable", 0
                if path.is_symlink():
                    version = f"link:{version}"
                yield SourceItem(source_id=relative, name=name, link=str(path), version=version, size=size)
        if failures:
            # An incomplete listing would read as deletions: refuse to sync instead.
            raise SourceError(f"Cannot list {failures[0].filename}: {failures[0].strerror}")

    def open_item(self, item: SourceItem) -> AbstractContextManager[IO[bytes]]:
        path = self.root / item.source_id
        try:
            resolved = path.resolve(strict=True)
        except OSError as exc:
            raise ItemError(f"Cannot read {item.source_id}: {exc.strerror or exc}") from None
        if not resolved.is_relative_to(self.root.resolve()):
            raise ItemError(f"{item.source_id} is a link to a file outside the folder; it is not read.")
        try:
            return open(resolved, "rb")
        except OSError as exc:
            raise ItemError(f"Cannot read {item.source_id}: {exc.strerror or exc}") from None

    def access(self, item: SourceItem) -> list[str]:
        for entry in self.mapping:
            if glob_matches(entry["glob"], item.source_id):
                groups: list[str] = entry["groups"]
                return [EVERYONE] if EVERYONE in groups else sorted(set(groups))
        return []


def mapping_parse(entries: list[str]) -> list[dict[str, Any]]:
    """``GLOB=GROUP[,GROUP]`` lines (``GLOB=*``: every reader) as the ``groups`` setting."""
    mapping = []
    for entry in entries:
        if not entry.strip():
            continue
        glob, sep, groups = entry.partition("=")
        if not sep or not glob.strip() or not groups.strip():
            raise ValueError(f"A group mapping is GLOB=GROUP[,GROUP...] (or GLOB=* for every reader), not '{entry}'.")
        mapping.append({"glob": glob.strip(), "groups": [g.strip() for g in groups.split(",") if g.strip()]})
    return mapping
