"""What one answer costs the web process apart from the model: CPU time and database queries.

    .venv/bin/python bench/answer_cost.py [--questions 60] [--warmup 5]

In-process, on SQLite in a temporary data dir, through the chat's own path
(``services.answer_question``) for a reader of a collection that also holds a document
restricted to a group they are not in. The model is ``bench/instant_llm.py`` in a
process of its own, so its CPU is not counted. Each question opens a new conversation.

Printed per answer: CPU milliseconds of this process (``time.process_time``: other work on
the machine inflates it far less than the wall clock), wall milliseconds, retrieval wall
milliseconds as the answer stores them, and database queries. To compare two revisions,
run it on each in one sitting and compare the ratios (the CPU is named at the top).
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import POLICY_PAGES, POLICY_QUESTIONS, cpu, django_setup  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--questions", type=int, default=60)
    parser.add_argument("--warmup", type=int, default=5, help="answers first, not counted (models loaded, caches warm)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-answer-cost-") as data_dir:
        django_setup(data_dir, sqlite=True)
        import httpx
        from django.contrib.auth.models import Group, User
        from django.db import connection
        from django.test.utils import CaptureQueriesContext

        from assistant.accounts.services import collection_grant
        from assistant.chat import services as chat
        from assistant.chat.llm import LLMClient
        from assistant.chat.models import Message
        from ingest import pipeline, services
        from ingest.models import Collection
        from tests.support.documents import HANDBOOK_PAGES, make_pdf
        from tests.support.processes import free_port

        collection = Collection.objects.create(name="Handbook")
        readers, board = Group.objects.create(name="readers"), Group.objects.create(name="board")
        collection_grant(collection=collection, role="read", group=readers)
        files = {
            "handbook.pdf": (make_pdf(HANDBOOK_PAGES), ()),
            "policies.pdf": (make_pdf(POLICY_PAGES), ()),
            "board.txt": (b"The board's meal allowance abroad is 400 euros a day.", (board,)),
        }
        ids = []
        for name, (content, groups) in files.items():
            uploaded = services.document_upload(
                collection=collection, name=name, fileobj=io.BytesIO(content), user=None,
                restrict_to_groups=list(groups), enqueue=False,
            )  # fmt: skip
            ids.append(uploaded.document.pk)
        pipeline.documents_process_here(document_ids=ids, together=True)
        reader = User.objects.create_user("reader")
        reader.groups.add(readers)

        port = free_port()
        llm_process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "instant_llm.py"), "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            for _ in range(100):
                try:
                    httpx.get(f"http://127.0.0.1:{port}/v1/models", timeout=1, trust_env=False)
                    break
                except httpx.HTTPError:
                    time.sleep(0.2)
            llm = LLMClient(base_url=f"http://127.0.0.1:{port}/v1", model="instant")
            cpu_ms, wall_ms, queries, retrieval_ms = [], [], [], []
            for n in range(args.warmup + args.questions):
                question = POLICY_QUESTIONS[n % len(POLICY_QUESTIONS)]
                wall, used = time.perf_counter(), time.process_time()
                with CaptureQueriesContext(connection) as captured:
                    answer = chat.answer_question(user=reader, collection=collection, question=question, llm=llm)
                used, wall = time.process_time() - used, time.perf_counter() - wall
                assert not answer.error, answer.error
                assert all(c["document"] != "board.txt" for c in answer.citations), "a restricted passage leaked"
                if n < args.warmup:
                    continue
                cpu_ms.append(used * 1000)
                wall_ms.append(wall * 1000)
                queries.append(len(captured.captured_queries))
                stored = Message.objects.get(pk=int(answer.message_id or 0))
                retrieval_ms.append(float(stored.timings.get("retrieval_ms", 0)))
        finally:
            llm_process.terminate()
            llm_process.wait(10)

    def line(name: str, values: list[float]) -> str:
        return f"| {name} | {statistics.median(values):.1f} | {statistics.fmean(values):.1f} |"

    print(f"CPU: {cpu()}")
    print(f"{args.questions} answers after {args.warmup} to warm up, SQLite, instant model\n")
    print("| per answer | median | mean |\n|---|---:|---:|")
    print(line("CPU ms (this process)", cpu_ms))
    print(line("wall ms", wall_ms))
    print(line("retrieval wall ms (stored)", retrieval_ms))
    print(line("database queries", [float(q) for q in queries]))


if __name__ == "__main__":
    main()
