"""``manage.py serve`` (what ``make run`` ends with) brings the product up and down."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import httpx
import pytest

from tests.conftest import REPO, LLMServer
from tests.support.processes import free_port
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.live, pytest.mark.embedded]


def test_serve_starts_every_part_prints_the_url_and_stops_cleanly(tmp_path, llama_server: LLMServer) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    env.update(ASSISTANT_DATA_DIR=str(tmp_path), LLM_BASE_URL=llama_server.base_url, LLM_MODEL=llama_server.model)
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v0"], env=env, cwd=REPO, check=True)
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-u", "manage.py", "serve", "--port", str(port)],
            env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        url = f"http://127.0.0.1:{port}/"

        def announced() -> bool:
            assert proc.poll() is None, log.read_text()
            return url in log.read_text()

        wait_until(announced, 120, lambda: log.read_text(), interval=0.5)
        assert f"The assistant is running at {url}" in log.read_text()
        assert httpx.get(f"{url}healthz", trust_env=False).json() == {"status": "ok"}
        login = httpx.get(f"{url}accounts/login/", trust_env=False)
        assert login.status_code == 200 and "Sign in" in login.text
        # The stylesheet the page names is served by the product itself.
        match = re.search(r'href="(/static/assistant/app\.[0-9a-f]+\.css)"', login.text)
        assert match, login.text
        css = httpx.get(f"http://127.0.0.1:{port}{match.group(1)}", trust_env=False)
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert "starting worker" in log.read_text()
        assert "starting llm" not in log.read_text()  # an external LLM server is configured
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/healthz", trust_env=False, timeout=2)
