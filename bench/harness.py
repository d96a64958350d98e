"""What several benchmarks share: the CPU they ran on, Django on a data dir of their
own, the packaged model's llama.cpp server, and the policy pages they ask about.

Imported by its plain name (``from harness import cpu``): each benchmark runs as a
script, with ``bench/`` first on its path.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path
from typing import Any

CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8")

POLICY_QUESTIONS = [
    "What is the daily meal allowance for international travel?",
    "Where must employees book flights when travelling abroad?",
    "When must travel receipts be submitted?",
    "What are the office hours?",
    "When does the cafeteria serve lunch?",
    "Where are lost badges reported?",
    "Who escorts visitors?",
    "How must badges be worn?",
    "How many days of annual leave do employees get?",
    "Who approves remote work?",
    "How long is the notice period?",
    "What does the expense policy say about taxis?",
]
POLICY_PAGES = [
    "Leave Policy\nEmployees receive 28 days of annual leave. Leave is requested in the HR portal "
    "and approved by the line manager. Unused leave of up to five days carries over to the next year.",
    "Remote Work\nRemote work of up to three days a week is approved by the line manager. "
    "The notice period for employees is three months after probation and two weeks during it.",
    "Expenses\nTaxis are reimbursed when no public transport runs or when travelling with equipment. "
    "Expense claims are filed monthly with the original receipts attached.",
]


def cpu() -> str:
    """The CPU as lscpu names it, its logical cores and the vector flags that matter here."""
    model, flags = "unknown", set[str]()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text(errors="replace").splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags") and not flags:
                flags = set(line.split(":", 1)[1].split())
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                model = line.split(":", 1)[1].strip()
    present = [f for f in CPU_FLAGS if f in flags]
    return f"{model}, {os.cpu_count()} logical cores, flags: {' '.join(present) or 'none of ' + '/'.join(CPU_FLAGS)}"


def django_setup(data_dir: str, *, sqlite: bool = False) -> None:
    """Django on ``data_dir``, migrated (``sqlite``: the embedded database whatever the environment says)."""
    os.environ["ASSISTANT_DATA_DIR"] = data_dir
    if sqlite:
        os.environ.pop("DATABASE_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
    import django

    import assistant.privacy  # noqa: F401  (the telemetry switches, before any library loads)

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def start_packaged_llm(*, threads: int, log: Path) -> tuple[Any, str]:
    """llama.cpp's server with the packaged model on a free port, as ``manage.py serve`` starts it.

    Returns the process and its base URL, and points the settings' ``LLM_BASE_URL`` at it.
    """
    import socket

    import httpx
    from django.conf import settings

    from assistant import local_llm

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    handle = open(log, "wb")  # noqa: SIM115 (lives as long as the server)
    command = local_llm.server_command(port=port, threads=threads, context=4096)
    process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"llama.cpp server exited:\n{log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base_url}/models", timeout=2, trust_env=False).status_code == 200:
                settings.LLM_BASE_URL = base_url
                return process, base_url
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit("llama.cpp server did not start in 180 s")
