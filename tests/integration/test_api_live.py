"""The REST API and the OpenAI-compatible endpoints against the real running product.

One stack (web, worker, LLM server) for the module: a collection is created and a
handbook uploaded through the API itself, then the official ``openai`` client, the
documented curl and Python examples, and schemathesis (bounded) all talk to it.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.conftest import REPO
from tests.integration.conftest import Stack
from tests.support.documents import HANDBOOK_PAGES, make_pdf
from tests.support.waiting import wait_until

pytestmark = pytest.mark.live

# Each example is one HTTP request; a question the fuzzer aims at the handbook is a
# real generation (a few seconds), so the run stays within a couple of minutes.
FUZZ_EXAMPLES = int(os.environ.get("API_FUZZ_EXAMPLES", "6"))


@pytest.fixture(scope="module", autouse=True)
def _short_answers() -> Iterator[None]:
    """Shorter generations for this module's stack: it checks the API's plumbing (formats,
    citations, streaming, permissions), not answer quality, and every example asks."""
    previous = os.environ.get("LLM_MAX_TOKENS")
    os.environ["LLM_MAX_TOKENS"] = "96"
    yield
    if previous is None:
        os.environ.pop("LLM_MAX_TOKENS", None)
    else:
        os.environ["LLM_MAX_TOKENS"] = previous


class Live:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.base = stack.base_url
        self.tokens: dict[str, str] = {}
        self.collection_id = 0
        self.collection_name = "Handbook API"

    def token(self, user: str, scope: str) -> str:
        result = self.stack.manage("token", "create", "--user", user, "--scope", scope, "--name", "live test")
        assert result.returncode == 0, result.stderr
        return result.stdout.strip()

    def api(self, token: str) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.base}/api/v1", headers={"Authorization": f"Bearer {token}"}, trust_env=False, timeout=300
        )


@pytest.fixture(scope="module")
def live(stack: Stack) -> Live:
    live = Live(stack)
    admin = live.token("admin", "write")
    live.tokens["admin"] = admin
    with live.api(admin) as api:
        created = api.post("/collections", json={"name": live.collection_name, "description": "Policies"})
        assert created.status_code == 201, created.text
        live.collection_id = created.json()["id"]
        files = [("files", ("handbook.pdf", make_pdf(HANDBOOK_PAGES), "application/pdf"))]
        uploaded = api.post(f"/collections/{live.collection_id}/documents", files=files)
        assert uploaded.status_code == 201, uploaded.text
        document_id = uploaded.json()["documents"][0]["document"]["id"]

        def finished_status() -> str | None:
            status = api.get(f"/documents/{document_id}").json()["status"]
            return status if status in ("ready", "failed") else None

        status = wait_until(
            finished_status,
            300,
            lambda: f"document not finished in 300s:\n{stack.logs()}",
            interval=0.3,
        )
        assert status == "ready", stack.logs()
    return live


def test_openai_client_lists_collections_and_answers_with_citations(live: Live) -> None:
    from openai import AuthenticationError, NotFoundError, OpenAI

    client = OpenAI(base_url=f"{live.base}/v1", api_key=live.tokens["admin"], max_retries=0)
    assert live.collection_name in [m.id for m in client.models.list().data]

    completion = client.chat.completions.create(
        model=live.collection_name,
        messages=[{"role": "user", "content": "What is the daily meal allowance for international travel?"}],
    )
    message = completion.choices[0].message
    assert message.role == "assistant"
    assert message.content and "Sources:\n[1] handbook.pdf, p. 2" in message.content
    assert completion.model_extra is not None
    citations = completion.model_extra["citations"]
    assert citations[0]["document"] == "handbook.pdf" and citations[0]["page"] == 2
    assert completion.usage is not None and completion.usage.completion_tokens > 0
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + completion.usage.completion_tokens

    stream = client.chat.completions.create(
        model=live.collection_name,
        messages=[{"role": "user", "content": "Where are lost badges reported?"}],
        stream=True,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.strip() and "Sources:\n[1] handbook.pdf, p. 3" in text
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.model_extra is not None and last.model_extra["citations"][0]["page"] == 3
    assert last.usage is not None and last.usage.completion_tokens > 0

    with pytest.raises(NotFoundError):
        client.chat.completions.create(model="no such collection", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(AuthenticationError):
        OpenAI(base_url=f"{live.base}/v1", api_key="ast_bad_token", max_retries=0).models.list()


def test_openai_models_are_only_the_readable_collections(live: Live) -> None:
    from openai import NotFoundError, OpenAI

    result = live.stack.manage(
        "shell", "-c", "from django.contrib.auth.models import User; User.objects.create_user('outsider')"
    )
    assert result.returncode == 0, result.stderr
    client = OpenAI(base_url=f"{live.base}/v1", api_key=live.token("outsider", "read"), max_retries=0)
    assert [m.id for m in client.models.list().data] == []
    with pytest.raises(NotFoundError):
        client.chat.completions.create(model=live.collection_name, messages=[{"role": "user", "content": "allowance?"}])


def test_api_asks_stream_and_whole_with_citations(live: Live) -> None:
    with live.api(live.tokens["admin"]) as api:
        whole = api.post(
            "/ask",
            json={"collection_id": live.collection_id, "question": "What is the daily meal allowance abroad?"},
            headers={"Idempotency-Key": "live-ask-1"},
        )
        assert whole.status_code == 200, whole.text
        answer = whole.json()
        assert answer["answer"].strip() and answer["model"]
        assert answer["citations"][0]["page"] == 2
        again = api.post(
            "/ask",
            json={"collection_id": live.collection_id, "question": "What is the daily meal allowance abroad?"},
            headers={"Idempotency-Key": "live-ask-1"},
        )
        assert again.headers["Idempotent-Replayed"] == "true" and again.json() == answer
        events = []
        with api.stream(
            "POST", "/ask/stream", json={"conversation_id": answer["conversation_id"], "question": "And receipts?"}
        ) as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
        assert events[0]["event"] == "sources" and events[0]["conversation_id"] == answer["conversation_id"]
        assert sum(e["event"] == "token" for e in events) > 1
        assert events[-1]["event"] == "done"
        messages = api.get(f"/conversations/{answer['conversation_id']}/messages").json()
        assert messages["total"] == 4


def _examples(path: Path) -> list[tuple[str, str]]:
    """Code blocks that follow a ``<!-- tested example -->`` line: (language, code)."""
    text = path.read_text()
    return re.findall(r"<!-- tested example -->\s*```(bash|python)\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("doc", ["docs/api.md", "README.md"])
def test_documented_examples_run(live: Live, doc: str, tmp_path: Path) -> None:
    examples = _examples(REPO / doc)
    assert len(examples) >= 2, f"no tested examples found in {doc}"
    # Its own name: uploading under the handbook's name would make it the handbook's new
    # version, and the examples that follow ask about what the handbook says.
    (tmp_path / "canteen.pdf").write_bytes(make_pdf(["Example upload\nThe canteen opens at eight."]))
    env = {
        **os.environ,
        "ASSISTANT_URL": live.base,
        "ASSISTANT_TOKEN": live.tokens["admin"],
        "COLLECTION_ID": str(live.collection_id),
        "COLLECTION": live.collection_name,
    }
    for language, code in examples:
        command = ["bash", "-euo", "pipefail", "-c", code] if language == "bash" else [sys.executable, "-c", code]
        result = subprocess.run(
            command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False
        )
        assert result.returncode == 0, (
            f"{doc} example failed:\n{code}\n--- stdout:\n{result.stdout}\n--- stderr:\n{result.stderr}"
        )
        assert result.stdout.strip(), f"{doc} example printed nothing:\n{code}"


# --- Schemathesis: generated requests against the live OpenAPI document --------------


@pytest.fixture(scope="module")
def fuzz(live: Live) -> dict[str, Any]:
    """A staff user with a write token and read access to the handbook."""
    script = (
        "from django.contrib.auth.models import User; from assistant.accounts.services import collection_grant; "
        "from ingest.models import Collection; "
        "u = User.objects.create_user('fuzzer', is_staff=True); "
        f"collection_grant(collection=Collection.objects.get(pk={live.collection_id}), user=u, role='read')"
    )
    result = live.stack.manage("shell", "-c", script)
    assert result.returncode == 0, result.stderr
    return {"base": live.base, "token": live.token("fuzzer", "write")}


def test_api_conforms_to_its_openapi_document(fuzz: dict[str, Any]) -> None:
    """Generated requests, valid and invalid, for every operation of the live document:
    no 5xx, every status and content type documented, every body matching its schema."""
    schema = schemathesis.openapi.from_url(f"{fuzz['base']}/api/v1/openapi.json")
    operations = []
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), f"the OpenAPI document is invalid: {result.err()}"
        operations.append(result.ok())
    assert len(operations) >= 20
    checks = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
    failures: list[str] = []
    sent: list[str] = []
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=FUZZ_EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure is reported
                suppress_health_check=list(HealthCheck),
            )
            def check(case: Any) -> None:
                sent.append(case.operation.label)
                case.call_and_validate(
                    base_url=fuzz["base"],
                    headers={"Authorization": f"Bearer {fuzz['token']}"},
                    checks=checks,
                    timeout=300,
                )

            try:
                check()
            except Exception as exc:  # collected, so one run reports every operation that fails
                failures.append(f"{operation.label} [{mode.value}]: {exc}")
    assert not failures, "\n\n".join(failures)
    assert set(sent) == {operation.label for operation in operations}
