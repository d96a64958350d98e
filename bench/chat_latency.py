"""Chat latency with the packaged local model, and the chat page's own weight.

    .venv/bin/python bench/chat_latency.py                 # 12 questions, llama.cpp on 2 threads
    .venv/bin/python bench/chat_latency.py --questions 30 --threads 4

On the embedded defaults (SQLite in a fresh ``ASSISTANT_DATA_DIR``, the packaged
MiniLM for embeddings) it starts the one heavy thing the product needs, llama.cpp's
server with the packaged SmolLM2 (``assistant.local_llm.server_command``, as
``manage.py serve`` does), ingests a few documents through the real pipeline, and asks
the questions through ``answer_question``: the path the chat page streams. Each answer
stores where its time went (``Message.first_token_ms`` and ``Message.timings``); this
script only reads them back and prints p50/p95 of:

* retrieval: embedding the question and searching (dense + lexical, fused, floored);
* prompt: building the model's messages from the passages;
* model TTFT: from sending the prompt to the first token the server streams back;
* first token: what the asker waits for, from the question to the first token;
* total: the whole answer.

Each question is asked in a conversation of its own (no follow-up rewrite). One
question is asked first to load the model, and not counted.

The page weight is measured with Django's test client: the HTML of the chat page (a
conversation with an answer in it) and the bytes of every stylesheet and script it
references, raw and gzipped. Nothing here is a test: the figures depend on the machine
(its CPU is printed) and on whatever else it is running (the load average is printed).
"""

from __future__ import annotations

import argparse
import gzip
import os
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness import POLICY_PAGES as EXTRA_PAGES  # noqa: E402
from harness import POLICY_QUESTIONS as QUESTIONS  # noqa: E402
from harness import cpu, start_packaged_llm  # noqa: E402
from harness import django_setup as setup  # noqa: E402


def ingest() -> Any:
    import io

    from ingest import pipeline, services
    from ingest.models import Collection
    from tests.support.documents import HANDBOOK_PAGES, make_pdf

    collection = Collection.objects.create(name="bench-chat")
    files = {
        "handbook.pdf": make_pdf(HANDBOOK_PAGES),
        "hr-policies.pdf": make_pdf(EXTRA_PAGES),
        "expenses.txt": "\n\n".join(EXTRA_PAGES[2:] + HANDBOOK_PAGES[1:2]).encode(),
    }
    ids = []
    for name, content in files.items():
        result = services.document_upload(
            collection=collection, name=name, fileobj=io.BytesIO(content), user=None, enqueue=False
        )
        ids.append(result.document.pk)
    pipeline.documents_process_here(document_ids=ids, together=True)
    return collection


def ask_all(collection: Any, questions: list[str]) -> list[Any]:
    from assistant.chat import services
    from assistant.chat.models import Message

    services.answer_question(user=None, collection=collection, question="What is this handbook about?")  # warm-up
    messages = []
    for question in questions:
        answer = services.answer_question(user=None, collection=collection, question=question)
        if answer.error:
            raise SystemExit(f"the model failed: {answer.error}")
        assert answer.message_id is not None
        messages.append(Message.objects.get(pk=answer.message_id))
    return messages


def _p(values: list[float]) -> str:
    from assistant.chat.metrics import percentile

    if not values:
        return "| — | — |"
    return f"| {percentile(values, 50):,.0f} | {percentile(values, 95):,.0f} |"


def latency_table(messages: list[Any]) -> str:
    answered = [m for m in messages if "model_first_token_ms" in m.timings]
    rows = [
        ("retrieval", [m.timings["retrieval_ms"] for m in messages]),
        ("prompt build", [m.timings.get("prompt_ms", 0) for m in answered]),
        ("model time to first token", [m.timings["model_first_token_ms"] for m in answered]),
        ("time to first token (asker)", [m.first_token_ms for m in messages if m.first_token_ms is not None]),
        ("total answer time", [m.latency_ms for m in messages if m.latency_ms is not None]),
    ]
    lines = ["| stage | p50 ms | p95 ms |", "|---|---:|---:|"]
    lines += [f"| {name} {_p([float(v) for v in values])}" for name, values in rows]
    return "\n".join(lines) + f"\n\n{len(messages)} questions, {len(answered)} answered by the model."


def page_weight(collection: Any) -> str:
    """Bytes of the chat page's HTML and of each stylesheet and script it references."""
    from django.conf import settings
    from django.contrib.auth.models import User
    from django.contrib.staticfiles import finders
    from django.test import Client
    from django.test.utils import override_settings, setup_test_environment

    from assistant.chat.models import Conversation

    setup_test_environment()  # the test client's host is allowed
    user = User.objects.create_superuser("bench", password=None)
    Conversation.objects.filter(user=None).update(user=user)
    conversation = Conversation.objects.filter(user=user, messages__role="assistant").first()
    assert conversation is not None
    client = Client()
    client.force_login(user)
    # The files as they are in the source tree, without a collectstatic step (as the tests render pages).
    plain = {**settings.STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    with override_settings(STORAGES=plain):
        html = client.get(f"/chat/{conversation.pk}/").content
    rows = [("HTML (a conversation with one answer)", html)]
    assets = re.findall(rb'<link[^>]+rel="stylesheet"[^>]+href="([^"]+)"|<script[^>]+src="([^"]+)"', html)
    prefix = "/" + settings.STATIC_URL.lstrip("/")
    for css, js in assets:
        url = (css or js).decode()
        if not url.startswith(prefix):  # served by a view (the translation catalog): its own response
            with override_settings(STORAGES=plain):
                rows.append((url.strip("/").rsplit("/", 1)[-1], client.get(url).content))
            continue
        found = finders.find(url.removeprefix(prefix))
        if isinstance(found, str):
            rows.append((url.rsplit("/", 1)[-1], Path(found).read_bytes()))
    lines = ["| file | bytes | gzipped |", "|---|---:|---:|"]
    lines += [f"| {name} | {len(body):,} | {len(gzip.compress(body)):,} |" for name, body in rows]
    total = sum(len(b) for _n, b in rows)
    total_gz = sum(len(gzip.compress(b)) for _n, b in rows)
    lines.append(f"| **total** | **{total:,}** | **{total_gz:,}** |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--questions", type=int, default=len(QUESTIONS))
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads (the tests use 2)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-chat-") as data_dir:
        setup(data_dir)
        from django.conf import settings

        process, _url = start_packaged_llm(threads=args.threads, log=Path(data_dir) / "llama.log")
        try:
            load_before = os.getloadavg()
            collection = ingest()
            questions = (QUESTIONS * (args.questions // len(QUESTIONS) + 1))[: args.questions]
            messages = ask_all(collection, questions)
            load_after = os.getloadavg()
        finally:
            process.terminate()
            process.wait(30)
        weight = page_weight(collection)
        print(f"CPU: {cpu()}, llama.cpp threads: {args.threads}")
        print(f"Model: {settings.LLM_MODEL} (packaged GGUF), retrieval: {settings.RETRIEVAL_MODE}")
        print(f"Load average (1 min) before/after: {load_before[0]:.2f} / {load_after[0]:.2f}\n")
        print(latency_table(messages))
        print()
        print(weight)


if __name__ == "__main__":
    main()
