"""Write the upgrade-test fixture: a database of a released version, filled with realistic data.

``tests/backup/test_upgrade.py`` migrates this database to the current code in both
modes and checks that the data survived and the product works on it. Each release
refreshes it from the release being replaced (see docs/backups.md):

    git worktree add /tmp/previous <release commit>
    ln -s "$PWD/.venv" /tmp/previous/.venv
    .venv/bin/python bench/release_fixture.py --checkout /tmp/previous \\
        --out tests/fixtures/release-<commit>

It runs the release's own code (``--checkout``) twice, once on SQLite and once on a
scratch PostgreSQL database (``--postgres``, dropped afterwards): migrate, then
``populate`` through that release's services, then a copy of the database
(``db.sqlite3``; ``postgresql.sql``, a plain-SQL pg_dump), the originals its documents
point to, and ``expected.json`` (the counts and the facts the test checks).
``populate`` uses only services that existed at 843ad9a; a release that renames one
adapts it here.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PASSWORD = "fixture-Password-2026"  # noqa: S105 (a fixture's known password)
SECRET_KEY = "release-fixture-secret-key-not-used-anywhere-else-0123456789"  # noqa: S105
TRAVEL = (
    "Travel policy\n\nThe meal allowance abroad is 60 euros per day. Hotels are booked by the travel office.\n\n"
    "Trains are taken for trips under four hours."
)
SALARIES = (
    "Salary bands 2026\n\nThe quartermaster salary band Q7 ranges from 81,000 to 94,000 euros a year. "
    "Bonuses are paid in March."
)


def populate() -> dict[str, Any]:
    """Fill the migrated database through the release's services. Runs inside the release's checkout."""
    import io

    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    from assistant.accounts import services as accounts
    from assistant.audit.models import AuditEvent
    from assistant.audit.services import audit_record
    from assistant.chat.models import Conversation, Message
    from assistant.chat.retrieval import passage_of
    from assistant.chat.services import citation_for
    from ingest import pipeline
    from ingest import services as ingest
    from ingest.models import Chunk, Document

    admin = accounts.user_add(username="admin", password=PASSWORD).user
    get_user_model().objects.filter(pk=admin.pk).update(is_staff=True, is_superuser=True)
    insider = accounts.user_add(username="hr-insider", groups=["hr", "staff"], password=PASSWORD).user
    outsider = accounts.user_add(username="staff-outsider", groups=["staff"], password=PASSWORD).user
    hr, staff = Group.objects.get(name="hr"), Group.objects.get(name="staff")
    policies = ingest.collection_create(name="Policies", description="Company policies", user=admin)
    accounts.collection_grant(collection=policies, role="read", group=staff, actor=admin)
    ingest.collection_create(name="Empty", user=admin)
    travel = ingest.document_upload(
        collection=policies, name="travel.txt", fileobj=io.BytesIO(TRAVEL.encode()), user=admin, enqueue=False
    ).document
    salaries = ingest.document_upload(
        collection=policies,
        name="salaries.txt",
        fileobj=io.BytesIO(SALARIES.encode()),
        user=admin,
        enqueue=False,
        restrict_to_groups=[hr],
    ).document
    pipeline.documents_process_here(document_ids=[travel.pk, salaries.pk], together=True)
    ready = Document.objects.filter(status=Document.Status.READY).count()
    assert ready == 2, f"{ready} of 2 documents ready"

    chunk = Chunk.objects.filter(document=travel).order_by("pk").first()
    assert chunk is not None
    conversation = Conversation.objects.create(user=outsider, collection=policies, title="Meal allowance")
    Message.objects.create(conversation=conversation, role="user", content="What is the meal allowance abroad?")
    Message.objects.create(
        conversation=conversation,
        role="assistant",
        content="The meal allowance abroad is 60 euros per day [1].",
        model="fixture",
        chunk_ids=[chunk.pk],
        citations=[{**citation_for(1, passage_of(chunk, score=1.0)), "cited": True}],
    )
    token = accounts.token_create(user=outsider, name="fixture token", days=30)
    audit_record(action=AuditEvent.Action.USER_LOGIN, actor=outsider, details={"fixture": True})
    audit_record(action=AuditEvent.Action.USER_LOGIN, actor=insider, details={"fixture": True})
    return {
        "password": PASSWORD,
        "token": token.plaintext,
        "collection": policies.name,
        "visible": {"name": travel.name, "query": "meal allowance abroad per day", "text": "60 euros per day"},
        "restricted": {"name": salaries.name, "query": "quartermaster salary band Q7", "text": "81,000"},
        "insider": insider.username,
        "outsider": outsider.username,
        "counts": {
            "users": get_user_model().objects.count(),
            "groups": Group.objects.count(),
            "collections": 2,
            "documents": Document.objects.count(),
            "chunks": Chunk.objects.count(),
            "conversations": Conversation.objects.count(),
            "messages": Message.objects.count(),
            "audit_events": AuditEvent.objects.count(),
        },
        "audit": list(AuditEvent.objects.order_by("pk").values_list("pk", "action", "actor_username")),
    }


def _populate_here(out: Path) -> None:
    """The child's side: set Django up in the release's checkout, migrate, populate, write the facts."""
    sys.path.insert(0, os.getcwd())
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    facts = populate()
    out.write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")


def _run_release(checkout: Path, env: dict[str, str], facts: Path) -> None:
    command = [sys.executable, str(Path(__file__).resolve()), "--populate-into", str(facts)]
    subprocess.run(command, cwd=checkout, env=env, check=True)


def _base_env(data_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "PYTHONPATH")}
    env.update(ASSISTANT_DATA_DIR=str(data_dir), DJANGO_SECRET_KEY=SECRET_KEY, OMP_NUM_THREADS="1")
    env["EMBEDDING_BACKEND"] = "torch-fp32"  # the reference vectors, without measuring backends first
    return env


def _copy_originals(data_dir: Path, target: Path) -> None:
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(data_dir / "files", target)


def build(*, checkout: Path, out: Path, postgres: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "sqlite")
        _run_release(checkout, _base_env(data), out / "expected.json")
        with sqlite3.connect(data / "db.sqlite3") as source:
            (out / "db.sqlite3").unlink(missing_ok=True)
            source.execute("VACUUM INTO ?", [str(out / "db.sqlite3")])
        _copy_originals(data, out / "sqlite-files")

        data = Path(tmp, "postgresql")
        server, _, name = postgres.rpartition("/")
        subprocess.run(["psql", server + "/postgres", "-qc", f'DROP DATABASE IF EXISTS "{name}"'], check=True)
        subprocess.run(["psql", server + "/postgres", "-qc", f'CREATE DATABASE "{name}"'], check=True)
        try:
            _run_release(checkout, {**_base_env(data), "DATABASE_URL": postgres}, Path(tmp, "pg-facts.json"))
            with open(out / "postgresql.sql", "wb") as dump:
                command = ["pg_dump", "--format=plain", "--no-owner", "--no-privileges", postgres]
                subprocess.run(command, stdout=dump, check=True)
        finally:
            subprocess.run(["psql", server + "/postgres", "-qc", f'DROP DATABASE IF EXISTS "{name}"'], check=True)
        pg_facts = json.loads(Path(tmp, "pg-facts.json").read_text())
        facts = json.loads((out / "expected.json").read_text())
        facts["postgresql_token"] = pg_facts["token"]
        (out / "expected.json").write_text(json.dumps(facts, indent=2, sort_keys=True) + "\n")
        _copy_originals(data, out / "postgresql-files")
    print(f"wrote {out}: " + ", ".join(sorted(p.name for p in out.iterdir())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkout", type=Path, help="A checkout of the release being replaced.")
    parser.add_argument("--out", type=Path, help="The fixture folder to write, e.g. tests/fixtures/release-843ad9a.")
    parser.add_argument(
        "--postgres",
        default="postgresql://postgres@127.0.0.1:5432/assistant_release_fixture",
        help="A scratch database URL (created and dropped).",
    )
    parser.add_argument("--populate-into", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.populate_into:
        _populate_here(args.populate_into)
        return
    if not (args.checkout and args.out):
        parser.error("--checkout and --out are required")
    build(checkout=args.checkout.resolve(), out=args.out.resolve(), postgres=args.postgres)


if __name__ == "__main__":
    main()
