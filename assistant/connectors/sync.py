"""A connector's run: list the source, compare with what the collection holds, bring the differences in.

For each item the source lists (in source-id order), compared with its
``ConnectorItem`` row:

* same version as recorded: nothing is read (only its access is compared, and a
  changed access re-restricts the document without re-embedding it);
* a new version: the bytes are read and hashed; the same hash only updates the
  recorded version, a new one becomes a new version of the document through the
  upload path (``ingest.services.document_upload``), which replaces the old one
  atomically once it is ready;
* a new source id: read and hashed; the hash of an item that has vanished from the
  listing makes it a rename (the document is kept, only its name and link change),
  otherwise it is a new document;
* rows whose source id is no longer listed (and were not renamed) are deleted with
  their documents;
* the same source id and version at a new link (an item moved or renamed where its id
  is stable, as in SharePoint) keeps its document: only its name and link change;
* an item that names a ``parent`` (a Confluence page's attachment) becomes a child
  document of the parent's document: it stays with the parent's newest version and is
  deleted with it. The source gives it the parent's access.

A source with its own change tracking (``Source.list_changes``, SharePoint's delta
query) lists only what changed since the cursor stored on the connector, and names
what was deleted; the cursor moves on only when a run settled every item.

Each item is settled in a transaction of its own that writes its document and its
row together, so a run killed at any point leaves every item either done or not
started; the next run re-lists and finds only the rest to do (no duplicates: one
row per source id, and a settled item compares equal). A failing item is recorded
on its row and retried next run; the others go on. A source that cannot be listed
completely changes nothing: half a listing would read as deletions.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field, replace
from datetime import timedelta
from functools import partial
from typing import IO, Any

from django import db
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from assistant.connectors import liveness
from assistant.connectors.models import Connector, ConnectorItem
from assistant.connectors.secrets import credentials_open
from assistant.connectors.sources import (
    EVERYONE,
    Changes,
    ItemError,
    Source,
    SourceError,
    SourceItem,
    source_type,
)
from ingest import queue, services
from ingest.models import Document

logger = logging.getLogger(__name__)

State = Connector.State
# Documents nobody outside the collection's managers reads: what an item whose access is
# not (yet) known is restricted to. It has no members; managers see restricted documents anyway.
MANAGERS_ONLY_GROUP = "connectors: managers only"
ACTIONS = ("added", "updated", "renamed", "permissions", "unchanged", "deleted", "failed")
_ENQUEUE_EVERY = 32


class SyncBusy(Exception):
    """Another run of the connector is working right now (its heartbeat is fresh)."""


class SyncRefused(Exception):
    """The connector may not run now (paused); the message says why."""


@dataclass(frozen=True)
class ItemResult:
    source_id: str
    name: str
    action: str
    error: str = ""

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


@dataclass
class SyncReport:
    connector: str
    dry_run: bool
    items: list[ItemResult] = field(default_factory=list)
    seen: int = 0
    fetched: int = 0
    bytes_read: int = 0
    error: str = ""  # the source as a whole could not be read
    queued: list[int] = field(default_factory=list)  # new documents, for a caller that processes them

    @property
    def counts(self) -> dict[str, int]:
        found = Counter(i.action for i in self.items)
        return {a: found[a] for a in ACTIONS}

    def summary(self) -> dict[str, Any]:
        return {
            "connector": self.connector, "dry_run": self.dry_run, "seen": self.seen, "fetched": self.fetched,
            "bytes_read": self.bytes_read, **self.counts, "error": self.error,
        }  # fmt: skip


def source_for(connector: Connector) -> Source:
    return source_type(connector.kind)(connector.settings, credentials_open(connector.credentials))


def connector_claim(connector_id: int) -> Connector:
    """Take the connector for a run, under its row lock (``SyncBusy``/``SyncRefused`` if not ours)."""
    now = timezone.now()
    with transaction.atomic():
        connector = Connector.objects.select_for_update().filter(pk=connector_id).first()
        if connector is None:
            raise Connector.DoesNotExist(f"Connector {connector_id} no longer exists.")
        if connector.paused:
            Connector.objects.filter(pk=connector_id, state=State.QUEUED).update(state=State.IDLE)
            raise SyncRefused(f"The connector '{connector.name}' is paused; resume it first.")
        stall = timedelta(seconds=settings.CONNECTOR_STALL_AFTER_S)
        if connector.state == State.RUNNING and connector.heartbeat_at and now - connector.heartbeat_at < stall:
            raise SyncBusy(f"The connector '{connector.name}' is being synced right now.")
        fields = {
            "state": State.RUNNING, "heartbeat_at": now, "started_at": now, "finished_at": None,
            "attempts": connector.attempts + 1, "cursor": "", "seen": 0, "fetched": 0, "failed": 0,
            "bytes_read": 0, "last_error": "",
        }  # fmt: skip
        Connector.objects.filter(pk=connector_id).update(**fields)
        connector.refresh_from_db()
        return connector


def connector_sync(
    *,
    connector: Connector,
    dry_run: bool = False,
    enqueue: bool = True,
    on_item: Callable[[ItemResult], None] | None = None,
) -> SyncReport:
    """Run one sync of ``connector`` here (a worker's task, ``connector sync --wait``, a dry run).

    A real run claims the connector first (``connector_claim``). ``dry_run`` reads
    what it must to decide (new and changed items are hashed) and writes nothing.
    ``enqueue=False`` leaves the new documents queued for the caller (their ids are
    in ``report.queued``). ``on_item`` hears each item's result as it is settled.
    """
    if not dry_run:
        connector = connector_claim(connector.pk)
    run = _Run(connector, dry_run=dry_run, enqueue=enqueue, on_item=on_item)
    try:
        with nullcontext() if dry_run else liveness.heartbeat(connector.pk):
            run.run()
    except (db.OperationalError, db.InterfaceError):
        # Transient: the task retries; a stale heartbeat lets the retry take the connector.
        if not dry_run:
            Connector.objects.filter(pk=connector.pk).update(state=State.QUEUED, heartbeat_at=None)
        raise
    except Exception as exc:
        from celery.exceptions import SoftTimeLimitExceeded

        if isinstance(exc, SoftTimeLimitExceeded):
            run.report.error = "The sync took longer than its time limit; the next run goes on from where it stopped."
        else:
            logger.exception("Sync of connector %s failed", connector.pk)
            run.report.error = f"The sync stopped: {exc}"
    finally:
        run.flush_queue()
    if not dry_run:
        run.finish()
    return run.report


class _Run:
    def __init__(
        self, connector: Connector, *, dry_run: bool, enqueue: bool, on_item: Callable[[ItemResult], None] | None
    ) -> None:
        self.connector = connector
        self.dry_run = dry_run
        self.enqueue = enqueue
        self.on_item = on_item
        self.report = SyncReport(connector=connector.name, dry_run=dry_run)
        self.pending: list[int] = []
        self.groups: dict[str, Group] = {}  # looked up once per run
        self.managers_only: dict[str, Group] = {}
        self.looked_up: set[str] = set()
        self.last_beat = 0.0
        self.next_cursor: str | None = None  # stored by ``finish`` when the run settled everything

    def run(self) -> None:
        source = source_for(self.connector)
        try:
            self._run(source)
        finally:
            close = getattr(source, "close", None)  # a source holding a connection (IMAP, SMB) ends it
            if close is not None:
                close()

    def _run(self, source: Source) -> None:
        rows = {r.source_id: r for r in ConnectorItem.objects.filter(connector=self.connector)}
        recall = getattr(source, "recall", None)  # sources.Remembers
        if recall is not None:
            recall({sid: row.memo for sid, row in rows.items() if row.memo})
        try:
            changes = self._changes(source, self.connector.changes_cursor)
        except SourceError as exc:
            self.report.error = str(exc)
            return
        listing = changes.items
        if changes.full and not listing and any(r.document_id for r in rows.values()):
            # An unmounted share looks like an empty folder: never read that as "delete everything".
            self.report.error = (
                f"The source lists no items, but {len(rows)} were synced before; nothing was deleted. "
                "Check that it is mounted and readable; remove the connector to drop its documents."
            )
            return
        self.report.seen = len(listing)
        listed = {item.source_id for item in listing}
        if changes.full:
            self.vanished = {sid: row for sid, row in rows.items() if sid not in listed}
        else:  # only what the source says is gone
            self.vanished = {sid: rows[sid] for sid in changes.deleted if sid in rows and sid not in listed}
        self.by_hash: dict[str, list[ConnectorItem]] = defaultdict(list)
        for row in self.vanished.values():
            if row.document_id and row.content_hash:
                self.by_hash[row.content_hash].append(row)
        for item in listing:
            self._settle(item, partial(self._item, source, item, rows.get(item.source_id)), item.name)
            self._remember(item, rows.get(item.source_id))
            self._beat(item.source_id)
        for source_id, row in sorted(self.vanished.items()):
            self._settle(row, partial(self._delete, row), _name_of(row))
            self._beat(source_id)
        # A failed item is not listed again by a cursor that moved past it: keep the old
        # one, so the next run asks for the same changes (settled items compare equal).
        if not any(i.action == "failed" for i in self.report.items):
            self.next_cursor = changes.cursor
        if not changes.full and set(changes.deleted) - set(rows):
            # Something never synced was deleted: most likely a folder, and a delta query
            # need not name each item that went with it. The next run lists everything.
            self.next_cursor = ""

    def _changes(self, source: Source, cursor: str) -> Changes:
        """What changed since ``cursor`` (a source with a delta query), or the whole listing."""
        list_changes = getattr(source, "list_changes", None)
        if list_changes is not None:
            found: Changes = list_changes(cursor)
            return found
        return Changes(items=self._list(source), cursor="", full=True)

    def _list(self, source: Source) -> list[SourceItem]:
        """The whole listing; the count seen so far shows as progress (a site is listed by reading it)."""
        listing = []
        for item in source.list_items():
            listing.append(item)
            self.report.seen = len(listing)
            self._beat(item.source_id)
        return listing

    def _remember(self, item: SourceItem, row: ConnectorItem | None) -> None:
        """Keep what the source wants back next run; not for a failed item, which is read afresh."""
        if self.dry_run or not item.memo or self.report.items[-1].action == "failed":
            return
        if row is None or row.memo != item.memo:
            ConnectorItem.objects.filter(connector=self.connector, source_id=item.source_id).update(memo=item.memo)

    def _settle(self, thing: Any, work: Callable[[], str], name: str) -> None:
        source_id = thing.source_id
        try:
            action, error = work(), ""
        except (ItemError, services.UploadRejected) as exc:
            action, error = "failed", str(exc)
        except (db.OperationalError, db.InterfaceError):
            raise
        except Exception as exc:
            from celery.exceptions import SoftTimeLimitExceeded

            if isinstance(exc, SoftTimeLimitExceeded):
                raise
            logger.exception("Connector %s: item %s failed", self.connector.pk, source_id)
            action, error = "failed", f"{type(exc).__name__}: {exc}"
        if action == "failed" and not self.dry_run and isinstance(thing, SourceItem):
            _record_failure(self.connector, thing, error)
        result = ItemResult(source_id=source_id, name=name, action=action, error=error)
        self.report.items.append(result)
        if self.on_item is not None:
            self.on_item(result)

    def _item(self, source: Source, item: SourceItem, row: ConnectorItem | None) -> str:
        access = source.access(item)
        if row is not None and row.document_id and row.version == item.version and not row.error:
            if row.link != item.link:  # moved or renamed in place (same id, same content)
                return self._rename(row, item, access)
            return self._restrict(row, access) or "unchanged"
        with source.open_item(item) as stream:
            spooled, digest = self._read(stream)
        if item.extra.get("name"):  # named from its content (a message's subject), known once read
            item = replace(item, name=item.extra["name"])
        with spooled:
            if row is not None and row.document_id and digest == row.content_hash:
                if not self.dry_run:
                    ConnectorItem.objects.filter(pk=row.pk).update(version=item.version, error="", link=item.link)
                return self._restrict(row, access) or "unchanged"
            if row is None and self.by_hash.get(digest):
                return self._rename(self.by_hash[digest].pop(0), item, access)
            if self.dry_run:
                return "updated" if row is not None and row.document_id else "added"
            return self._store(item, row, access, spooled, digest)

    def _read(self, stream: IO[bytes]) -> tuple[IO[bytes], str]:
        digest = hashlib.sha256()
        spooled: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)  # noqa: SIM115 (caller closes)
        limit = settings.MAX_UPLOAD_BYTES
        size = 0
        while block := stream.read(1024 * 1024):
            size += len(block)
            self.report.bytes_read += len(block)
            if size > limit:
                spooled.close()
                raise ItemError(f"The file is larger than the upload limit of {limit // (1024 * 1024)} MB.")
            digest.update(block)
            spooled.write(block)
        spooled.seek(0)
        self.report.fetched += 1
        return spooled, digest.hexdigest()

    def _store(
        self, item: SourceItem, row: ConnectorItem | None, access: list[str], spooled: IO[bytes], digest: str
    ) -> str:
        previous = row.document if row is not None and row.document_id else None
        with transaction.atomic():
            groups, applied = self._groups(access)
            result = services.document_upload(
                collection=self.connector.collection, name=item.name, fileobj=spooled, enqueue=False,
                restrict_to_groups=groups, from_source=True, supersedes=previous, parent=self._parent(item),
            )  # fmt: skip
            if previous is not None:
                # The old version is deleted with what came out of it once the new one is
                # ready; the source's own children (attachments) move to the new one.
                Document.objects.filter(parent=previous, connector_items__connector=self.connector).update(
                    parent=result.document
                )
            ConnectorItem.objects.update_or_create(
                connector=self.connector, source_id=item.source_id,
                defaults={"link": item.link, "version": item.version, "content_hash": digest,
                          "document": result.document, "access": applied, "error": ""},
            )  # fmt: skip
        self.pending.append(result.document.pk)
        self.report.queued.append(result.document.pk)
        if len(self.pending) >= _ENQUEUE_EVERY:
            self.flush_queue()
        return "updated" if previous is not None else "added"

    def _parent(self, item: SourceItem) -> Document | None:
        """The document of the item ``item`` belongs to (``ItemError`` while it has none)."""
        if not item.parent:
            return None
        found = (
            ConnectorItem.objects.filter(connector=self.connector, source_id=item.parent)
            .exclude(document=None)
            .select_related("document")
            .first()
        )
        if found is None or found.document is None:
            raise ItemError(f"It belongs to {item.parent}, which is not in the collection yet; retried next sync.")
        return found.document

    def _rename(self, row: ConnectorItem, item: SourceItem, access: list[str]) -> str:
        self.vanished.pop(row.source_id, None)
        if self.dry_run:
            return "renamed"
        with transaction.atomic():
            ConnectorItem.objects.filter(pk=row.pk).update(
                source_id=item.source_id, link=item.link, version=item.version, error=""
            )
            # The name shown in lists and citations; the passages stay as they were embedded.
            moved = {"parent": self._parent(item)} if item.parent else {}
            Document.objects.filter(connector_items=row.pk).update(name=item.name[:500], **moved)
            row.source_id = item.source_id
            self._restrict(row, access)
        return "renamed"

    def _restrict(self, row: ConnectorItem, access: list[str]) -> str:
        """Apply a changed access to the item's document (no re-embedding); "permissions" if it changed."""
        groups, applied = self._groups(access)
        if applied == row.access:
            return ""
        if not self.dry_run:
            with transaction.atomic():
                document = Document.objects.filter(connector_items=row.pk).first()
                if document is not None:
                    services.document_restrict(document=document, groups=groups)
                ConnectorItem.objects.filter(pk=row.pk).update(access=applied)
        return "permissions"

    def _groups(self, access: list[str]) -> tuple[list[Group], list[str]]:
        """The groups to restrict to, and their names as recorded (``["*"]``: no restriction)."""
        if EVERYONE in access:
            return [], [EVERYONE]
        missing = [n for n in access if n not in self.looked_up]
        if missing:
            self.looked_up.update(missing)
            self.groups.update({g.name: g for g in Group.objects.filter(name__in=missing)})
        groups = [self.groups[n] for n in access if n in self.groups]
        if not groups:
            # Least permissive until known: no group mapped (or none of them exists yet).
            if self.dry_run:
                return [], [MANAGERS_ONLY_GROUP]
            if MANAGERS_ONLY_GROUP not in self.managers_only:
                self.managers_only[MANAGERS_ONLY_GROUP] = Group.objects.get_or_create(name=MANAGERS_ONLY_GROUP)[0]
            groups = [self.managers_only[MANAGERS_ONLY_GROUP]]
        return groups, sorted(g.name for g in groups)

    def _delete(self, row: ConnectorItem) -> str:
        if self.dry_run:
            return "deleted"
        document = Document.objects.filter(pk=row.document_id).first() if row.document_id else None
        if document is not None:
            # The source's own children (a page's attachments) first: deleting a document
            # removes its children's rows, not their files and passages.
            for child in Document.objects.filter(parent=document, connector_items__connector=self.connector):
                services.document_delete(document=child)
        while document is not None:
            older = Document.objects.filter(pk=document.supersedes_id).first() if document.supersedes_id else None
            services.document_delete(document=document)  # its row goes with it (CASCADE)
            document = older
        ConnectorItem.objects.filter(pk=row.pk).delete()
        return "deleted"

    def _beat(self, cursor: str) -> None:
        """Progress a person can see (and a heartbeat too), now and then."""
        now = time.monotonic()
        if self.dry_run or now - self.last_beat < settings.CONNECTOR_HEARTBEAT_S:
            return
        self.last_beat = now
        self._write_progress(cursor=cursor[:1000], heartbeat_at=timezone.now())

    def _write_progress(self, **fields: Any) -> None:
        counts = self.report.counts
        Connector.objects.filter(pk=self.connector.pk).update(
            seen=self.report.seen, fetched=self.report.fetched, failed=counts["failed"],
            bytes_read=self.report.bytes_read, **fields,
        )  # fmt: skip

    def flush_queue(self) -> None:
        if self.pending and self.enqueue:
            queue.documents_enqueue(self.pending)
        self.pending = []

    def finish(self) -> None:
        failures = [i for i in self.report.items if i.action == "failed"]
        error = self.report.error
        if not error and failures:
            first = failures[0]
            error = f"{len(failures)} item(s) failed; the first: {first.source_id}: {first.error}"
        more = {"changes_cursor": self.next_cursor} if self.next_cursor is not None and not self.report.error else {}
        self._write_progress(
            state=State.IDLE, heartbeat_at=None, finished_at=timezone.now(), attempts=0, cursor="",
            summary=self.report.counts, last_error=error[:4000], **more,
        )  # fmt: skip


def _name_of(row: ConnectorItem) -> str:
    return row.source_id.rsplit("/", 1)[-1]


def _record_failure(connector: Connector, item: SourceItem, error: str) -> None:
    """Remember a failed item (and keep its document, if an older version of it is in)."""
    ConnectorItem.objects.update_or_create(
        connector=connector, source_id=item.source_id, defaults={"link": item.link, "error": error[:4000]}
    )
