"""What one answer costs the database: a small, fixed number of queries, whoever asks.

Under load every answer's queries run one after the other in the web process's one
thread for database work, so each one saved is time saved for every asker waiting
behind it. Permissions stay inside the search: the restricted document is checked
with a user who must not see it and with one who must.
"""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from assistant.accounts.services import collection_grant
from assistant.chat import services
from assistant.chat.llm import LLMClient
from tests.factories import CollectionFactory, DocumentFactory, GroupFactory, UserFactory
from tests.support.scripted_llm import Quiet

pytestmark = pytest.mark.django_db

# Conversation and its history (3), the search scope (2: readable collections, hidden
# documents) and the hidden passages (1), the documents the question may name (1) and
# the passages of the one it names ("travel": 1), the passages (1), the question stored
# (2 on a conversation's first question: the title), documents still being ingested (1),
# source links (1), the answer, the conversation's time and the audit record (3).
QUERIES_PER_ANSWER = 16
# VECTOR_STORE=pgvector searches inside the database, so its searches are queries too:
# the check that its table exists (1, the connection's first search), the dense scan (a
# savepoint, its settings, the scan, the exact scan again when the scope holds fewer than
# k passages, as here, and the release: 5), and the words: the candidates, the named
# document's passages and the candidates' scores, each its question's weights, then the
# scoring (one step in a collection this small): 6.
PGVECTOR_SEARCH_QUERIES = 12


class Answering(Quiet):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in ("The allowance ", "is 85 euros [1]."):
            chunk = json.dumps({"model": "s", "choices": [{"delta": {"content": piece}}]})
            self.wfile.write(f"data: {chunk}\n\n".encode())
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def place():
    admin = UserFactory.create(is_superuser=True)
    collection = CollectionFactory.create(name="Handbook")
    readers, board = GroupFactory.create(), GroupFactory.create()
    collection_grant(collection=collection, role="read", group=readers, actor=admin)
    DocumentFactory.create(
        collection=collection, name="travel.txt", content="The meal allowance abroad is 85 euros a day.", processed=True
    )
    DocumentFactory.create(
        collection=collection,
        name="board.txt",
        content="The board's meal allowance abroad is 400 euros a day.",
        groups=[board],
        processed=True,
    )
    outsider, member = UserFactory.create(), UserFactory.create()
    outsider.groups.add(readers)
    member.groups.add(readers, board)
    return collection, outsider, member


@pytest.mark.parametrize("http_server", [Answering], indirect=True)
@pytest.mark.parametrize("asker", ["outsider", "member"])
def test_an_answer_takes_a_fixed_number_of_queries(http_server, place, asker, settings) -> None:
    collection, outsider, member = place
    user = outsider if asker == "outsider" else member
    conversation = services.conversation_start(user=user, collection=collection)
    llm = LLMClient(base_url=http_server, model="s")
    with CaptureQueriesContext(connection) as captured:
        answer = services.answer_question(
            user=user, collection=collection, question="What is the travel meal allowance abroad?", llm=llm,
            conversation=conversation,
        )  # fmt: skip
    assert answer.error == ""
    cited = {c["document"] for c in answer.citations}
    assert "travel.txt" in cited
    assert ("board.txt" in cited) is (asker == "member")
    budget = QUERIES_PER_ANSWER + (PGVECTOR_SEARCH_QUERIES if settings.VECTOR_STORE == "pgvector" else 0)
    assert len(captured.captured_queries) <= budget, "\n".join(q["sql"][:200] for q in captured.captured_queries)
