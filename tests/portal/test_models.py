"""The model page: what the LLM server reports, the models in use and their recorded licences."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync
from django.urls import reverse

from assistant import local_llm
from assistant.audit.models import AuditEvent
from assistant.catalog import packaged
from assistant.catalog.models import ModelRecord
from assistant.catalog.selectors import llm_server_reports, models_in_use
from assistant.chat.llm_pool import PooledLLMClient
from tests.factories import UserFactory
from tests.support.processes import free_port
from tests.support.scripted_llm import MODEL, Quiet, ScriptedLLM, serving

pytestmark = pytest.mark.django_db


class VLLMLike(Quiet):
    """Answers ``/v1/models`` as vLLM does: the served name and ``max_model_len``."""

    def do_GET(self) -> None:
        body = json.dumps(
            {"object": "list", "data": [{"id": "org/Big-Model-70B", "object": "model", "max_model_len": 32768}]}
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def admin(db):
    return UserFactory.create(username="root", is_superuser=True, is_staff=True)


@pytest.fixture
def down(settings) -> str:
    """The LLM setting pointed at a port nothing listens on."""
    settings.LLM_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    settings.LLM_BASE_URLS = [settings.LLM_BASE_URL]
    return settings.LLM_BASE_URL


def _in_use(kind: str):
    return next(m for m in models_in_use() if m.kind == kind)


def test_the_packaged_models_come_pre_filled(settings, down) -> None:
    settings.LLM_EMBEDDED, settings.LLM_GGUF_PATH, settings.EMBEDDING_MODEL_PATH = True, "", ""
    llm, embedding = _in_use("llm"), _in_use("embedding")
    assert llm.packaged and llm.licence == "Apache-2.0" and "SmolLM2" in llm.source
    gguf = packaged.weights_file(local_llm.gguf_path())
    assert gguf is not None and llm.file_sha256 == packaged.file_sha256(gguf) and len(llm.file_sha256) == 64
    assert embedding.packaged and embedding.licence == "Apache-2.0"
    assert "all-MiniLM-L6-v2" in embedding.source and len(embedding.file_sha256) == 64
    assert not ModelRecord.objects.exists()  # pre-filled, nothing stored


def test_a_model_without_a_licence_is_flagged_until_one_is_recorded(client, admin, settings, down) -> None:
    settings.LLM_EMBEDDED, settings.LLM_MODEL = False, "org/Big-Model-70B"
    llm = _in_use("llm")
    assert not llm.packaged and llm.licence_missing
    client.force_login(admin)
    url = reverse("portal:models")
    assert "no licence is recorded" in client.get(url).content.decode()

    refused = client.post(url, {"kind": "llm", "name": "org/Big-Model-70B", "licence": "  "}, follow=True)
    assert "Say which licence applies" in refused.content.decode()
    assert not ModelRecord.objects.exists()
    assert not AuditEvent.objects.filter(action=AuditEvent.Action.MODEL_RECORDED).exists()

    recorded = client.post(
        url,
        {
            "kind": "llm",
            "name": "org/Big-Model-70B",
            "licence": "Llama 3.1 Community License",
            "source": "https://huggingface.co/org/Big-Model-70B",
            "file_sha256": "AB" * 32,
        },
        follow=True,
    )
    html = recorded.content.decode()
    assert "Llama 3.1 Community License" in html and "no licence is recorded" not in html
    record = ModelRecord.objects.get(kind="llm", name="org/Big-Model-70B")
    assert record.recorded_by == admin and record.file_sha256 == "ab" * 32
    event = AuditEvent.objects.get(action=AuditEvent.Action.MODEL_RECORDED)
    assert event.actor == admin
    assert event.details["licence"] == "Llama 3.1 Community License" and event.details["before"] is None

    client.post(url, {"kind": "llm", "name": "org/Big-Model-70B", "licence": "Apache-2.0"})
    changed = AuditEvent.objects.filter(action=AuditEvent.Action.MODEL_RECORDED).first()
    assert changed is not None and changed.details["before"]["licence"] == "Llama 3.1 Community License"


def test_a_model_not_in_use_cannot_be_recorded(client, admin, down) -> None:
    client.force_login(admin)
    client.post(reverse("portal:models"), {"kind": "llm", "name": "something-else", "licence": "MIT"})
    assert not ModelRecord.objects.exists()


def test_only_superusers_see_or_record(client, settings, down) -> None:
    staff = UserFactory.create(is_staff=True)
    client.force_login(staff)
    url = reverse("portal:models")
    assert client.get(url).status_code == 403
    assert client.post(url, {"kind": "llm", "name": settings.LLM_MODEL, "licence": "MIT"}).status_code == 403
    assert not ModelRecord.objects.exists()
    assert reverse("portal:models") not in client.get(reverse("portal:home")).content.decode()


def test_a_server_that_is_down_is_said_so(client, admin, down) -> None:
    [report] = llm_server_reports()
    assert not report.reachable and report.taken_out is None and report.models == [] and down in report.error
    client.force_login(admin)
    page = client.get(reverse("portal:models"))
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="llm-down"' in html and f"The language model server at {down} does not answer" in html
    assert reverse("portal:models") in html  # the nav link


def test_what_a_vllm_server_reports(client, admin, settings) -> None:
    with serving(VLLMLike) as base_url:
        settings.LLM_BASE_URL, settings.LLM_MODEL = base_url, "org/Big-Model-70B"
        settings.LLM_BASE_URLS = [base_url]
        [report] = llm_server_reports()
        client.force_login(admin)
        html = client.get(reverse("portal:models")).content.decode()
    assert report.reachable and report.serves_configured
    assert [(m.id, m.context_length) for m in report.models] == [("org/Big-Model-70B", 32768)]
    assert "org/Big-Model-70B" in html and "32768 tokens" in html and base_url in html


def test_what_the_packaged_llama_cpp_server_reports(client, admin, llm) -> None:
    [report] = llm_server_reports()
    assert report.reachable and [m.id for m in report.models] == [llm.model]
    client.force_login(admin)
    html = client.get(reverse("portal:models")).content.decode()
    assert f'<code class="reported-id">{llm.model}</code>' in html


@pytest.fixture
def two_servers(settings):
    """Two real OpenAI-compatible servers on loopback behind ``LLM_BASE_URL``."""
    first, second = ScriptedLLM().start(), ScriptedLLM().start()
    settings.LLM_BASE_URLS = [first.base_url, second.base_url]
    settings.LLM_BASE_URL, settings.LLM_MODEL, settings.LLM_EMBEDDED = first.base_url, MODEL, False
    try:
        yield first, second
    finally:
        first.stop()
        second.stop()


def _server_blocks(html: str) -> dict[str, str]:
    """Each server's part of the page, by its URL."""
    blocks = {}
    for part in html.split('<div class="llm-server" data-url="')[1:]:
        url, _, rest = part.partition('"')
        blocks[url] = rest.split("</div>", 1)[0]
    return blocks


def test_every_server_is_reported_and_one_down_does_not_stop_answers(client, admin, two_servers) -> None:
    first, second = two_servers
    second.stop()  # connection refused from now on
    async_to_sync(PooledLLMClient.from_pool_settings().probe_all)()  # as /readyz does: the pool takes it out
    up, down = llm_server_reports()
    assert (up.url, up.reachable, [m.id for m in up.models], up.taken_out) == (first.base_url, True, [MODEL], False)
    assert (down.url, down.reachable, down.models, down.taken_out) == (second.base_url, False, [], True)
    assert "not reachable" in down.error and "not reachable" in down.taken_out_because

    client.force_login(admin)
    html = client.get(reverse("portal:models")).content.decode()
    assert "questions cannot be answered" not in html and 'id="llm-down"' not in html
    blocks = _server_blocks(html)
    assert list(blocks) == [first.base_url, second.base_url]
    assert f'<code class="reported-id">{MODEL}</code>' in blocks[first.base_url]
    assert "sends answers to it" in blocks[first.base_url] and "does not answer" not in blocks[first.base_url]
    assert "has taken it out" in blocks[second.base_url]
    assert "This server does not answer; the other servers answer" in blocks[second.base_url]


def test_the_warning_comes_only_when_no_server_answers(client, admin, two_servers) -> None:
    first, second = two_servers
    client.force_login(admin)
    both = client.get(reverse("portal:models")).content.decode()
    assert 'id="llm-down"' not in both and both.count(f'<code class="reported-id">{MODEL}</code>') == 2
    first.stop()
    second.stop()
    reports = llm_server_reports()
    assert [r.reachable for r in reports] == [False, False]
    html = client.get(reverse("portal:models")).content.decode()
    assert 'id="llm-down"' in html
    assert "None of the 2 language model servers answers: questions cannot be answered" in html
    assert "the other servers answer questions meanwhile" not in html


def test_a_server_address_is_shown_without_its_password(client, admin, settings, down) -> None:
    port = free_port()
    settings.LLM_BASE_URLS = [f"http://llm:pw-secret@127.0.0.1:{port}/v1"]
    [report] = llm_server_reports()
    assert report.url == f"http://127.0.0.1:{port}/v1"
    client.force_login(admin)
    html = client.get(reverse("portal:models")).content.decode()
    assert f"http://127.0.0.1:{port}/v1" in html and "pw-secret" not in html


def test_the_embedding_row_names_the_embedding_server_when_one_is_set(client, admin, settings, down) -> None:
    settings.EMBEDDING_MODEL_PATH, settings.EMBEDDING_BASE_URL = "", ""
    folder = _in_use("embedding").location
    assert Path(folder).is_dir()
    settings.EMBEDDING_BASE_URL = "http://emb:emb-secret@tei.internal:8080/v1"
    embedding = _in_use("embedding")
    assert embedding.location == "http://tei.internal:8080/v1"
    assert embedding.name == packaged.MINILM_NAME and embedding.packaged  # the folder still names the model
    client.force_login(admin)
    html = client.get(reverse("portal:models")).content.decode()
    card = html.split('data-kind="embedding"', 1)[1].split("</section>", 1)[0]
    assert "<code>http://tei.internal:8080/v1</code>" in card and folder not in card
    assert "emb-secret" not in html


def test_the_demonstration_note_links_superusers_to_the_model_page(client, admin, settings, down) -> None:
    from assistant.chat.services import conversation_start
    from tests.factories import CollectionFactory

    settings.LLM_EMBEDDED = True
    conversation = conversation_start(user=admin, collection=CollectionFactory.create())
    client.force_login(admin)
    html = client.get(reverse("chat:conversation", args=[conversation.pk])).content.decode()
    assert "demonstration model" in html and f'href="{reverse("portal:models")}"' in html
