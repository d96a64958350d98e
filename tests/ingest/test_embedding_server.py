"""Embedding on a server (``EMBEDDING_BASE_URL``): batching, retries and failures, over real HTTP.

A scripted ``/v1/embeddings`` server on loopback fails on cue (down, a 500 then an
answer, a body that is not JSON, vectors of the wrong dimension or number); back-off
sleeps are recorded, never slept. Where vectors must mean something (ingestion and
retrieval through the server), the scripted server answers with the in-process model,
so the product's whole path runs over HTTP against real vectors. The real servers
(vLLM's pooling runner) are in ``test_embedding_vllm.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from assistant.accounts.models import CollectionGrant, Role
from assistant.chat import services
from ingest import embedding
from ingest.embedding_backends import normalised
from ingest.embedding_server import EmbeddingServerError, ServerBackend, truncator
from ingest.models import Chunk, Document
from tests.factories import CollectionFactory, DocumentFactory, GroupFactory, UserFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf
from tests.support.embedding_server import EmbeddingServer, embedding_server, hashed_vectors
from tests.support.processes import free_port

REPO = Path(__file__).resolve().parents[2]
SECRET = "The merger code name is BLUEHERON and the deal closes on 14 May."


@pytest.fixture
def scripted():
    with embedding_server() as server:
        yield server


def backend(url: str, sleeps: list[float], *, retries: int = 3) -> ServerBackend:
    return ServerBackend(base_url=url, model="m", dimensions=384, retries=retries, sleep=sleeps.append)


def test_texts_go_in_batches_of_the_configured_size_and_come_back_in_order(scripted: EmbeddingServer) -> None:
    texts = [f"passage number {n}" for n in range(70)]
    vectors = backend(scripted.base_url, []).encode(texts, batch_size=32)
    assert [len(batch) for batch in scripted.batches] == [32, 32, 6]
    assert [t for batch in scripted.batches for t in batch] == texts
    assert vectors.dtype == np.float32 and vectors.shape == (70, 384)
    # Put back in order (the server answers in reverse) and normalised as in-process vectors are.
    np.testing.assert_allclose(vectors, normalised(hashed_vectors(texts)), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-6)


def test_a_500_is_retried_with_growing_back_off_until_the_server_answers(scripted: EmbeddingServer) -> None:
    scripted.actions = ["500", "500"]
    sleeps: list[float] = []
    vectors = backend(scripted.base_url, sleeps).encode(["a", "b"], batch_size=8)
    assert sleeps == [0.5, 1.0]
    assert len(scripted.batches) == 3  # the same batch, asked three times
    np.testing.assert_allclose(vectors, normalised(hashed_vectors(["a", "b"])), rtol=1e-6)


def test_a_server_that_stays_down_fails_with_its_address_after_the_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    sleeps: list[float] = []
    with pytest.raises(EmbeddingServerError) as caught:
        backend(url, sleeps).encode(["a"], batch_size=8)
    assert sleeps == [0.5, 1.0, 2.0]
    assert f"The embedding server at {url} is not reachable" in str(caught.value)


def test_a_500_that_persists_names_the_servers_reason(scripted: EmbeddingServer) -> None:
    scripted.actions = ["500"] * 2
    with pytest.raises(EmbeddingServerError, match="answered 500: the model is loading"):
        backend(scripted.base_url, [], retries=1).encode(["a"], batch_size=8)


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("malformed", "did not answer as an OpenAI-compatible embeddings server"),
        ("wrong-dimension", "sent vectors of 8 dimensions, the model here has 384"),
        ("too-few", "sent 1 vectors for 2 texts"),
    ],
)
def test_a_wrong_answer_fails_at_once_without_retrying(scripted: EmbeddingServer, action: str, message: str) -> None:
    scripted.actions = [action]
    sleeps: list[float] = []
    with pytest.raises(EmbeddingServerError, match=message):
        backend(scripted.base_url, sleeps).encode(["a", "b"], batch_size=8)
    assert sleeps == [] and len(scripted.batches) == 1


def test_a_batch_failing_midway_gives_no_vectors_at_all(scripted: EmbeddingServer) -> None:
    scripted.actions = ["ok", "wrong-dimension"]
    with pytest.raises(EmbeddingServerError):
        backend(scripted.base_url, []).encode(["a", "b", "c"], batch_size=2)


def test_texts_are_cut_where_the_in_process_model_stops_reading() -> None:
    folder = embedding.model_path()
    truncate = truncator(folder)
    short = "Employees may claim a meal allowance."
    assert truncate(short) == short
    long = " ".join(["reimbursement"] * 400)
    cut = truncate(long)
    assert long.startswith(cut) and len(cut) < len(long)
    model = embedding.get_model()
    window = int(model.max_seq_length or 0) - 2
    kept = model.tokenizer(long, add_special_tokens=False, truncation=False)["input_ids"][:window]
    assert model.tokenizer(cut, add_special_tokens=False)["input_ids"] == kept


def test_embedding_on_a_server_loads_no_torch(scripted: EmbeddingServer, tmp_path: Path) -> None:
    """A worker with EMBEDDING_BASE_URL counts tokens, sizes and embeds without importing torch."""
    code = (
        "import sys, django; django.setup()\n"
        "from ingest import embedding\n"
        "assert embedding.count_tokens('meal allowance abroad') > 0\n"
        "assert embedding.dimensions() == 384\n"
        "assert embedding.embed_texts(['a', 'b']).shape == (2, 384)\n"
        "assert embedding.backend_name() == 'server'\n"
        "print('torch' in sys.modules, 'sentence_transformers' in sys.modules)\n"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "assistant.settings",
        "EMBEDDING_BASE_URL": scripted.base_url,
        "ASSISTANT_DATA_DIR": str(tmp_path),
    }
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


@pytest.mark.django_db
def test_a_document_fails_with_a_readable_reason_when_the_server_is_down(settings) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    settings.EMBEDDING_BASE_URL = url
    settings.EMBEDDING_SERVER_RETRIES = 0
    document = DocumentFactory.create(content=make_pdf(HANDBOOK_PAGES), name="handbook.pdf", processed=True)
    assert document.status == Document.Status.FAILED
    assert document.error.startswith(f"The embedding server at {url} is not reachable")
    assert "Process the document again once the embedding server answers" in document.error
    assert "Internal error" not in document.error
    assert not Chunk.objects.filter(document=document).exists()  # never stored without vectors


@pytest.fixture
def model_server(settings):
    """The scripted server answering with the in-process model: real vectors over HTTP."""

    def in_process(texts):
        return embedding._load().backend.encode(list(texts), batch_size=32)

    with embedding_server(in_process) as server:
        settings.EMBEDDING_BASE_URL = server.base_url
        yield server


@pytest.mark.django_db
def test_documents_and_questions_embedded_on_a_server_keep_restrictions(settings, model_server) -> None:
    collection = CollectionFactory.create()
    board = GroupFactory.create()
    DocumentFactory.create(collection=collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True)
    secret = DocumentFactory.create(
        collection=collection, name="minutes.pdf", content=make_pdf([SECRET]), groups=[board], processed=True
    )
    assert secret.status == Document.Status.READY
    assert model_server.batches  # the chunks went to the server
    # The stored vectors are those the same document gets in-process: one embedding space.
    settings.EMBEDDING_BASE_URL = ""
    local = DocumentFactory.create(name="minutes.pdf", content=make_pdf([SECRET]), processed=True)
    settings.EMBEDDING_BASE_URL = model_server.base_url
    remote_vectors = {c.text_hash: embedding.from_bytes(c.embedding) for c in Chunk.objects.filter(document=secret)}
    local_vectors = {c.text_hash: embedding.from_bytes(c.embedding) for c in Chunk.objects.filter(document=local)}
    assert remote_vectors.keys() == local_vectors.keys()
    assert all(float(np.dot(remote_vectors[h], local_vectors[h])) >= 0.999 for h in remote_vectors)

    member, outsider = UserFactory.create(), UserFactory.create()
    member.groups.add(board)
    for user in (member, outsider):
        CollectionGrant.objects.create(collection=collection, user=user, role=Role.READ)
    asked = len(model_server.batches)
    seen = services.passages_retrieve(user=member, collection=collection, query="merger code name", k=3)
    assert seen[0].document_name == "minutes.pdf"
    assert len(model_server.batches) == asked + 1  # the question too
    hidden = services.passages_retrieve(user=outsider, collection=collection, query="merger code name", k=10)
    assert all(p.document_name != "minutes.pdf" and "BLUEHERON" not in p.text for p in hidden)


@pytest.mark.django_db
def test_the_chat_says_why_when_the_server_is_down(settings) -> None:
    collection = CollectionFactory.create()
    DocumentFactory.create(collection=collection, name="handbook.pdf", content=make_pdf(HANDBOOK_PAGES), processed=True)
    user = UserFactory.create()
    CollectionGrant.objects.create(collection=collection, user=user, role=Role.READ)
    url = f"http://127.0.0.1:{free_port()}/v1"
    settings.EMBEDDING_BASE_URL = url
    settings.EMBEDDING_SERVER_RETRIES = 0
    answer = services.answer_question(user=user, collection=collection, question="What is the meal allowance?")
    assert answer.error.startswith("The question could not be searched: The embedding server at")
    assert url in answer.error
    assert answer.citations == [] and answer.text == ""


@pytest.mark.django_db
def test_readyz_checks_the_embedding_server(client, settings, scripted: EmbeddingServer) -> None:
    settings.EMBEDDING_BASE_URL = scripted.base_url
    body = client.get("/readyz").json()
    assert body["checks"]["embedding"]["status"] == "ok", body
    assert "384 dimensions" in body["checks"]["embedding"]["detail"]
    scripted.actions = ["wrong-dimension"]
    body = client.get("/readyz").json()
    assert body["checks"]["embedding"]["status"] == "failing"
    assert "8 dimensions" in body["checks"]["embedding"]["detail"]
    settings.EMBEDDING_BASE_URL = f"http://127.0.0.1:{free_port()}/v1"
    body = client.get("/readyz").json()
    assert body["checks"]["embedding"]["status"] == "failing"
    assert "not reachable" in body["checks"]["embedding"]["detail"]
