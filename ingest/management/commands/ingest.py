"""``manage.py ingest --collection NAME [--restrict-to-group GROUP]... [--wait] [--inline] [--json] PATH...``"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Count, Q, Sum

from ingest import pipeline, services
from ingest.management.selection import files_in_folder
from ingest.models import FINISHED, Document

STALL_HINT_AFTER_S = 30


def _expand(paths: list[str]) -> list[Path]:
    """The files named, and those in the folders named; a run with none is an error."""
    files: list[Path] = []
    empty: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = files_in_folder(path)
            if not found:
                empty.append(raw)
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise CommandError(f"No such file or folder: {raw}")
    if not files:
        raise CommandError(
            f"No file to ingest in {', '.join(empty)} (hidden files and folders inside a folder are skipped)."
        )
    return files


def _with_descendants(ids: list[int]) -> list[int]:
    """``ids`` followed by the documents found inside them, at any depth."""
    found = list(ids)
    frontier = list(ids)
    while frontier:
        frontier = list(Document.objects.filter(parent_id__in=frontier).values_list("pk", flat=True))
        found.extend(frontier)
    return found


def _groups(names: list[str]) -> list[Group]:
    """The named groups; a missing one is an error before anything is stored.

    Restricting to a misspelt group would hide the files from everyone, so groups
    are not created here (``manage.py user add NAME --group GROUP`` does that).
    """
    groups = {g.name: g for g in Group.objects.filter(name__in=names)}
    missing = [n for n in dict.fromkeys(names) if n not in groups]
    if missing:
        raise CommandError(
            f"No group named {', '.join(repr(n) for n in missing)}; create it with "
            "`manage.py user add NAME --group GROUP`."
        )
    return list(groups.values())


class Command(BaseCommand):
    help = "Ingest files or folders into a collection (created if missing)."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("paths", nargs="+", metavar="PATH")
        parser.add_argument("--collection", required=True)
        parser.add_argument("--wait", action="store_true", help="Show progress and return when every file is done.")
        parser.add_argument("--inline", action="store_true", help="Run the pipeline in this process (no worker).")
        parser.add_argument("--json", action="store_true", help="Print one JSON object per document.")
        parser.add_argument(
            "--restrict-to-group",
            dest="groups",
            action="append",
            default=[],
            metavar="GROUP",
            help="Only members of this group (repeatable: any of them) see the new documents.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        files = _expand(options["paths"])
        restrict = _groups(options["groups"])
        collection, created = services.collection_get_or_create(name=options["collection"])
        if created and not options["json"]:
            self.stderr.write(f"Created collection '{collection.name}'.")
        inline = options["inline"]
        results: list[dict[str, Any]] = []  # in input order; documents are re-read at the end
        # Uploads are committed and sent to the workers a group at a time: one commit
        # and a few messages per group instead of one each, and the worker starts on
        # the first group while the rest are still being stored.
        group = max(1, settings.INGEST_BATCH_DOCUMENTS)
        for start in range(0, len(files), group):
            outcomes = services.documents_upload_many(
                collection=collection,
                files=[(path.name, path) for path in files[start : start + group]],
                user=None,
                restrict_to_groups=restrict,
                enqueue=not inline,
            )
            uploaded: list[int] = []
            for outcome in outcomes:
                if outcome.result is None:
                    results.append({"name": outcome.name, "status": "failed", "error": outcome.error})
                    continue
                upload = outcome.result
                results.append({"name": outcome.name, "document": upload.document.pk, "duplicate": upload.duplicate})
                if upload.duplicate and restrict:
                    self.stderr.write(
                        f"{outcome.name}: already in the collection, its restriction left as it was "
                        "(change it with `manage.py collection restrict`)."
                    )
                if not upload.duplicate:
                    uploaded.append(upload.document.pk)
            if inline:
                show = not options["json"]
                pipeline.documents_process_here(
                    document_ids=uploaded, on_processed=(lambda pk: self._show(pk)) if show else None
                )

        ids = [r["document"] for r in results if "document" in r and not r["duplicate"]]
        if options["wait"] and not inline:
            self._wait(ids, show=not options["json"])
        self._finish(results, as_json=options["json"])

    def _show(self, document_id: int) -> None:
        d = Document.objects.get(pk=document_id)
        line = f"{d.status:>9}  {d.name}  ({d.pages or '-'} pages, {d.chunk_count} chunks)"
        self.stderr.write(line + (f": {d.error}" if d.error else ""))

    def _wait(self, ids: list[int], *, show: bool) -> None:
        started = time.monotonic()
        hinted = False
        # Only documents still unfinished are polled; children appear when their
        # parent becomes ready, so the tracked set grows from finished parents.
        pending = set(ids)
        total = len(ids)
        expanded: set[int] = set()
        while True:
            finished = set(Document.objects.filter(pk__in=pending, status__in=FINISHED).values_list("pk", flat=True))
            finished |= pending - set(Document.objects.filter(pk__in=pending).values_list("pk", flat=True))
            new_children = set(Document.objects.filter(parent_id__in=finished - expanded).values_list("pk", flat=True))
            expanded |= finished
            pending = (pending - finished) | new_children
            total += len(new_children)
            if show:
                counts = Document.objects.filter(pk__in=pending).aggregate(
                    queued=Count("pk", filter=Q(status=Document.Status.QUEUED)),
                    chunks_done=Sum("progress_done"),
                    chunks_total=Sum("progress_total"),
                )
                done = total - len(pending)
                width = 30
                filled = int(width * done / total) if total else width
                sys.stderr.write(
                    f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} files done, {counts['queued']} queued, "
                    f"{counts['chunks_done'] or 0}/{counts['chunks_total'] or 0} chunks of files in progress "
                    f"({time.monotonic() - started:.0f}s)"
                )
                sys.stderr.flush()
            if not pending:
                if show:
                    sys.stderr.write("\n")
                return
            if (
                not hinted
                and time.monotonic() - started > STALL_HINT_AFTER_S
                and not Document.objects.filter(pk__in=pending).exclude(status=Document.Status.QUEUED).exists()
                and len(pending) == total
            ):
                sys.stderr.write("\nNothing has started yet: is a worker running? (`make run`, or use --inline)\n")
                hinted = True
            time.sleep(1)

    def _finish(self, results: list[dict[str, Any]], *, as_json: bool) -> None:
        # Files found inside the uploads (attachments, archive members) are reported
        # right after the document they came from.
        expanded: list[dict[str, Any]] = []
        for r in results:
            expanded.append(r)
            if "document" in r and not r["duplicate"]:
                for child_id in _with_descendants([r["document"]])[1:]:
                    expanded.append({"name": "", "document": child_id, "duplicate": False})
        documents = Document.objects.in_bulk([r["document"] for r in expanded if "document" in r])
        failed = []
        for r in expanded:
            document = documents.get(r.get("document", -1))
            if document is None:
                row = {
                    "name": r["name"],
                    "status": r["status"],
                    "pages": None,
                    "chunks": 0,
                    "error": r.get("error", ""),
                }
            else:
                row = {
                    "name": r["name"] or document.name,
                    "status": "duplicate" if r["duplicate"] else document.status,
                    "pages": document.pages,
                    "chunks": document.chunk_count,
                    "error": document.error,
                }
                if r["duplicate"]:
                    row["duplicate_of"] = document.name
                if document.parent_id:
                    row["parent"] = documents[document.parent_id].name if document.parent_id in documents else ""
            if row["status"] == Document.Status.FAILED:
                failed.append(row)
            if as_json:
                self.stdout.write(json.dumps(row))
            else:
                extra = f" (same content as '{document.name}')" if r.get("duplicate") and document else ""
                self.stdout.write(f"{row['status']:>9}  {row['name']}{extra}")
        if failed:
            for row in failed:
                self.stderr.write(f"failed: {row['name']}: {row['error']}")
            sys.exit(1)
