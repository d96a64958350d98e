"""What a connector reads from: one module per source type behind one small interface.

A source lists its items (cheaply: ids, names and versions, no content), opens one
item's bytes, and says who may read an item. The sync (``connectors.sync``) does
the rest the same way for every type: comparing with what the collection holds,
fetching only what changed, versions, renames, deletions, restrictions. A new type
(SMB, IMAP, WebDAV, ...) is one module here and one line in ``SOURCE_TYPES``.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import IO, Any, Protocol

# Module and class of each source type.
SOURCE_TYPES: dict[str, str] = {
    "folder": "assistant.connectors.sources.folder:FolderSource",
    "web": "assistant.connectors.sources.web:WebSource",
    "webdav": "assistant.connectors.sources.webdav:WebDavSource",
    "imap": "assistant.connectors.sources.imap:ImapSource",
    "smb": "assistant.connectors.sources.smb:SmbSource",
    "confluence": "assistant.connectors.sources.confluence:ConfluenceSource",
    "sharepoint": "assistant.connectors.sources.sharepoint:SharePointSource",
}
# Listed in the command's choices; not implemented yet (docs/connectors.md).
PLANNED_TYPES: tuple[str, ...] = ()

# Access meaning "every reader of the collection" (no restriction).
EVERYONE = "*"


class SourceError(Exception):
    """The source as a whole cannot be read (a missing folder, a refused login): nothing is changed."""


class ItemError(Exception):
    """One item cannot be read; the sync records it for that item and goes on."""


@dataclass(frozen=True)
class SourceItem:
    source_id: str  # stable within the source (a relative path, a message id, a URL)
    name: str  # the file name the document gets
    link: str  # what a person opens: the absolute path, the URL
    version: str  # changes whenever the content may have changed (mtime and size, an ETag)
    size: int = 0
    # The source id of the item this one belongs to (a page's attachment): its document
    # becomes a child of that item's document, as a mail's attachments are of the mail.
    parent: str = ""
    # The source's own words for who may read it (ACL groups, a mailbox owner); the
    # source maps them to product group names in ``access``. ``open_item`` may set
    # ``extra["name"]`` when the name shows only in the content (a message's subject).
    extra: dict[str, Any] = field(default_factory=dict, compare=False)
    # What the source wants back on its next run (``Remembers``): validators, a page's links.
    memo: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class Changes:
    """What a source that tracks its own changes (a delta query) reports since ``cursor``.

    ``full``: ``items`` is everything in the source (the first run, or the source asked
    to start over), so what is not listed is gone, as for ``list_items``. Otherwise
    ``items`` are only the new and changed ones and ``deleted`` the source ids removed;
    the rest is left as it is. ``cursor`` is stored once the run has settled every item,
    and handed back next time.
    """

    items: list[SourceItem]
    cursor: str
    full: bool
    deleted: list[str] = field(default_factory=list)


class Source(Protocol):
    """One source type, configured from a connector's settings and credentials."""

    def list_items(self) -> Iterator[SourceItem]:
        """Every item now in the source; raises ``SourceError`` if the listing is incomplete."""
        ...

    def open_item(self, item: SourceItem) -> AbstractContextManager[IO[bytes]]:
        """The item's bytes as a stream; raises ``ItemError`` for this item alone."""
        ...

    # Optional: ``list_changes(cursor: str) -> Changes`` for a source that can say what
    # changed since the last run (SharePoint's delta query); the sync then uses it
    # instead of ``list_items`` and stores the cursor it returns.

    def access(self, item: SourceItem) -> list[str]:
        """Product group names that may read the item; ``[EVERYONE]``: no restriction.

        Empty means "not known": the sync then restricts the document to the
        collection's managers (least permissive until known).
        """
        ...

    # A source holding a connection may also have ``close()``: the sync calls it when done.


class Remembers(Protocol):
    """A source that keeps something per item between runs (optional, beside ``Source``).

    The sync hands it the ``memo`` of every item it synced before listing, and stores
    each listed item's ``memo`` after settling it. A web site uses it for conditional
    requests: an unchanged page answers 304 without a body, so the links it held
    must come from the last run.
    """

    def recall(self, memos: dict[str, dict[str, Any]]) -> None: ...


class SourceType(Protocol):
    """The class behind a type name: checks settings, then builds a ``Source``."""

    @staticmethod
    def clean_settings(settings: dict[str, Any]) -> dict[str, Any]:
        """The settings as stored, or ``ValueError`` naming what is wrong."""
        ...

    def __call__(self, settings: dict[str, Any], credentials: dict[str, str]) -> Source: ...


def source_type(kind: str) -> SourceType:
    """The class for ``kind``; ``ValueError`` for a type not (yet) available."""
    if kind not in SOURCE_TYPES:
        if kind in PLANNED_TYPES:
            raise ValueError(
                f"Connectors of type '{kind}' are not available yet; available: {', '.join(SOURCE_TYPES)}."
            )
        raise ValueError(f"Unknown connector type '{kind}'; available: {', '.join(SOURCE_TYPES)}.")
    module, _, name = SOURCE_TYPES[kind].partition(":")
    found: SourceType = getattr(importlib.import_module(module), name)
    return found
