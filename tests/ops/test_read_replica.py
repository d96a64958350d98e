"""Searches read a real PostgreSQL streaming replica; writes, permissions and a writer's own reads the primary.

A private primary (the pgvector wheel's PostgreSQL, so ``VECTOR_STORE=pgvector`` searches
run on the replica too) is migrated, then ``pg_basebackup -R`` makes a hot standby of it
on another port. For this module the product's ``default`` database is that primary and
``replica`` the standby, with ``assistant.replica.ReplicaRouter`` installed, as
``DATABASE_REPLICA_URL`` would set them. The replica's lag is made deterministic by
pausing its replay (``pg_wal_replay_pause()``): what a search finds then says which
server it read.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connections
from django.test import Client
from django.test.utils import CaptureQueriesContext, override_settings

from assistant import replica
from assistant.accounts.models import CollectionGrant, Role
from assistant.accounts.services import token_create
from assistant.chat import services
from assistant.chat.models import Message
from assistant.ops import readiness
from ingest import index, lexical, pipeline
from ingest import services as ingest_services
from tests.conftest import _require
from tests.factories import CollectionFactory, DocumentFactory, GroupFactory, UserFactory
from tests.support.pgvector_server import pgvector_bin, pgvector_unusable
from tests.support.private_servers import PrivatePostgres, available
from tests.support.waiting import wait_until

pytestmark = pytest.mark.once

DATABASE = "assistant_replica"


def _one(url: str, sql: str) -> Any:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    return None if row is None else row[0]


@dataclass
class Servers:
    primary: PrivatePostgres
    standby: PrivatePostgres

    def replayed(self) -> int:
        return int(_one(self.standby.admin_url, "SELECT pg_last_wal_replay_lsn() - '0/0'::pg_lsn"))

    def caught_up(self) -> None:
        """Wait until the standby has replayed everything the primary has written so far."""
        target = int(_one(self.primary.admin_url, "SELECT pg_current_wal_insert_lsn() - '0/0'::pg_lsn"))
        wait_until(lambda: self.replayed() >= target, 30, "the standby did not catch up with the primary")

    def pause(self) -> None:
        self.caught_up()
        _one(self.standby.admin_url, "SELECT pg_wal_replay_pause()")
        state = "SELECT pg_get_wal_replay_pause_state()"
        wait_until(lambda: _one(self.standby.admin_url, state) == "paused", 30, "replay did not pause")

    def resume(self) -> None:
        _one(self.standby.admin_url, "SELECT pg_wal_replay_resume()")


@pytest.fixture(scope="module")
def servers(django_db_blocker: Any) -> Iterator[Servers]:
    """The primary and its standby, as the product's ``default`` and ``replica`` databases."""
    reason = available() or pgvector_unusable()
    _require(not reason, reason)
    bin_dir = pgvector_bin()
    assert bin_dir is not None
    if connections["default"].vendor != "postgresql":
        pytest.skip("a read replica needs PostgreSQL: this module runs in the services pass")
    primary = PrivatePostgres(bin_dir=bin_dir)
    standby: PrivatePostgres | None = None
    default = connections["default"]
    saved = dict(default.settings_dict)
    overridden = override_settings(
        VECTOR_STORE="pgvector",
        DATABASE_ROUTERS=["assistant.replica.ReplicaRouter"],
        DATABASE_REPLICA_RETRY_S=60.0,
        # No calibration of the embedding backends: this module is about databases.
        EMBEDDING_BACKEND="torch-fp32",
    )
    try:
        with django_db_blocker.unblock():
            primary.create_database(DATABASE)
            default.close()
            default.settings_dict.update(HOST="127.0.0.1", PORT=str(primary.port), NAME=DATABASE, USER="postgres")
            default.settings_dict["PASSWORD"] = ""
            ContentType.objects.clear_cache()
            overridden.enable()
            call_command("migrate", verbosity=0)  # and the pgvector table, after it
            standby = PrivatePostgres(bin_dir=bin_dir, standby_of=primary)
            connections.settings[replica.REPLICA] = {
                **default.settings_dict,
                "PORT": str(standby.port),
                "OPTIONS": {"connect_timeout": 2},
                "TEST": {**default.settings_dict.get("TEST", {}), "MIRROR": "default"},
            }
            yield Servers(primary=primary, standby=standby)
    finally:
        with django_db_blocker.unblock():
            for alias in (replica.REPLICA, "default"):
                if alias in connections.settings:
                    connections[alias].close()
            connections.settings.pop(replica.REPLICA, None)
            with suppress(AttributeError):  # never connected (start-up failed before)
                del connections[replica.REPLICA]
            default.settings_dict.clear()
            default.settings_dict.update(saved)
            ContentType.objects.clear_cache()
        overridden.disable()
        replica.replica_reset()
        if standby is not None:
            standby.remove()
        primary.remove()


@dataclass
class People:
    collection: Any
    manager: Any
    writer: Any
    reader: Any
    member: Any
    outsider: Any


@pytest.fixture(scope="module")
def people(servers: Servers, django_db_blocker: Any) -> People:
    with django_db_blocker.unblock():
        manager = UserFactory.create(username="manager")
        collection = CollectionFactory.create(name="Policies", created_by=manager)
        writer, reader = UserFactory.create(username="writer"), UserFactory.create(username="reader")
        member, outsider = UserFactory.create(username="member"), UserFactory.create(username="outsider")
        board = GroupFactory.create(name="board")
        member.groups.add(board)
        CollectionGrant.objects.create(collection=collection, user=writer, role=Role.WRITE)
        for user in (reader, member, outsider):
            CollectionGrant.objects.create(collection=collection, user=user, role=Role.READ)
        DocumentFactory.create(
            collection=collection, name="handbook.txt", user=manager, processed=True,
            content="Travel: the daily meal allowance abroad is 85 euros.",
        )  # fmt: skip
        DocumentFactory.create(
            collection=collection, name="board-minutes.txt", user=manager, processed=True, groups=[board],
            content="The merger code name is BLUEHERON and it closes on 14 May.",
        )  # fmt: skip
    return People(collection, manager, writer, reader, member, outsider)


@pytest.fixture(autouse=True)
def _database(servers: Servers, django_db_blocker: Any) -> Iterator[None]:
    with django_db_blocker.unblock():
        servers.resume()
        replica.replica_reset()
        yield
        servers.resume()


def found(user: Any, people: People, query: str) -> set[str]:
    passages = services.passages_retrieve(user=user, collection=people.collection, query=query, k=5)
    return {p.document_name for p in passages}


@dataclass
class Reads:
    primary: list[str]
    replica: list[str]


def searched(user: Any, people: People, query: str) -> tuple[set[str], Reads]:
    """What ``user`` finds, and the search queries (vectors, words, chunks) each server answered."""
    reads = Reads(primary=[], replica=[])

    def recorder(into: list[str]) -> Any:
        # An execute wrapper, unlike CaptureQueriesContext, does not connect by itself:
        # the replica may be down.
        def record(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
            if "ingest_chunk" in sql:
                into.append(sql)
            return execute(sql, params, many, context)

        return record

    with (
        connections["default"].execute_wrapper(recorder(reads.primary)),
        connections[replica.REPLICA].execute_wrapper(recorder(reads.replica)),
    ):
        names = found(user, people, query)
    return names, reads


def test_searches_read_the_replica_and_a_writer_reads_their_own_write(servers: Servers, people: People) -> None:
    servers.pause()
    DocumentFactory.create(
        collection=people.collection, name="canteen.txt", user=people.writer, processed=True,
        content="The canteen serves saffron risotto every Thursday.",
    )  # fmt: skip

    # The reader wrote nothing: they read the replica, which has not replayed the upload.
    names, reads = searched(people.reader, people, "saffron risotto in the canteen")
    assert "canteen.txt" not in names
    assert reads.replica and any("ingest_chunk_vector" in sql for sql in reads.replica)
    assert not reads.primary
    # The writer reads their own upload, from the primary, while the replica lags.
    names, reads = searched(people.writer, people, "saffron risotto in the canteen")
    assert "canteen.txt" in names
    assert reads.primary and not reads.replica

    servers.resume()
    servers.caught_up()
    names, reads = searched(people.reader, people, "saffron risotto in the canteen")
    assert "canteen.txt" in names
    assert reads.replica and not reads.primary
    # Caught up, the writer's searches go back to the replica as well.
    names, reads = searched(people.writer, people, "saffron risotto in the canteen")
    assert "canteen.txt" in names
    assert reads.replica and not reads.primary


def test_the_worker_finishing_an_upload_fences_its_uploader(servers: Servers, people: People) -> None:
    """The upload's own fence is passed already: only the one set when it became ready sends them to the primary."""
    document = DocumentFactory.create(
        collection=people.collection, name="library.txt", user=people.writer,
        content="The library lends laptops to staff for two weeks.",
    )  # fmt: skip
    servers.pause()  # after the replica has the queued upload
    pipeline.documents_process_here(document_ids=[document.pk], together=True)

    names, reads = searched(people.writer, people, "borrow a laptop from the library")
    assert "library.txt" in names
    assert reads.primary and not reads.replica
    names, reads = searched(people.reader, people, "borrow a laptop from the library")
    assert "library.txt" not in names
    assert reads.replica


def test_restricted_document_on_the_replica_path(servers: Servers, people: People) -> None:
    servers.caught_up()
    names, reads = searched(people.outsider, people, "merger code name")
    assert "board-minutes.txt" not in names
    assert reads.replica and not reads.primary
    names, reads = searched(people.member, people, "merger code name")
    assert "board-minutes.txt" in names
    assert reads.replica and not reads.primary


def test_a_restriction_holds_at_once_however_far_the_replica_lags(servers: Servers, people: People) -> None:
    document = DocumentFactory.create(
        collection=people.collection, name="salaries.txt", user=people.manager, processed=True,
        content="Salary bands for 2027: engineers earn between 60,000 and 95,000 euros.",
    )  # fmt: skip
    servers.pause()
    ingest_services.document_restrict(document=document, groups=list(people.member.groups.all()))

    # The replica still has the document unrestricted: who may see it comes from the primary.
    names, reads = searched(people.outsider, people, "salary bands for engineers")
    assert "salaries.txt" not in names
    assert reads.replica
    names, _ = searched(people.member, people, "salary bands for engineers")
    assert "salaries.txt" in names


def test_a_deleted_document_is_not_served_from_the_lagging_replica(servers: Servers, people: People) -> None:
    document = DocumentFactory.create(
        collection=people.collection, name="parking.txt", user=people.manager, processed=True,
        content="Parking permits for the north garage cost 30 euros a month.",
    )  # fmt: skip
    servers.caught_up()
    assert "parking.txt" in found(people.reader, people, "parking permit north garage")
    servers.pause()
    ingest_services.document_delete(document=document, user=people.manager)

    names, reads = searched(people.reader, people, "parking permit north garage")
    assert reads.replica and any("ingest_chunk_vector" in sql for sql in reads.replica)
    assert "parking.txt" not in names


def test_the_api_search_reads_the_replica(servers: Servers, people: People) -> None:
    servers.caught_up()
    outsider = Client(headers={"Authorization": f"Bearer {token_create(user=people.outsider, name='t').plaintext}"})
    member = Client(headers={"Authorization": f"Bearer {token_create(user=people.member, name='t').plaintext}"})
    servers.pause()
    body = {"collection_id": people.collection.pk, "query": "merger code name", "k": 5}
    with CaptureQueriesContext(connections[replica.REPLICA]) as on_replica:
        response = outsider.post("/api/v1/search", body, content_type="application/json")
    assert response.status_code == 200
    assert "board-minutes.txt" not in {p["document"] for p in response.json()["passages"]}
    assert any("ingest_chunk_vector" in q["sql"] for q in on_replica.captured_queries)
    response = member.post("/api/v1/search", body, content_type="application/json")
    assert "board-minutes.txt" in {p["document"] for p in response.json()["passages"]}


def test_an_answer_takes_its_passages_from_the_replica_and_is_stored_on_the_primary(
    servers: Servers, people: People, recording_llm: Any
) -> None:
    servers.caught_up()
    member = Client(headers={"Authorization": f"Bearer {token_create(user=people.member, name='a').plaintext}"})
    outsider = Client(headers={"Authorization": f"Bearer {token_create(user=people.outsider, name='a').plaintext}"})
    servers.pause()
    body = {"collection_id": people.collection.pk, "question": "What is the merger code name?"}
    with CaptureQueriesContext(connections[replica.REPLICA]) as on_replica:
        response = member.post("/api/v1/ask", body, content_type="application/json")
    assert response.status_code == 200, response.content
    answer = response.json()
    assert "board-minutes.txt" in {c["document"] for c in answer["citations"]}
    assert any("ingest_chunk_vector" in q["sql"] for q in on_replica.captured_queries)
    assert not [q for q in on_replica.captured_queries if q["sql"].lstrip().upper().startswith(("INSERT", "UPDATE"))]
    # The question and the answer were written to the primary while the replica was paused.
    assert Message.objects.using("default").filter(conversation_id=answer["conversation_id"]).count() == 2

    response = outsider.post("/api/v1/ask", body, content_type="application/json")
    assert response.status_code == 200, response.content
    assert "board-minutes.txt" not in {c["document"] for c in response.json()["citations"]}
    assert "BLUEHERON" not in response.content.decode()


def test_a_replica_that_goes_down_leaves_searches_to_the_primary(
    servers: Servers, people: People, caplog: pytest.LogCaptureFixture
) -> None:
    servers.caught_up()
    assert "handbook.txt" in found(people.reader, people, "meal allowance abroad")  # a connection to the replica
    servers.standby.stop(mode="immediate")
    try:
        with caplog.at_level(logging.WARNING, logger="assistant.replica"):
            names, reads = searched(people.reader, people, "meal allowance abroad")
        assert "handbook.txt" in names
        assert reads.primary
        assert any("Read replica failed" in r.getMessage() for r in caplog.records)
        assert replica.replica_state()[0] is False
        # Left alone meanwhile: the next search does not try it.
        names, reads = searched(people.outsider, people, "merger code name")
        assert "board-minutes.txt" not in names
        assert reads.primary and not reads.replica

        parts = {c.name: c for c in readiness.readiness(timeout=3)}
        assert parts["replica"].ok and parts["replica"].degraded
        # Named, never failing (this module runs no language model: that part fails here).
        body = Client().get("/readyz").json()
        assert body["checks"]["replica"]["status"] == "degraded"
        assert body["degraded"] == ["replica"] and "replica" not in body["failing"]
    finally:
        servers.standby.start()
    servers.caught_up()
    # The replica answers the probe again: searches go back to it.
    parts = {c.name: c for c in readiness.readiness(timeout=3)}
    assert parts["replica"].ok and not parts["replica"].degraded
    assert parts["replica"].detail.startswith("streaming")
    names, reads = searched(people.reader, people, "meal allowance abroad")
    assert "handbook.txt" in names
    assert reads.replica and not reads.primary


def test_faiss_searches_load_their_passages_from_the_replica(servers: Servers, people: People, settings: Any) -> None:
    """With FAISS the index files are local; the passages' rows come from the replica.

    When the files are lost, the search that finds them missing rebuilds them, and must
    read the primary to do so, or they would lack what the paused replica lacks, for good.
    """
    settings.VECTOR_STORE = "faiss"
    servers.pause()
    DocumentFactory.create(
        collection=people.collection, name="bicycles.txt", user=people.writer, processed=True,
        content="Bicycle parking is in the courtyard, behind the blue gate.",
    )  # fmt: skip
    # Lost files: the next search rebuilds them from the database.
    index.index_path(people.collection.pk).unlink()
    lexical.lexical_path(people.collection.pk).unlink()

    names, reads = searched(people.reader, people, "where do I park my bicycle")
    assert "bicycles.txt" not in names
    assert reads.replica and not any("ingest_chunk_vector" in sql for sql in reads.replica)
    names, _ = searched(people.writer, people, "where do I park my bicycle")
    assert "bicycles.txt" in names

    servers.resume()
    servers.caught_up()
    names, reads = searched(people.reader, people, "where do I park my bicycle")
    assert "bicycles.txt" in names
    assert reads.replica and not reads.primary
