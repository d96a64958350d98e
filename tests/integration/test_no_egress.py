"""No egress: the product contacts the configured database, broker and LLM server, nothing else.

The product's own processes run with a socket-level guard installed at interpreter
start (``tests/support/egress/sitecustomize.py``): every ``connect``,
``connect_ex``, ``sendto``, ``create_connection`` and name lookup of every Python
process (children included) is written to a log with its host and port, and any
destination outside the allowed list is refused. Under the guard the test migrates
a fresh database, ingests a file of every supported format with
``manage.py ingest --inline --json`` (text and scanned PDFs, images, office files,
spreadsheets, CSV/TSV, HTML, Markdown, text, EML and MSG with attachments, EPUB,
RTF, ODT, a ZIP archive), answers a question with ``manage.py ask`` through the
real llama.cpp server, and starts the web server and loads a page.

The guard sees what Python code does. Native code opens sockets of its own: libpq
(PostgreSQL) and the external programs the parsers run (tesseract, pdftoppm,
pandoc), which are offline tools. Where ``strace`` works, ingestion and the chat
turn also run under ``strace -f``, which records the ``connect``/``sendto``
system calls of every process and thread, native ones included; its destinations
must be allowed too.

The allowed destinations are read from the environment the suite runs in: the
PostgreSQL server of ``DATABASE_URL`` (the embedded run uses SQLite: no database
host), the Redis server of ``CELERY_BROKER_URL`` (the embedded run uses the file
system: no broker host) and the LLM server; each must be a loopback address here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

from assistant import processes
from tests.conftest import REPO, LLMServer
from tests.ingest.parser_files import make_epub, make_zip, multipage_tiff, text_image
from tests.integration.conftest import _drop_postgres_database, _postgres_database
from tests.support.documents import make_pdf
from tests.support.processes import Process, free_port

GUARD_DIR = REPO / "tests" / "support" / "egress"
LOOPBACK = {"127.0.0.1", "::1", "localhost"}

# One real file per format and parser; the deliberately broken files are left out.
SHARED_FILES = [
    "fake-memo.pdf",  # PDF with a text layer
    "loremipsum-flat.pdf",  # scanned PDF, one page of OCR
    "layout-parser-paper-fast.jpg",  # image, OCR
    "simple.docx",
    "fake-power-point.pptx",
    "stanley-cups.xlsx",
    "ideas-page.html",
    "codeblock.md",
    "fake-text-utf-16.txt",
    "fake-email-attachment.eml",  # its attachment becomes a document
    "fake-email.msg",
    "fake-doc.rtf",
    "simple.odt",
    "simple.zip",  # each member becomes a document
]
EXPECTED_TYPES = {"pdf", "jpg", "png", "tiff", "docx", "pptx", "xlsx", "csv", "tsv", "html", "md", "txt", "eml",
                  "msg", "rtf", "odt", "epub", "zip"}  # fmt: skip


def _host_port(url: str, default_port: int) -> tuple[str, int]:
    parsed = urlparse(url)
    return (parsed.hostname or "localhost"), (parsed.port or default_port)


def _strace_works() -> bool:
    if not shutil.which("strace"):
        return False
    probe = subprocess.run(
        ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=connect", "-o", "/dev/null", "true"],
        capture_output=True, check=False,
    )  # fmt: skip
    return probe.returncode == 0


_STRACE_INET = re.compile(r'sa_family=AF_INET, sin_port=htons\((\d+)\), sin_addr=inet_addr\("([^"]+)"\)')
_STRACE_INET6 = re.compile(r'sa_family=AF_INET6, sin6_port=htons\((\d+)\),.*?inet_pton\(AF_INET6, "([^"]+)"')


def _strace_destinations(log: Path) -> set[tuple[str, int]]:
    found: set[tuple[str, int]] = set()
    for path in log.parent.glob(log.name + "*"):
        for line in path.read_text(errors="replace").splitlines():
            for pattern in (_STRACE_INET, _STRACE_INET6):
                for port, host in pattern.findall(line):
                    found.add((host, int(port)))
    return found


def _corpus(folder: Path, formats_dir: Path) -> list[Path]:
    """Every supported format, with as few OCR'd pages as possible."""
    folder.mkdir()
    files = [formats_dir / name for name in SHARED_FILES]
    made = {
        "scan.png": text_image(["Visitors sign in at the front desk."]),
        "fax.tiff": multipage_tiff([["Deliveries arrive on Tuesdays."]]),
        "guide.epub": make_epub("Guide", ["The library opens at eight."]),
        "offices.csv": b"city,floor\nLyon,3\nOslo,5\n",
        "prices.tsv": b"item\tprice\nTea\t2\nCake\t4\n",
        "bundle.zip": make_zip({"inner.txt": b"Parking is free after six.", "inner.pdf": make_pdf(["Zipped page."])}),
    }
    for name, content in made.items():
        (folder / name).write_bytes(content)
        files.append(folder / name)
    return files


class Guarded:
    """The product's commands, each under the socket guard (and strace where it works)."""

    def __init__(self, root: Path, env: dict[str, str], allowed: set[tuple[str, int]]) -> None:
        self.log = root / "egress.jsonl"
        self.strace_log = root / "connect.strace"
        self.strace = _strace_works()
        self.env = {
            **env,
            "PYTHONPATH": os.pathsep.join([str(GUARD_DIR), str(REPO)]),
            "EGRESS_LOG": str(self.log),
            "EGRESS_ALLOW": ",".join(f"{host}:{port}" for host, port in sorted(allowed)),
        }

    def manage(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "manage.py", *args]
        if self.strace:
            # -ff: one file per process; --seccomp-bpf stops only on the traced calls.
            prefix = ["strace", "-f", "-ff", "-qq", "--seccomp-bpf", "-e", "trace=connect,sendto,sendmsg", "-o"]
            command = [*prefix, str(self.strace_log), *command]
        return subprocess.run(
            command, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
        )

    def entries(self) -> list[dict]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line.strip()]


@pytest.fixture
def environment(tmp_path: Path, llama_server: LLMServer) -> Iterator[tuple[dict[str, str], set[tuple[str, int]]]]:
    """The product's environment for this test, and the destinations it may contact."""
    env = dict(os.environ)
    env.update(ASSISTANT_DATA_DIR=str(tmp_path / "data"), LLM_BASE_URL=llama_server.base_url,
               LLM_MODEL=llama_server.model)  # fmt: skip
    allowed = {_host_port(llama_server.base_url, 80)}
    database_url = os.environ.get("DATABASE_URL", "")
    created = None
    if database_url.startswith(("postgres://", "postgresql://")):
        env["DATABASE_URL"], admin_url = _postgres_database(database_url)
        created = (admin_url, urlparse(env["DATABASE_URL"]).path.lstrip("/"))
        allowed.add(_host_port(database_url, 5432))
    broker_url = os.environ.get("CELERY_BROKER_URL", "")
    if broker_url.startswith(("redis://", "rediss://")):
        allowed.add(_host_port(broker_url, 6379))
    for host, _ in allowed:
        assert host in LOOPBACK, f"this test expects local services, not {host}"
    try:
        yield env, allowed
    finally:
        if created:
            _drop_postgres_database(*created)


@pytest.mark.live
@pytest.mark.embedded
def test_ingest_every_format_and_a_chat_turn_contact_only_configured_hosts(
    environment: tuple[dict[str, str], set[tuple[str, int]]], formats_dir: Path, tmp_path: Path, llama_server
) -> None:
    env, allowed = environment
    guarded = Guarded(tmp_path, env, allowed)
    migrated = guarded.manage("migrate", "--noinput")
    assert migrated.returncode == 0, migrated.stderr

    files = _corpus(tmp_path / "corpus", formats_dir)
    ingested = guarded.manage("ingest", "--collection", "Everything", "--inline", "--json", *map(str, files))
    rows = [json.loads(line) for line in ingested.stdout.splitlines() if line.strip()]
    assert ingested.returncode == 0, ingested.stderr[-3000:]
    assert {r["status"] for r in rows} == {"ready"}, rows
    types = guarded.manage(
        "shell", "-c",
        "from ingest.models import Document; import json; "
        "print(json.dumps(sorted(set(Document.objects.values_list('file_type', flat=True)))))",
    )  # fmt: skip
    assert types.returncode == 0, types.stderr
    assert set(json.loads(types.stdout.strip().splitlines()[-1])) >= EXPECTED_TYPES

    asked = guarded.manage("ask", "--collection", "Everything", "--json", "When does the library open?")
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["answer"].strip() and answer["model"] == llama_server.model

    # The web server's start-up and a page load, under the same guard.
    collected = guarded.manage("collectstatic", "--noinput")
    assert collected.returncode == 0, collected.stderr
    port = free_port()
    web = Process("web", processes.web_command(host="127.0.0.1", port=port), env=guarded.env, log_dir=tmp_path,
                  cwd=REPO)  # fmt: skip
    try:
        web.wait_http(f"http://127.0.0.1:{port}/accounts/login/", timeout=60)
        assert httpx.get(f"http://127.0.0.1:{port}/accounts/login/", trust_env=False).status_code == 200
    finally:
        web.stop()

    entries = guarded.entries()
    refused = [e for e in entries if not e["allowed"]]
    assert not refused, "\n".join(f"refused {e['host']}:{e['port']}\n{e['stack']}" for e in refused)
    contacted = {(e["host"], e["port"]) for e in entries if e["call"] in ("connect", "connect_ex", "sendto")
                 and e["family"] in ("AF_INET", "AF_INET6")}  # fmt: skip
    # The guard did see the chat turn: the LLM server is among the destinations.
    assert _host_port(llama_server.base_url, 80) in contacted
    assert contacted <= allowed, contacted - allowed
    lookups = {e["host"] for e in entries if e["call"] == "getaddrinfo"}
    assert lookups <= LOOPBACK | {None, ""}, lookups

    if guarded.strace:
        seen = _strace_destinations(guarded.strace_log)
        assert ("127.0.0.1", _host_port(llama_server.base_url, 80)[1]) in seen  # strace saw the chat turn too
        loopback_allowed = {(("127.0.0.1" if h == "localhost" else h), p) for h, p in allowed}
        assert seen <= loopback_allowed | {("::1", p) for _, p in allowed}, seen - loopback_allowed


def test_the_guard_refuses_and_records_an_outside_destination(tmp_path: Path) -> None:
    """The guard itself works: an attempt to reach an outside host is recorded and refused."""
    log = tmp_path / "egress.jsonl"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(GUARD_DIR), str(REPO)]), EGRESS_LOG=str(log),
               EGRESS_ALLOW="127.0.0.1:9")  # fmt: skip
    code = (
        "import socket, urllib.request\n"
        "s = socket.socket(); s.settimeout(1)\n"
        "try:\n    s.connect(('192.0.2.1', 443))\nexcept ConnectionRefusedError as e:\n    print('refused', e)\n"
        "try:\n    socket.getaddrinfo('example.com', 443)\nexcept socket.gaierror:\n    print('lookup refused')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert "refused egress guard: connection to 192.0.2.1:443" in result.stdout, result.stderr
    assert "lookup refused" in result.stdout
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    assert {(e["host"], e["port"], e["allowed"]) for e in entries} >= {
        ("192.0.2.1", 443, False),
        ("example.com", 443, False),
    }
