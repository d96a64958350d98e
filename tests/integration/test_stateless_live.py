"""Stateless nodes: two web processes and two Celery workers that share nothing but services.

Each node has a data directory of its own (``ASSISTANT_DATA_DIR``); they share one
PostgreSQL with pgvector (``VECTOR_STORE=pgvector``: no index files), one Redis, one
S3-compatible bucket for the originals (``STORAGE_S3_*``, moto's S3 server) and one
``DJANGO_SECRET_KEY``. One batch of files goes in, some through each web node; then
nothing may be lost or processed twice, every original must download from either web
node, and both must answer the same search and the same question with the same
sources, a restricted document included for its group and for no one else.

PostgreSQL with pgvector is the private server of the pgvector pass
(``tests/support/pgvector_server.py``), so the module runs once, in the services pass
(where Redis is the pass's own).
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from assistant import processes
from tests.conftest import REPO, LLMServer
from tests.integration.conftest import ADMIN_PASSWORD, BrowserSession, StackTemplate, _base_env, _data_dir_from
from tests.support.documents import make_pdf
from tests.support.pgvector_server import pgvector_database
from tests.support.processes import Process, free_port
from tests.support.s3_server import S3Server, s3_server
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.live, pytest.mark.once]

# A dozen formats; password.pdf must fail with its reason, simple.zip's members become
# documents parsed by whichever worker takes them.
FILES = [
    "fake-memo.pdf", "simple.docx", "docx-tables.docx", "fake-power-point.pptx", "stanley-cups.xlsx",
    "norwich-city.txt", "example-10k-1p.html", "codeblock.md", "fake-doc.rtf", "simple.odt", "family-day.eml",
    "simple.zip", "password.pdf",
]  # fmt: skip
MINUTES = make_pdf(["Board minutes\nThe merger with Northwind Traders closes on the ninth of March."])
QUERIES = ["Norwich City football club history", "Stanley Cup champions", "merger with Northwind Traders"]
QUESTION = "Who won the Stanley Cup?"
COLLECTION = "Stateless"


@dataclass
class Node:
    name: str
    data_dir: Path
    env: dict[str, str]
    base_url: str = ""
    web: Process | None = None
    worker: Process | None = None


@dataclass
class Site:
    nodes: list[Node]
    database_url: str
    s3: S3Server
    bucket: str
    tokens: dict[str, str] = field(default_factory=dict)
    collection_id: int = 0
    documents: list[dict[str, Any]] = field(default_factory=list)
    minutes_id: int = 0
    ingest_s: float = 0.0
    log_dir: Path = Path()
    runs: int = 0

    def manage(self, *args: str) -> str:
        import subprocess
        import sys

        result = subprocess.run(
            [sys.executable, "manage.py", *args], env=self.nodes[0].env, cwd=REPO, capture_output=True, text=True,
            timeout=600, check=False,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def api(self, node: Node, user: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{node.base_url}/api/v1", headers={"Authorization": f"Bearer {self.tokens[user]}"},
            trust_env=False, timeout=300,
        )  # fmt: skip

    def logs(self) -> str:
        parts = []
        for node in self.nodes:
            for process in (node.web, node.worker):
                if process is not None:
                    parts.append(f"--- {process.name}:\n{process.log_tail(3000)}")
        return "\n".join(parts)

    def sql(self, query: str) -> list[tuple[Any, ...]]:
        import environ
        import psycopg

        db = environ.Env.db_url_config(self.database_url)
        with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"]) as conn:
            return list(conn.execute(query).fetchall())

    def start_worker(self, node: Node) -> None:
        """``node``'s Celery worker, consuming every queue; node a's also runs the site's one beat."""
        if node.worker is not None:
            node.worker.stop()
        command = processes.worker_command(beat=node.name == "a", node=f"worker-{node.name}@%h")
        self.runs += 1
        node.worker = Process(f"worker-{node.name}-{self.runs}", command, env=node.env, log_dir=self.log_dir, cwd=REPO)
        node.worker.wait_log(" ready.", timeout=180)

    def stop_worker(self, node: Node) -> None:
        if node.worker is not None:
            node.worker.stop()
            node.worker = None


def _redis_url() -> str:
    broker = os.environ.get("CELERY_BROKER_URL", "")
    if not broker.startswith("redis"):
        pytest.skip("stateless nodes share a Redis: only in the services run")
    return broker


def _created(admin_url: str, name: str) -> str:
    """Create database ``name`` beside the ``postgres`` one of ``admin_url``; returns its URL."""
    import environ
    import psycopg

    db = environ.Env.db_url_config(admin_url)
    with psycopg.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"], autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return admin_url.replace("/postgres?", f"/{name}?")


@pytest.fixture(scope="module")
def site(
    llama_server: LLMServer, stack_template: StackTemplate, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Site]:
    import redis

    broker = _redis_url()
    redis.Redis.from_url(broker).flushdb()
    root = tmp_path_factory.mktemp("stateless")
    (root / "logs").mkdir()
    with pgvector_database("postgres") as admin_url, s3_server() as s3:
        database_url = _created(admin_url, "assistant")
        bucket = s3.create_bucket(f"originals-{uuid.uuid4().hex[:10]}")
        shared = {
            "DATABASE_URL": database_url,
            "VECTOR_STORE": "pgvector",
            "CELERY_BROKER_URL": broker,
            "DJANGO_SECRET_KEY": "stateless-" + uuid.uuid4().hex,
            "LLM_BASE_URL": llama_server.base_url,
            "LLM_MODEL": llama_server.model,
            "LLM_TEMPERATURE": "0",
            "LLM_MAX_TOKENS": "64",
            **s3.environment(bucket, prefix="site"),
        }
        nodes = []
        for name in ("a", "b"):
            data_dir = root / f"node-{name}"
            _data_dir_from(stack_template, data_dir)
            env = _base_env(data_dir)
            env.pop("ORIGINALS_DIR", None)
            env.update(shared)
            nodes.append(Node(name=name, data_dir=data_dir, env=env))
        site = Site(nodes=nodes, database_url=database_url, s3=s3, bucket=bucket, log_dir=root / "logs")
        try:
            for step in (["migrate", "--noinput"], ["bootstrap_admin"]):
                site.manage(*step)
            for node in nodes:
                port = free_port()
                node.base_url = f"http://127.0.0.1:{port}"
                command = processes.web_command(host="127.0.0.1", port=port)
                node.web = Process(f"web-{node.name}", command, env=node.env, log_dir=site.log_dir, cwd=REPO)
            for node in nodes:
                assert node.web is not None
                node.web.wait_http(f"{node.base_url}/healthz", timeout=120)
            _ingest(site)
            yield site
        finally:
            for node in nodes:
                for process in (node.web, node.worker):
                    if process is not None:
                        process.stop()
            redis.Redis.from_url(broker).flushdb()


def _ingest(site: Site) -> None:
    """Users, a collection, and the files in three rounds, each waited for until every document is finished.

    Files uploaded through web a are parsed by worker b alone, then files uploaded through
    web b by worker a alone (which node does what is forced, not left to timing), then
    the rest through both web nodes at once, with both workers taking from one queue.
    """
    site.tokens["admin"] = site.manage("token", "create", "--user", "admin", "--scope", "write", "--name", "live")
    site.manage("user", "add", "member", "--group", "board")
    site.manage("user", "add", "outsider", "--group", "staff")
    a, b = site.nodes
    with site.api(a, "admin") as api:
        created = api.post("/collections", json={"name": COLLECTION})
        assert created.status_code == 201, created.text
        site.collection_id = created.json()["id"]
    for user in ("member", "outsider"):
        site.manage("collection", "grant", COLLECTION, "--user", user, "--role", "read")
        site.tokens[user] = site.manage("token", "create", "--user", user, "--scope", "read", "--name", "live")
    formats = Path(os.environ.get("ASSISTANT_SHARED_DATA", REPO.parent / "shared" / "data")) / "formats"
    files = [(name, (formats / name).read_bytes()) for name in FILES]
    started = time.monotonic()
    site.start_worker(b)
    _upload(site, [(a, name, content) for name, content in files[:4]])
    site.start_worker(a)
    site.stop_worker(b)
    _upload(site, [(b, name, content) for name, content in files[4:8]])
    site.start_worker(b)
    rest = [(site.nodes[i % 2], name, content) for i, (name, content) in enumerate(files[8:])]
    _upload(site, [*rest, (b, "minutes.pdf", MINUTES)])
    site.ingest_s = time.monotonic() - started


def _upload(site: Site, uploads: list[tuple[Node, str, bytes]]) -> None:
    """Upload each file through its node, then wait until every document of the collection is finished."""
    for node, name, content in uploads:
        with site.api(node, "admin") as api:
            response = api.post(f"/collections/{site.collection_id}/documents", files=[("files", (name, content))])
            assert response.status_code == 201, response.text
            if name == "minutes.pdf":
                site.minutes_id = response.json()["documents"][0]["document"]["id"]
                site.manage("collection", "restrict", COLLECTION, f"#{site.minutes_id}", "--group", "board")

    def all_finished() -> list[dict[str, Any]] | None:
        with site.api(site.nodes[0], "admin") as api:
            items = api.get(f"/collections/{site.collection_id}/documents", params={"limit": 200}).json()["items"]
        return items if items and all(d["status"] in ("ready", "failed") for d in items) else None

    site.documents = wait_until(
        all_finished, 600, lambda: f"documents not finished in 600s:\n{site.logs()}", interval=1.0
    )


def test_no_document_is_lost_and_none_is_processed_twice(site: Site) -> None:
    names = {d["name"] for d in site.documents}
    assert set(FILES) | {"minutes.pdf"} <= names, site.logs()
    assert len(site.documents) > len(FILES) + 1, "simple.zip's members became no documents"
    for document in site.documents:
        if document["status"] == "failed":
            assert document["error"], document
    failed = {d["name"] for d in site.documents if d["status"] == "failed"}
    assert "password.pdf" in failed and len(failed) <= 2, site.documents
    # One document per content, as many chunks as each says, one vector per chunk, and
    # each document made ready exactly once, whichever worker took it.
    assert site.sql(
        "SELECT content_hash FROM ingest_document WHERE NOT separate_copy GROUP BY 1 HAVING count(*) > 1"
    ) == []  # fmt: skip
    assert site.sql(
        "SELECT d.id FROM ingest_document d LEFT JOIN ingest_chunk c ON c.document_id = d.id "
        "GROUP BY d.id, d.chunk_count HAVING count(c.id) <> d.chunk_count"
    ) == []  # fmt: skip
    [(chunks, vectors, distinct)] = site.sql(
        "SELECT (SELECT count(*) FROM ingest_chunk), count(*), count(DISTINCT chunk_id) FROM ingest_chunk_vector"
    )
    assert chunks == vectors == distinct > 0
    assert site.sql(
        "SELECT document_id FROM ingest_documentevent WHERE status = 'ready' GROUP BY 1 HAVING count(*) > 1"
    ) == []  # fmt: skip


def test_every_original_downloads_from_either_web_node_and_no_node_keeps_one(site: Site) -> None:
    hashes = dict(site.sql("SELECT id, content_hash FROM ingest_document"))
    assert set(hashes) == {d["id"] for d in site.documents}
    for node in site.nodes:
        with site.api(node, "admin") as api:
            for document in site.documents:
                response = api.get(f"/documents/{document['id']}/download")
                assert response.status_code == 200, (node.name, document["name"], response.text)
                assert hashlib.sha256(response.content).hexdigest() == hashes[document["id"]]
    keys = site.s3.keys(site.bucket)
    assert len(keys) == len(site.documents) and all(k.startswith("site/collections/") for k in keys)
    for node in site.nodes:
        # Nothing of the originals or the indexes on the node's own disk.
        for kept in ("files", "tmp", "indexes"):
            folder = node.data_dir / kept
            assert not folder.exists() or not [p for p in folder.rglob("*") if p.is_file()], folder


def _search(site: Site, node: Node, user: str, query: str) -> list[tuple[int, str, float]]:
    with site.api(node, user) as api:
        response = api.post("/search", json={"collection_id": site.collection_id, "query": query, "k": 8})
        assert response.status_code == 200, response.text
        return [(p["chunk_id"], p["document"], round(p["score"], 4)) for p in response.json()["passages"]]


def test_both_web_nodes_find_the_same_passages(site: Site) -> None:
    for query in QUERIES:
        first, second = (_search(site, node, "admin", query) for node in site.nodes)
        assert first and first == second, query


def test_both_web_nodes_answer_with_the_same_sources(site: Site) -> None:
    # The sources each node retrieved and gave the model are compared, not the words:
    # llama.cpp reuses its prompt cache between requests, which moves greedy decoding's
    # numbers enough to change a word now and then, whichever node asks.
    sources = []
    for node in site.nodes:
        with site.api(node, "admin") as api:
            response = api.post("/ask", json={"collection_id": site.collection_id, "question": QUESTION})
            assert response.status_code == 200, response.text
            answer = response.json()
            assert answer["answer"].strip()
            cited = answer["citations"]
            sources.append([(c["n"], c["document_id"], c["chunk_id"], c["page"], round(c["score"], 4)) for c in cited])
    assert sources[0], "the answer has no sources"
    assert sources[0] == sources[1]


def test_the_restricted_document_is_the_members_on_both_nodes_and_the_outsiders_on_neither(site: Site) -> None:
    minutes = next(d for d in site.documents if d["id"] == site.minutes_id)
    assert minutes["status"] == "ready", minutes
    for node in site.nodes:
        with site.api(node, "outsider") as api:
            listed = api.get(f"/collections/{site.collection_id}/documents", params={"limit": 200}).json()
            assert site.minutes_id not in {d["id"] for d in listed["items"]}
            assert listed["total"] == len(site.documents) - 1
            assert api.get(f"/documents/{site.minutes_id}").status_code == 404
            assert api.get(f"/documents/{site.minutes_id}/download").status_code == 404
        assert "minutes.pdf" not in {name for _, name, _ in _search(site, node, "outsider", QUERIES[2])}
        with site.api(node, "member") as api:
            listed = api.get(f"/collections/{site.collection_id}/documents", params={"limit": 200}).json()
            assert site.minutes_id in {d["id"] for d in listed["items"]}
            download = api.get(f"/documents/{site.minutes_id}/download")
            assert download.status_code == 200 and download.content == MINUTES
        assert _search(site, node, "member", QUERIES[2])[0][1] == "minutes.pdf"


def test_a_browser_session_signed_in_on_one_node_is_valid_on_the_other(site: Site) -> None:
    a, b = site.nodes
    browser = BrowserSession(a.base_url)
    assert browser.login("admin", ADMIN_PASSWORD).status_code == 302
    other = httpx.Client(base_url=b.base_url, cookies=browser.http.cookies, trust_env=False, timeout=60)
    page = other.get("/")
    assert page.status_code == 200 and "/accounts/login/" not in str(page.url)


def test_report_timings(site: Site) -> None:
    """Not a check: the numbers docs/scale.md quotes (shown with ``-s``)."""
    ready = sum(d["status"] == "ready" for d in site.documents)
    print(f"\nstateless: {len(site.documents)} documents ({ready} ready) in {site.ingest_s:.1f}s, three rounds")
