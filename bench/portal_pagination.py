"""The portal's documents table at 100,000 documents: milliseconds per page.

    ASSISTANT_DATA_DIR=$(mktemp -d) .venv/bin/python bench/portal_pagination.py [--documents 100000] [--repeat 5]

Fills a fresh database (``ASSISTANT_DATA_DIR``, or ``DATABASE_URL``: use a database of its
own) with ``--documents`` rows in one collection, one of them restricted to a group the
viewer is not in, then times the JSON endpoint the page polls (``portal:documents_status``,
through Django's test client, so with every query the view makes: the visibility rules,
the summary, the types, the page) for the first, a middle and the last page in each order
it offers, and with a filter and a name search. Prints the median of ``--repeat`` runs and
the number of queries per request (the same at any size: see
``tests/portal/test_documents.py::test_the_table_holds_at_100000_documents``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def setup() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def fill(documents: int) -> tuple[object, object]:
    from django.contrib.auth.models import Group, User

    from assistant.accounts.models import Role
    from assistant.accounts.services import collection_grant
    from ingest.models import Collection, Document

    collection = Collection.objects.create(name=f"bench-pagination-{time.time_ns()}")
    viewer = User.objects.create_user(f"bench-viewer-{time.time_ns()}")
    collection_grant(collection=collection, user=viewer, role=Role.WRITE)
    statuses = ["ready"] * 8 + ["failed", "queued"]
    types = ["pdf", "docx", "text", "markdown"]
    clock = time.monotonic()
    rows = (
        Document(
            collection=collection,
            name=f"report-{i:07d}.{types[i % 4]}",
            size=(i * 7919) % 10_000_000,
            file_type=types[i % 4],
            status=statuses[i % 10],
            chunk_count=12,
            pages=4,
            content_hash=hashlib.sha256(f"{collection.pk}-{i}".encode()).hexdigest(),
        )
        for i in range(documents)
    )
    batch: list[Document] = []
    for row in rows:
        batch.append(row)
        if len(batch) == 10_000:
            Document.objects.bulk_create(batch)
            batch = []
    Document.objects.bulk_create(batch)
    hidden = Document.objects.filter(collection=collection).order_by("id").first()
    assert hidden is not None
    hidden.restricted_to_groups.set([Group.objects.get_or_create(name="bench-board")[0]])
    print(f"{documents:,} documents stored in {time.monotonic() - clock:.1f} s", flush=True)
    return collection, viewer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    setup()
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    collection, viewer = fill(args.documents)
    client = Client()
    client.force_login(viewer)  # type: ignore[arg-type]
    url = reverse("portal:documents_status", args=[collection.pk])  # type: ignore[attr-defined]
    last = -(-args.documents // 50)
    cases = [
        ("newest first, page 1", {}),
        (f"newest first, page {last // 2}", {"page": last // 2}),
        (f"newest first, page {last} (last)", {"page": last}),
        ("by name, page 1", {"sort": "name"}),
        (f"by name, page {last}", {"sort": "name", "page": last}),
        ("largest first, page 1", {"sort": "-size"}),
        ("by status, page 1", {"sort": "status"}),
        ("failed only, page 1", {"status": "failed"}),
        ("type pdf, by name, page 10", {"type": "pdf", "sort": "name", "page": 10}),
        ("name contains '0042', page 1", {"q": "0042"}),
    ]
    print(f"{'request':<36} {'ms (median)':>12} {'queries':>8}")
    for title, query in cases:
        times = []
        for _ in range(args.repeat):
            with CaptureQueriesContext(connection) as captured:
                clock = time.perf_counter()
                response = client.get(url, query)
                times.append((time.perf_counter() - clock) * 1000)
            assert response.status_code == 200, response.status_code
        print(f"{title:<36} {statistics.median(times):>12.1f} {len(captured):>8}", flush=True)


if __name__ == "__main__":
    main()
