"""Many people asking at once: the product under load over real HTTP, for a bounded time.

    .venv/bin/python bench/load.py --llm instant               # 50 users, 60 s, a model that answers at once
    .venv/bin/python bench/load.py --llm llama --seconds 60    # the packaged SmolLM2 on llama.cpp
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/x .venv/bin/python bench/load.py ...

The product runs as in production: the ASGI app under uvicorn (``processes.web_command``)
in a process of its own, on a fresh database (on PostgreSQL a new database beside the
one ``DATABASE_URL`` names, dropped at the end; otherwise SQLite in a temporary data
dir) with a few documents ingested first. The LLM is either ``bench/instant_llm.py``
(streams at once, so what is measured is our own stack) or llama.cpp's server with
the packaged model (``assistant.local_llm``).

``--users`` simulated people (signed in through a real session, each with its own
cookies) each loop: open a new conversation, ask, read the streamed answer to its
end, pause a random think time (0 to 2x ``--think``), until ``--seconds`` are up or
``--questions`` each were asked. All start at once unless ``--stagger``: then each first
pauses as between questions, as people already mid-conversation when the run starts.
Questions still streaming at the deadline are abandoned (counted apart, never as
errors); everything stops by itself. Loopback only.

Printed: the CPU (model, cores, avx2/avx512/amx), errors (with the first reasons),
answers/s, p50/p95 of the time to first token as the client sees it (the ask POST
sent to the first answer token read) and as the model was seen to take (stored per
answer: ``timings.model_first_token_ms``, from the prompt sent to the model to its
first token), and of their difference per answer: what our stack adds on top of the
model (HTTP, session, retrieval, database, queueing in the web process). Then the
web process's RSS sampled every second (first, last, max, and the slope over the
second half) and the database connections the web process held (PostgreSQL:
``pg_stat_activity``; SQLite: the database files it has open), overall and while at
least one stream was waiting on the model.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse, urlunparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import POLICY_PAGES, POLICY_QUESTIONS, cpu  # noqa: E402

QUESTIONS = POLICY_QUESTIONS[:8]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


# --- set-up: database, documents, people --------------------------------------------------


@contextlib.contextmanager
def database(data_dir: Path) -> Iterator[str]:
    """The URL of a fresh database for this run ("" for SQLite in ``data_dir``)."""
    base = os.environ.get("DATABASE_URL", "")
    if not base.startswith("postgres"):
        yield ""
        return
    import psycopg

    name = f"bench_load_{uuid.uuid4().hex[:10]}"
    parsed = urlparse(base)
    admin = urlunparse(parsed._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield urlunparse(parsed._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def prepare(*, users: int) -> tuple[int, list[str]]:
    """Migrate, ingest the handbook, make ``users`` readers; (collection id, their session keys)."""
    import django

    import assistant.privacy  # noqa: F401

    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Group, User
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command
    from django.db import connections

    from assistant.accounts.services import collection_grant
    from ingest import pipeline, services
    from ingest.models import Collection
    from tests.support.documents import HANDBOOK_PAGES, make_pdf

    call_command("migrate", verbosity=0)
    call_command("collectstatic", "--noinput", verbosity=0)  # the pages' manifest, as a deployment has it
    collection = Collection.objects.create(name="Handbook")
    files = {"handbook.pdf": make_pdf(HANDBOOK_PAGES), "policies.pdf": make_pdf(POLICY_PAGES)}
    ids = []
    for name, content in files.items():
        uploaded = services.document_upload(
            collection=collection, name=name, fileobj=io.BytesIO(content), user=None, enqueue=False
        )
        ids.append(uploaded.document.pk)
    pipeline.documents_process_here(document_ids=ids, together=True)
    readers = Group.objects.create(name="readers")
    collection_grant(collection=collection, role="read", group=readers)
    keys = []
    for n in range(users):
        user = User.objects.create_user(f"user{n:03d}")  # no password: signed in by session below
        user.groups.add(readers)
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        assert session.session_key
        keys.append(session.session_key)
    connections.close_all()  # this process holds nothing during the run
    return collection.pk, keys


# --- processes ----------------------------------------------------------------------------


def start(name: str, command: list[str], *, env: dict[str, str], log_dir: Path, url: str, timeout: float) -> Any:
    import httpx

    log = open(log_dir / f"{name}.log", "wb")  # noqa: SIM115 (lives as long as the process)
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited:\n{(log_dir / f'{name}.log').read_text()[-3000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=2, trust_env=False).status_code == 200:
                return process
        time.sleep(0.3)
    process.kill()
    raise SystemExit(f"{name} did not answer {url} within {timeout:.0f} s")


def stop(process: Any) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


def tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        with contextlib.suppress(OSError):
            for task in os.listdir(f"/proc/{current}/task"):
                with contextlib.suppress(OSError):
                    todo += [int(p) for p in Path(f"/proc/{current}/task/{task}/children").read_text().split()]
    return pids


def rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


# --- the simulated people ------------------------------------------------------------------


@dataclass
class Run:
    deadline: float
    waiting: int = 0  # streams that have their sources and wait for the model's first token
    answers: int = 0
    abandoned: int = 0
    errors: list[str] = field(default_factory=list)
    client_ttft_ms: dict[int, float] = field(default_factory=dict)  # by stored message id


async def person(
    run: Run, *, base_url: str, session_key: str, collection_id: int, think: float, limit: int, stagger: bool = False
) -> None:
    import httpx

    # A CSRF secret of the browser's own (Django accepts the unmasked secret as the token).
    csrf = uuid.uuid4().hex
    cookies = {"sessionid": session_key, "csrftoken": csrf}
    async with httpx.AsyncClient(base_url=base_url, cookies=cookies, trust_env=False, timeout=300) as http:
        home = await http.get("/")
        if home.status_code != 200:
            run.errors.append(f"home page: HTTP {home.status_code} (not signed in?)")
            return
        if stagger:  # already mid-way through a pause when the run starts: no start-up burst
            await asyncio.sleep(random.uniform(0, 2 * think))  # noqa: S311 (a pause, not a secret)
        for n in range(limit):
            if time.monotonic() >= run.deadline:
                return
            question = QUESTIONS[(hash(session_key) + n) % len(QUESTIONS)]
            waiting = False
            try:
                new = await http.post("/chat/new", data={"collection": collection_id, "csrfmiddlewaretoken": csrf})
                if new.status_code != 302:
                    run.errors.append(f"new conversation: HTTP {new.status_code}")
                    continue
                sent = time.monotonic()
                first: float | None = None
                end: dict[str, Any] = {}
                async with http.stream(
                    "POST", new.headers["location"] + "ask", data={"question": question}, headers={"X-CSRFToken": csrf}
                ) as response:
                    if response.status_code != 200:
                        run.errors.append(f"ask: HTTP {response.status_code}")
                        continue
                    async for line in response.aiter_lines():
                        if not line.startswith("data:"):
                            continue
                        event = json.loads(line[5:])
                        if event["event"] == "sources":
                            waiting = True
                            run.waiting += 1
                        elif event["event"] == "token" and first is None:
                            first = time.monotonic()
                            if waiting:
                                waiting = False
                                run.waiting -= 1
                        elif event["event"] in ("done", "error"):
                            end = event
                if end.get("event") != "done":
                    run.errors.append(f"answer: {end.get('message') or 'stream ended without an end event'}")
                    continue
                run.answers += 1
                if first is not None:
                    run.client_ttft_ms[int(end["message_id"])] = (first - sent) * 1000
            except asyncio.CancelledError:
                run.abandoned += 1
                raise
            except Exception as exc:  # every failure counts, named
                run.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                if waiting:
                    run.waiting -= 1
            await asyncio.sleep(random.uniform(0, 2 * think))  # noqa: S311 (a pause, not a secret)


async def crowd(run: Run, *, keys: list[str], grace: float, **kwargs: Any) -> None:
    tasks = [asyncio.create_task(person(run, session_key=key, **kwargs)) for key in keys]
    _done, pending = await asyncio.wait(tasks, timeout=max(0.0, run.deadline - time.monotonic()) + grace)
    for task in pending:  # still streaming at the deadline (a slow model): abandoned
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)


# --- sampling while it runs ----------------------------------------------------------------


@dataclass
class Samples:
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MB)
    connections: list[tuple[int, int]] = field(default_factory=list)  # (held, streams waiting on the model)


def sample(
    samples: Samples, run: Run, stopping: threading.Event, *, web_pid: int, database_url: str, sqlite: Path
) -> None:
    from tests.support.held import sqlite_files

    conn = None
    if database_url:
        import psycopg

        conn = psycopg.connect(database_url.replace("postgres://", "postgresql://", 1), autocommit=True)
    name = urlparse(database_url).path.lstrip("/")
    started = time.monotonic()
    tick = 0
    try:
        while not stopping.wait(0.25):
            pids = tree(web_pid)
            if conn is not None:
                # Nothing but the web process connects to this run's database (the set-up closed its own).
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()", [name]
                ).fetchone()
                held = int(row[0]) if row else 0
            else:
                held = sum(1 for pid in pids for _ in sqlite_files(pid, sqlite) if _.endswith("db.sqlite3"))
            samples.connections.append((held, run.waiting))
            if tick % 4 == 0:
                samples.rss.append((time.monotonic() - started, rss_mb(pids)))
            tick += 1
    finally:
        if conn is not None:
            conn.close()


def slope_mb_per_min(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of the second half of the samples (after warm-up)."""
    half = points[len(points) // 2 :]
    if len(half) < 2:
        return float("nan")
    n = len(half)
    mean_t = sum(t for t, _ in half) / n
    mean_m = sum(m for _, m in half) / n
    var = sum((t - mean_t) ** 2 for t, _ in half)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in half)
    return cov / var * 60 if var else float("nan")


# --- the run -------------------------------------------------------------------------------


def model_ttft_ms(message_ids: list[int]) -> dict[int, float]:
    from django.db import connections

    from assistant.chat.models import Message

    rows = list(Message.objects.filter(pk__in=message_ids).values_list("pk", "timings"))
    found = {pk: float(t["model_first_token_ms"]) for pk, t in rows if t.get("model_first_token_ms") is not None}
    if len(found) < len(rows):
        print(f"{len(rows) - len(found)} of {len(rows)} answers have no model timing: {rows[0][1]}")
    connections.close_all()
    return found


def report(args: argparse.Namespace, run: Run, samples: Samples, elapsed: float, model_ms: dict[int, float]) -> None:
    client = list(run.client_ttft_ms.values())
    model = [model_ms[pk] for pk in run.client_ttft_ms if pk in model_ms]
    added = [run.client_ttft_ms[pk] - model_ms[pk] for pk in run.client_ttft_ms if pk in model_ms]
    print(f"CPU: {cpu()}")
    print(f"Load average (1/5/15 min) at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    db = "PostgreSQL" if os.environ.get("DATABASE_URL", "").startswith("postgres") else "SQLite"
    print(
        f"LLM: {args.llm}, users: {args.users}, think time: 0-{2 * args.think:g} s"
        f"{' (staggered start)' if args.stagger else ''}, run: {elapsed:.0f} s, "
        f"database: {db}, web workers: {args.workers}, LLM_MAX_TOKENS: {args.max_tokens}\n"
    )
    print(f"answers: {run.answers} ({run.answers / elapsed:.1f}/s), errors: {len(run.errors)}, "
          f"abandoned at the deadline: {run.abandoned}")  # fmt: skip
    for reason in sorted(set(run.errors))[:5]:
        print(f"  error: {reason} (x{run.errors.count(reason)})")
    print("\n| time to first token | p50 ms | p95 ms |\n|---|---:|---:|")
    rows = [
        ("client (ask sent to first token read)", client),
        ("model (prompt sent to first token)", model),
        ("our stack adds (client - model, per answer)", added),
    ]
    for name, values in rows:
        print(f"| {name} | {percentile(values, 50):,.0f} | {percentile(values, 95):,.0f} |")
    rss = [mb for _, mb in samples.rss]
    if rss:
        print(
            f"\nweb process RSS (MB, every 1 s): first {rss[0]:.0f}, last {rss[-1]:.0f}, max {max(rss):.0f}, "
            f"slope over the second half {slope_mb_per_min(samples.rss):+.1f} MB/min ({len(rss)} samples)"
        )
    held = [h for h, _ in samples.connections]
    while_waiting = [h for h, w in samples.connections if w > 0]
    waiting = [w for _, w in samples.connections if w > 0]
    busiest = max(samples.connections, key=lambda s: (s[1], -s[0]), default=(0, 0))
    print(
        f"database connections held by the web process (every 0.25 s): max {max(held, default=0)}; "
        f"at the most streams waiting on the model at once ({busiest[1]}): {busiest[0]} held; "
        f"while streams waited on the model ({len(while_waiting)} samples, up to {max(waiting, default=0)} streams "
        f"waiting): max {max(while_waiting, default=0)}, mean {sum(while_waiting) / max(1, len(while_waiting)):.2f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--llm", choices=["instant", "llama"], default="instant")
    parser.add_argument("--users", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--questions", type=int, default=1000, help="at most this many questions per user")
    parser.add_argument("--think", type=float, default=1.0, help="mean pause between a user's questions (s)")
    parser.add_argument(
        "--stagger",
        action="store_true",
        help="each user starts after a pause of 0-2x --think, as people already mid-conversation (no start-up burst)",
    )
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    parser.add_argument("--max-tokens", type=int, default=64, help="LLM_MAX_TOKENS for the run")
    parser.add_argument(
        "--grace", type=float, default=30, help="seconds after the deadline before streams are abandoned"
    )
    args = parser.parse_args()

    from assistant import local_llm, processes
    from tests.support.processes import free_port

    with tempfile.TemporaryDirectory(prefix="bench-load-") as tmp:
        data_dir = Path(tmp) / "data"
        logs = Path(tmp) / "logs"
        logs.mkdir()
        with database(Path(tmp)) as database_url:
            env = dict(os.environ, ASSISTANT_DATA_DIR=str(data_dir), LLM_MAX_TOKENS=str(args.max_tokens),
                       DJANGO_SETTINGS_MODULE="assistant.settings", OMP_NUM_THREADS="1")  # fmt: skip
            if database_url:
                env["DATABASE_URL"] = database_url
            else:
                env.pop("DATABASE_URL", None)
            llm_port = free_port()
            env["LLM_BASE_URL"] = f"http://127.0.0.1:{llm_port}/v1"
            if args.llm == "instant":
                env["LLM_MODEL"] = "instant"
            # The settings are read from here on: the run's data dir and database first.
            os.environ.update(env)
            if not database_url:
                os.environ.pop("DATABASE_URL", None)
            collection_id, keys = prepare(users=args.users)
            if args.llm == "instant":
                llm_command = [sys.executable, str(ROOT / "bench" / "instant_llm.py"), "--port", str(llm_port)]
            else:
                llm_command = local_llm.server_command(port=llm_port, threads=args.threads, context=4096)
            running: list[Any] = []
            try:
                running.append(start("llm", llm_command, env=env, log_dir=logs, url=f"{env['LLM_BASE_URL']}/models",
                                     timeout=180))  # fmt: skip
                web_port = free_port()
                web_command = processes.web_command(host="127.0.0.1", port=web_port)
                if args.workers > 1:
                    web_command += ["--workers", str(args.workers)]
                base_url = f"http://127.0.0.1:{web_port}"
                web = start("web", web_command, env=env, log_dir=logs, url=f"{base_url}/healthz", timeout=120)
                running.append(web)
                # One question first, not counted: the web process loads the embedding model on it.
                warm = Run(deadline=time.monotonic() + 600)
                asyncio.run(
                    person(warm, base_url=base_url, session_key=keys[0], collection_id=collection_id, think=0, limit=1)
                )
                if warm.errors or not warm.answers:
                    log = (logs / "web.log").read_text(errors="replace")[-3000:]
                    raise SystemExit(f"the warm-up question failed: {warm.errors}\n{log}")
                run = Run(deadline=time.monotonic() + args.seconds)
                samples = Samples()
                stopping = threading.Event()
                sampler = threading.Thread(
                    target=sample,
                    args=(samples, run, stopping),
                    kwargs={"web_pid": web.pid, "database_url": database_url, "sqlite": data_dir / "db.sqlite3"},
                    daemon=True,
                )
                started = time.monotonic()
                sampler.start()
                asyncio.run(
                    crowd(run, keys=keys, grace=args.grace, base_url=base_url, collection_id=collection_id,
                          think=args.think, limit=args.questions, stagger=args.stagger)
                )  # fmt: skip
                elapsed = time.monotonic() - started
                stopping.set()
                sampler.join(10)
            finally:
                for process in reversed(running):
                    stop(process)
            report(args, run, samples, elapsed, model_ttft_ms(list(run.client_ttft_ms)))


if __name__ == "__main__":
    main()
