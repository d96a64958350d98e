"""The dashboard: its figures on constructed data, who may see it, and restricted documents.

Every figure a collection manager sees is limited to what they may see: tried with a
restricted document in a collection they do not manage (the manager must not count
it) and a superuser (the control, who must).
"""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from django.urls import reverse
from django.utils import timezone

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.chat import services
from assistant.chat.llm import LLMClient
from assistant.chat.models import Conversation, Feedback, Message
from assistant.portal import metrics
from assistant.portal.charts import MISSING, Series, bar_chart, line_chart, nice_ceiling
from ingest.models import Collection, Document
from tests.factories import CollectionFactory, DocumentFactory, GroupFactory, UserFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf
from tests.support.scripted_llm import Quiet, serving

pytestmark = pytest.mark.django_db

TODAY = dt.date(2026, 11, 30)


def _at(day: dt.date, hour: int = 12) -> dt.datetime:
    return timezone.make_aware(dt.datetime.combine(day, dt.time(hour)))


def _question(conversation: Conversation, day: dt.date) -> Message:
    message = Message.objects.create(conversation=conversation, role=Message.Role.USER, content="q")
    Message.objects.filter(pk=message.pk).update(created_at=_at(day))
    return message


def _answer(
    conversation: Conversation, day: dt.date, *, first_token_ms: int, latency_ms: int, error: str = ""
) -> Message:
    message = Message.objects.create(
        conversation=conversation,
        role=Message.Role.ASSISTANT,
        content="a",
        first_token_ms=first_token_ms,
        latency_ms=latency_ms,
        error=error,
    )
    Message.objects.filter(pk=message.pk).update(created_at=_at(day))
    return message


def _finished(document: Document, *, day: dt.date, pages: int, seconds: float, status: str = "ready") -> None:
    end = _at(day)
    Document.objects.filter(pk=document.pk).update(
        status=status, pages=pages, started_at=end - dt.timedelta(seconds=seconds), finished_at=end
    )


# --- the figures -------------------------------------------------------------------------------


def test_questions_are_counted_per_day_with_empty_days_and_old_ones_left_out() -> None:
    collection = CollectionFactory.create()
    conversation = Conversation.objects.create(collection=collection)
    for day in (TODAY, TODAY, TODAY - dt.timedelta(days=2), TODAY - dt.timedelta(days=40)):
        _question(conversation, day)
    _answer(conversation, TODAY, first_token_ms=1, latency_ms=2)  # an answer is not a question
    days = metrics.window_days(today=TODAY, days=3)
    assert metrics.questions_per_day(collection_ids=[collection.pk], days=days) == [
        (TODAY - dt.timedelta(days=2), 1),
        (TODAY - dt.timedelta(days=1), 0),
        (TODAY, 2),
    ]


def test_answer_time_percentiles_are_exact_and_failures_are_left_out() -> None:
    collection = CollectionFactory.create()
    conversation = Conversation.objects.create(collection=collection)
    yesterday = TODAY - dt.timedelta(days=1)
    for n, ms in enumerate([100, 200, 300, 400, 500, 600, 700, 800, 900, 1000, 1100]):
        _answer(conversation, TODAY if n % 2 else yesterday, first_token_ms=ms, latency_ms=ms * 10)
    _answer(conversation, TODAY, first_token_ms=99_000, latency_ms=99_000, error="LLM down")
    times = metrics.answer_times(collection_ids=[collection.pk], days=metrics.window_days(today=TODAY, days=2))
    # 11 values 100..1100: p50 is the 6th (600); p95 sits at rank 9.5 of 0..10: 1050.
    assert times.first_token == metrics.Percentiles(count=11, p50=600.0, p95=1050.0)
    assert times.total == metrics.Percentiles(count=11, p50=6000.0, p95=10500.0)
    # Yesterday: 100, 300, 500, 700, 900, 1100; today: 200, 400, 600, 800, 1000.
    (_, before), (_, today) = times.first_token_by_day
    assert (before.count, before.p50, before.p95) == (6, 600.0, 1050.0)
    assert (today.count, today.p50, today.p95) == (5, 600.0, 960.0)


def test_feedback_ratio_counts_helpful_over_all_ratings() -> None:
    collection = CollectionFactory.create()
    conversation = Conversation.objects.create(collection=collection)
    answer = _answer(conversation, TODAY, first_token_ms=1, latency_ms=2)
    for rating in (1, 1, 1, -1):
        Feedback.objects.create(message=answer, user=UserFactory.create(), rating=rating)
    ratio = metrics.feedback_ratio(collection_ids=[collection.pk], days=metrics.window_days(today=timezone.localdate()))
    assert (ratio.helpful, ratio.not_helpful, ratio.ratio) == (3, 1, 0.75)
    assert metrics.feedback_ratio(collection_ids=[], days=metrics.window_days(today=TODAY)).ratio is None


def test_ingestion_per_day_and_pages_per_minute() -> None:
    collection = CollectionFactory.create()
    a, b, c, failed = (DocumentFactory.create(collection=collection) for _ in range(4))
    _finished(a, day=TODAY, pages=30, seconds=60)
    _finished(b, day=TODAY, pages=10, seconds=60)
    _finished(c, day=TODAY - dt.timedelta(days=1), pages=5, seconds=30)
    _finished(failed, day=TODAY, pages=100, seconds=1, status="failed")
    days = metrics.window_days(today=TODAY, days=2)
    found = metrics.ingested_per_day(documents=collection.documents.all(), days=days)
    assert [(d.documents, d.pages, d.seconds) for d in found] == [(1, 5, 30.0), (2, 40, 120.0)]
    assert [d.pages_per_minute for d in found] == [10.0, 20.0]
    assert metrics.pages_per_minute(found) == 45 * 60 / 150


def test_queue_depth_counts_each_waiting_status() -> None:
    collection = CollectionFactory.create()
    documents = [DocumentFactory.create(collection=collection) for _ in range(4)]
    Document.objects.filter(pk=documents[1].pk).update(status="parsing")
    Document.objects.filter(pk=documents[2].pk).update(status="embedding")
    Document.objects.filter(pk=documents[3].pk).update(status="ready")
    assert metrics.queue_depth(documents=collection.documents.all()) == {"queued": 1, "parsing": 1, "embedding": 1}


def test_index_sizes_count_passages_and_the_files_on_disk() -> None:
    collection = CollectionFactory.create()
    DocumentFactory.create(collection=collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True)
    empty = CollectionFactory.create()
    from ingest.index import index_path
    from ingest.lexical import lexical_path

    sizes = metrics.index_sizes(documents=Document.objects.all(), collections=[empty, collection])
    assert [s.collection for s in sizes] == [collection, empty]
    assert sizes[0].chunks == collection.chunks.count() > 0
    assert sizes[0].dense_bytes == index_path(collection.pk).stat().st_size > 0
    assert sizes[0].lexical_bytes == lexical_path(collection.pk).stat().st_size > 0
    assert (sizes[1].chunks, sizes[1].disk_bytes) == (0, 0)


# --- the charts ----------------------------------------------------------------------------------


def test_charts_are_svg_with_a_text_alternative_and_their_numbers() -> None:
    chart = bar_chart(
        id="q",
        title="Questions <per> day",
        description="3 in all",
        labels=["1 Nov", "2 Nov"],
        series=Series("Q", [1, 2]),
    )
    assert chart.svg.startswith('<svg class="chart"') and 'role="img"' in chart.svg
    assert '<title id="q-title">Questions &lt;per&gt; day</title><desc id="q-desc">3 in all</desc>' in chart.svg
    assert chart.svg.count('<rect class="bar s1"') == 2 and "style=" not in chart.svg
    assert chart.rows == [("1 Nov", ["1"]), ("2 Nov", ["2"])]
    lines = line_chart(
        id="t", title="t", description="d", labels=["a", "b", "c"], series=[Series("p50", [1.5, None, 2.0])]
    )
    path = lines.svg.split('<path class="line s1" d="')[1].split('"')[0]
    assert path.count("M") == 2 and "L" not in path  # the day without a value breaks the line
    assert lines.rows[1] == ("b", [MISSING])
    assert [nice_ceiling(v) for v in (0, 0.7, 3, 11, 240)] == [1, 1, 5, 20, 250]


# --- who sees what -------------------------------------------------------------------------------


@pytest.fixture
def two_collections():
    """A manager of "Mine" only; "Theirs" holds a failed document restricted to a group."""
    mine = CollectionFactory.create(name="Mine")
    theirs = CollectionFactory.create(name="Theirs")
    board = GroupFactory.create(name="board")
    manager = UserFactory.create(username="manager")
    collection_grant(collection=mine, user=manager, role=Role.MANAGE)
    collection_grant(collection=theirs, user=manager, role=Role.READ)  # may read it, not manage it
    ok = DocumentFactory.create(collection=mine, name="mine-failed.txt")
    Document.objects.filter(pk=ok.pk).update(status="failed", error="could not parse")
    secret = DocumentFactory.create(collection=theirs, name="board-secret.txt", groups=[board])
    Document.objects.filter(pk=secret.pk).update(status="failed", error="secret failure")
    queued_secret = DocumentFactory.create(collection=theirs, name="board-queued.txt", groups=[board])
    for collection in (mine, theirs):
        conversation = Conversation.objects.create(collection=collection)
        _question(conversation, timezone.localdate())
    return {"mine": mine, "theirs": theirs, "manager": manager, "secret": secret, "queued": queued_secret}


def test_a_manager_sees_only_what_they_manage_and_no_restricted_document(client, two_collections) -> None:
    board = metrics.dashboard_for(user=two_collections["manager"])
    assert board.collections == 1
    assert [d.name for d in board.failed] == ["mine-failed.txt"] and board.failed_total == 1
    assert sum(board.queue.values()) == 0
    assert sum(n for _day, n in board.questions) == 1
    assert [s.collection.name for s in board.indexes] == ["Mine"]

    client.force_login(two_collections["manager"])
    html = client.get(reverse("portal:dashboard")).content.decode()
    assert "mine-failed.txt" in html
    assert "board-secret.txt" not in html and "secret failure" not in html and "Theirs" not in html


def test_the_superuser_control_sees_the_restricted_document(client, two_collections) -> None:
    admin = UserFactory.create(username="root", is_superuser=True, is_staff=True)
    board = metrics.dashboard_for(user=admin)
    assert board.collections == 2
    assert {d.name for d in board.failed} == {"mine-failed.txt", "board-secret.txt"} and board.failed_total == 2
    assert board.queue["queued"] == 1
    assert sum(n for _day, n in board.questions) == 2
    client.force_login(admin)
    html = client.get(reverse("portal:dashboard")).content.decode()
    assert "board-secret.txt" in html and "secret failure" in html


def test_a_document_restricted_inside_a_managed_collection_is_counted_for_its_manager(two_collections) -> None:
    # Managers administer access, so they see restricted documents of their collections (accounts.selectors).
    theirs, manager = two_collections["theirs"], two_collections["manager"]
    collection_grant(collection=theirs, user=manager, role=Role.MANAGE)
    board = metrics.dashboard_for(user=manager)
    assert {d.name for d in board.failed} == {"mine-failed.txt", "board-secret.txt"}


def test_readers_and_anonymous_visitors_are_refused(client, two_collections) -> None:
    reader = UserFactory.create(username="reader")
    collection_grant(collection=two_collections["mine"], user=reader, role=Role.READ)
    staff = UserFactory.create(username="staff", is_staff=True)  # staff manages nothing here
    url = reverse("portal:dashboard")
    assert client.get(url).status_code == 302  # to the sign-in page
    for user in (reader, staff):
        client.force_login(user)
        assert client.get(url).status_code == 403
        assert 'href="/portal/dashboard/"' not in client.get(reverse("portal:home")).content.decode()
    client.force_login(two_collections["manager"])
    assert client.get(url).status_code == 200
    assert 'href="/portal/dashboard/"' in client.get(reverse("portal:home")).content.decode()


def test_the_page_draws_every_chart_with_its_numbers(client) -> None:
    admin = UserFactory.create(is_superuser=True)
    collection = CollectionFactory.create()
    conversation = Conversation.objects.create(collection=collection)
    _question(conversation, timezone.localdate())
    _answer(conversation, timezone.localdate(), first_token_ms=400, latency_ms=2000)
    client.force_login(admin)
    html = client.get(reverse("portal:dashboard")).content.decode()
    for chart in ("questions", "first-token", "total-time", "feedback", "ingested", "pages-per-minute"):
        assert f'aria-labelledby="{chart}-title {chart}-desc"' in html, chart
    assert html.count('<details class="numbers">') == 6
    assert "Over 1 answers: p50 0.40 s, p95 0.40 s." in html
    assert "<script" not in html.split("<main")[1].split("</main>")[0] and " style=" not in html


# --- time to first token is recorded by a real streamed answer -----------------------------------


class _Streaming(Quiet):
    """An OpenAI-style stream: a pause, then the answer in three pieces."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        time.sleep(0.05)
        for piece in ("The meal allowance ", "abroad is 85 euros ", "[1]."):
            chunk = {"model": "scripted", "choices": [{"delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.05)
        self.wfile.write(b"data: [DONE]\n\n")


def test_a_streamed_answer_records_its_time_to_first_token_and_where_the_time_went() -> None:
    collection: Collection = CollectionFactory.create()
    DocumentFactory.create(collection=collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True)
    with serving(_Streaming) as base_url:
        answer = services.answer_question(
            user=None,
            collection=collection,
            question="What is the meal allowance abroad?",
            llm=LLMClient(base_url=base_url, model="scripted"),
        )
    assert answer.error == "" and "85 euros" in answer.text
    assert answer.message_id is not None
    stored = Message.objects.get(pk=answer.message_id)
    assert stored.first_token_ms is not None and stored.latency_ms is not None
    # The first piece came after the server's pause; the last two after more pauses.
    assert 50 <= stored.first_token_ms < stored.latency_ms
    assert set(stored.timings) == {"rewrite_ms", "retrieval_ms", "prompt_ms", "model_first_token_ms", "generation_ms"}
    assert stored.timings["model_first_token_ms"] >= 50
    assert stored.timings["generation_ms"] > stored.timings["model_first_token_ms"]  # two pieces came later
    assert stored.timings["model_first_token_ms"] <= stored.first_token_ms


def test_an_answer_with_nothing_found_records_its_first_token_too() -> None:
    answer = services.answer_question(user=None, collection=CollectionFactory.create(), question="anything?")
    assert answer.message_id is not None
    stored = Message.objects.get(pk=answer.message_id)
    assert stored.first_token_ms is not None and stored.first_token_ms <= (stored.latency_ms or 0)
    assert "model_first_token_ms" not in stored.timings
