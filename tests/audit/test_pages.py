"""The audit log page, its exports and the data boundary page, through the test client."""

from __future__ import annotations

import csv
import io
import json
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.http import StreamingHttpResponse
from django.test import AsyncClient
from django.urls import reverse
from django.utils import timezone

from assistant.audit.auditors import auditor_grant
from assistant.audit.models import AuditEvent
from assistant.audit.services import audit_record
from tests.factories import CollectionFactory, UserFactory

pytestmark = pytest.mark.django_db

Action = AuditEvent.Action


@pytest.fixture
def auditor(client):
    user = UserFactory.create(username="auditor")
    auditor_grant(user=user)
    client.force_login(user)
    return user


@pytest.fixture
def log_entries():
    alice = UserFactory.create(username="alice")
    policies = CollectionFactory.create(name="Policies")
    AuditEvent.objects.create(
        action=Action.USER_LOGIN, actor_username="alice", created_at=timezone.now() - timedelta(days=10)
    )
    audit_record(action=Action.DOCUMENT_UPLOADED, actor=alice, collection=policies, details={"name": "=cmd|x.txt"})
    audit_record(action=Action.QUESTION_ANSWERED, actor=alice, collection=policies, details={"question": "Q1"})
    audit_record(action=Action.QUESTION_ANSWERED, collection=CollectionFactory.create(name="Other"))
    return alice, policies


def test_users_without_a_role_see_no_audit_page(client) -> None:
    client.force_login(UserFactory.create())
    for url in (
        reverse("audit:log"),
        reverse("audit:export", args=["csv"]),
        reverse("audit:boundary"),
        reverse("audit:user_delete"),
    ):
        assert client.get(url).status_code == 403, url
    client.logout()
    assert client.get(reverse("audit:log")).status_code == 302  # to the sign-in page


def test_filters_narrow_the_log(client, auditor, log_entries) -> None:
    _, policies = log_entries
    page = client.get(reverse("audit:log"), {"action": Action.QUESTION_ANSWERED, "user": "alice"})
    assert page.status_code == 200
    rows = list(page.context["page"].object_list)
    assert [(e.action, e.actor_username) for e in rows] == [("question.answered", "alice")]
    by_collection = client.get(reverse("audit:log"), {"collection": str(policies.pk)}).context["page"].object_list
    assert {e.collection_name for e in by_collection} == {"Policies"}
    recent = client.get(reverse("audit:log"), {"since": (timezone.now() - timedelta(days=1)).date().isoformat()})
    assert AuditEvent.objects.count() - recent.context["page"].paginator.count >= 1  # the 10-day-old sign-in
    bad = client.get(reverse("audit:log"), {"since": "2026-02-01", "until": "2026-01-01"})
    assert bad.status_code == 200
    assert bad.context["page"] is None
    assert b"start date is after the end date" in bad.content


def test_log_is_paginated(client, auditor) -> None:
    AuditEvent.objects.bulk_create(
        [AuditEvent(action=Action.TOKEN_CREATED, actor_username=f"u{i}") for i in range(120)]
    )
    first = client.get(reverse("audit:log"), {"action": Action.TOKEN_CREATED})
    page = first.context["page"]
    assert page.paginator.num_pages == 3
    assert len(page.object_list) == 50
    assert page.object_list[0].actor_username == "u119"  # newest first
    assert b"action=token.created&amp;page=2" in first.content
    third = client.get(reverse("audit:log"), {"action": Action.TOKEN_CREATED, "page": 3}).context["page"]
    assert len(third.object_list) == 120 - 100


def _body(response) -> str:
    return b"".join(response.streaming_content).decode()


def test_csv_export_streams_the_filtered_set_and_is_itself_audited(client, auditor, log_entries) -> None:
    response = client.get(reverse("audit:export", args=["csv"]), {"user": "alice"})
    assert response.status_code == 200
    assert response.streaming
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    assert [r["action"] for r in rows] == ["user.login", "document.uploaded", "question.answered"]  # in order
    assert json.loads(rows[2]["details"]) == {"question": "Q1"}
    (exported,) = AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED)
    assert exported.actor_username == "auditor"
    assert exported.details["format"] == "csv"
    assert exported.details["filters"]["username"] == "alice"


def test_jsonl_export_has_one_object_per_event(client, auditor, log_entries) -> None:
    response = client.get(reverse("audit:export", args=["jsonl"]), {"action": Action.QUESTION_ANSWERED})
    lines = [json.loads(line) for line in _body(response).splitlines()]
    assert [(x["action"], x["collection_name"]) for x in lines] == [
        ("question.answered", "Policies"),
        ("question.answered", "Other"),
    ]
    assert set(lines[0]) >= {"id", "created_at", "actor_username", "collection_id", "target_type", "details", "ip"}


def test_export_reads_in_batches_past_the_batch_size(client, auditor, monkeypatch) -> None:
    from assistant.audit import services

    monkeypatch.setattr(services, "EXPORT_BATCH", 7)
    AuditEvent.objects.bulk_create([AuditEvent(action=Action.TOKEN_CREATED, actor_username=f"u{i}") for i in range(30)])
    response = client.get(reverse("audit:export", args=["jsonl"]), {"action": Action.TOKEN_CREATED})
    names = [json.loads(line)["actor_username"] for line in _body(response).splitlines()]
    assert names == [f"u{i}" for i in range(30)]


def test_csv_cells_cannot_become_spreadsheet_formulas(client, auditor) -> None:
    audit_record(action=Action.USER_LOGIN_FAILED, details={"username": "x"}, collection=None)
    AuditEvent.objects.create(action=Action.USER_LOGIN_FAILED, actor_username="=HYPERLINK(1)")
    rows = list(csv.DictReader(io.StringIO(_body(client.get(reverse("audit:export", args=["csv"]))))))
    assert "'=HYPERLINK(1)" in [r["actor_username"] for r in rows]


def test_export_refuses_unknown_formats_and_bad_filters(client, auditor) -> None:
    assert client.get(reverse("audit:export", args=["xml"])).status_code == 400
    assert client.get(reverse("audit:export", args=["csv"]), {"since": "yesterday"}).status_code == 400
    assert not AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED).exists()


def test_data_boundary_lists_configured_hosts_and_never_a_secret(client, auditor, settings) -> None:
    settings.CELERY_BROKER_URL = "redis://:broker-secret@cache.internal:6380/2"
    settings.LLM_BASE_URLS = [
        "http://llmuser:llm-secret@vllm.internal:8000/v1?key=query-secret",
        "http://vllm2.internal:8001/v1",
    ]
    settings.LLM_BASE_URL = settings.LLM_BASE_URLS[0]
    settings.EMBEDDING_BASE_URL = "http://embuser:emb-secret@tei.internal:8080/v1?token=emb-query-secret"
    settings.EMBEDDING_API_KEY = "sk-embedding-secret"
    settings.LLM_MODEL = "Qwen-7B"
    settings.LLM_API_KEY = "sk-api-secret"
    settings.LLM_EMBEDDED = False
    settings.OIDC_ENABLED = True
    settings.OIDC_OP_AUTHORIZATION_ENDPOINT = "https://sso.example.com/auth"
    settings.OIDC_OP_TOKEN_ENDPOINT = "https://sso.example.com/token"
    settings.OIDC_RP_CLIENT_SECRET = "oidc-secret"
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"  # the tests run with locmem
    settings.EMAIL_HOST = "mail.internal"
    settings.EMAIL_HOST_PASSWORD = "smtp-secret"
    settings.STORAGE_S3_BUCKET, settings.STORAGE_S3_ENDPOINT_URL = (
        "originals",
        "https://s3user:s3-secret@s3.internal:9000",
    )
    settings.STORAGE_S3_SECRET_ACCESS_KEY = "s3-key-secret"
    page = client.get(reverse("audit:boundary"))
    assert page.status_code == 200
    text = page.content.decode()
    for shown in ("cache.internal:6380", "http://vllm.internal:8000/v1", "http://vllm2.internal:8001/v1", "Qwen-7B",
                  "https://sso.example.com/token", "mail.internal:25", "HF_HUB_OFFLINE", "DO_NOT_TRACK", "None else",
                  "https://s3.internal:9000", "bucket originals", "http://tei.internal:8080/v1"):  # fmt: skip
        assert shown in text, shown
    assert [e.address for e in page.context["endpoints"] if e.purpose.startswith("Language model")] == [
        "http://vllm.internal:8000/v1",
        "http://vllm2.internal:8001/v1",
    ]
    for secret in (
        "broker-secret",
        "llm-secret",
        "llmuser",
        "query-secret",
        "embuser",
        "emb-secret",
        "sk-embedding-secret",
        "sk-api-secret",
        "oidc-secret",
        "smtp-secret",
        "s3user",
        "s3-secret",
        "s3-key-secret",
    ):
        assert secret not in text, secret


def test_data_boundary_names_no_embedding_server_when_texts_are_embedded_in_process(client, auditor, settings) -> None:
    settings.EMBEDDING_BASE_URL = ""
    settings.LLM_BASE_URLS = ["http://vllm.internal:8000/v1"]
    page = client.get(reverse("audit:boundary"))
    purposes = [e.purpose for e in page.context["endpoints"]]
    assert not any(p.startswith("Embedding server") for p in purposes)
    assert purposes.count("Language model (answers)") == 1
    assert "Embedding server" not in page.content.decode()
    assert "vllm2.internal" not in page.content.decode()


@pytest.mark.django_db(transaction=True)
def test_export_under_asgi_streams_without_reading_everything_first(log_entries) -> None:
    # Under the ASGI server a synchronous iterator would be read whole into memory.
    auditor = UserFactory.create()
    auditor_grant(user=auditor)

    async def run() -> tuple[bool, str]:
        client = AsyncClient()
        await client.aforce_login(auditor)
        response = await client.get(reverse("audit:export", args=["jsonl"]), {"user": "alice"})
        assert isinstance(response, StreamingHttpResponse)
        return response.is_async, b"".join([chunk async for chunk in response.streaming_content]).decode()

    is_async, body = async_to_sync(run)()
    assert is_async
    assert [json.loads(line)["action"] for line in body.splitlines()] == [
        "user.login",
        "document.uploaded",
        "question.answered",
    ]


def test_django_admin_shows_the_log_but_offers_no_way_to_change_it(admin_client, log_entries) -> None:
    event = AuditEvent.objects.filter(action=Action.DOCUMENT_UPLOADED).get()
    listing = admin_client.get(reverse("admin:audit_auditevent_changelist"), {"action": Action.DOCUMENT_UPLOADED})
    assert listing.status_code == 200
    assert list(listing.context["cl"].queryset) == [event]
    assert admin_client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert (
        admin_client.post(reverse("admin:audit_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code == 403
    )
    assert AuditEvent.objects.filter(pk=event.pk).exists()


PAYLOAD = '"><script>fetch("/account/tokens/")</script><img src=x onerror=alert(1)>'


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_crafted_export_link_echoes_nothing_a_browser_would_run(client, fmt) -> None:
    # Staff too, so that the link reaches the filter check before and after the
    # auditor role existed: the hole was in what the refusal echoes.
    victim = UserFactory.create(username="victim", is_staff=True)
    auditor_grant(user=victim)
    client.force_login(victim)
    response = client.get(reverse("audit:export", args=[fmt]), {"action": PAYLOAD})
    assert response.status_code == 400
    body = response.content.decode()
    assert "<script>fetch" not in body  # (the page's own script files are fine)
    assert "<img src=x" not in body
    if response["Content-Type"].startswith("text/html"):
        # The log page names the refused value, escaped, under the filter it came from.
        assert "&lt;script&gt;" in body
        assert "is not one of the available choices" in body
    assert not AuditEvent.objects.filter(action=Action.AUDIT_EXPORTED).exists()


def test_crafted_filter_on_the_log_page_is_shown_escaped(client, auditor) -> None:
    page = client.get(reverse("audit:log"), {"action": PAYLOAD, "user": PAYLOAD})
    body = page.content.decode()
    assert "<script>fetch" not in body  # (the page's own script files are fine)
    assert "&lt;script&gt;" in body
