"""Real vLLM (``--runner pooling``) serving the packaged all-MiniLM-L6-v2 as ``EMBEDDING_BASE_URL``.

Its vectors of real SciFact abstracts (some well past the model's window, which the
client cuts where the in-process model does) keep a cosine of at least 0.999 to the
in-process model's, the same queries find the same abstracts over a small real corpus,
and documents ingested through it are found by the product's retrieval as they are
in-process, restrictions kept.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from assistant.accounts.models import CollectionGrant, Role
from assistant.chat import services
from ingest import embedding
from ingest.embedding_server import ServerBackend, folder_dimensions, truncator
from tests.conftest import REPO, SHARED_DATA, _require
from tests.factories import CollectionFactory, DocumentFactory, GroupFactory, UserFactory
from tests.support.processes import Process, free_port

pytestmark = pytest.mark.vllm
SERVED = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def embedding_vllm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM's pooling runner on the model folder the product embeds with in-process."""
    python = os.environ.get("ASSISTANT_VLLM_PYTHON", "")
    _require(bool(python) and Path(python).exists(), "vLLM environment not built (run `make test`)")
    port = free_port()
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_NO_USAGE_STATS="1", DO_NOT_TRACK="1", HF_HUB_OFFLINE="1")
    command = [
        python, "-m", "vllm.entrypoints.openai.api_server", "--model", embedding.model_path(),
        "--served-model-name", SERVED, "--runner", "pooling", "--host", "127.0.0.1", "--port", str(port),
        "--dtype", "float32", "--enforce-eager",
    ]  # fmt: skip
    process = Process("vllm-embed", command, env=env, log_dir=tmp_path_factory.mktemp("vllm-embed"), cwd=REPO)
    try:
        process.wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=400)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        process.stop()


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str]]:
    """200 SciFact abstracts (with the 8 longest) and 20 of its queries."""
    folder = SHARED_DATA / "scifact"
    _require((folder / "corpus.jsonl").is_file(), f"SciFact not found at {folder}")
    with (folder / "corpus.jsonl").open(encoding="utf-8") as handle:
        texts = [f"{row['title']}\n{row['text']}" for row in map(json.loads, handle)]
    with (folder / "queries.jsonl").open(encoding="utf-8") as handle:
        queries = [row["text"] for row in map(json.loads, handle)][:20]
    return texts[:192] + sorted(texts, key=len)[-8:], queries


def server(url: str) -> ServerBackend:
    folder = embedding.model_path()
    return ServerBackend(
        base_url=url,
        model=SERVED,
        dimensions=folder_dimensions(Path(folder)),
        truncate=truncator(folder),
        sleep=lambda seconds: None,
    )


def test_vllm_vectors_match_the_in_process_model(embedding_vllm, corpus) -> None:
    texts, queries = corpus
    wanted = texts[:16] + texts[-8:] + queries
    remote = server(embedding_vllm).encode(wanted, batch_size=16)
    local = embedding.embed_texts(wanted)
    cosines = np.sum(remote * local, axis=1)
    assert cosines.min() >= 0.999, sorted(cosines)[:5]


def test_vllm_retrieval_finds_the_same_abstracts(embedding_vllm, corpus) -> None:
    texts, queries = corpus
    remote = server(embedding_vllm)
    local_scores = embedding.embed_texts(queries) @ embedding.embed_texts(texts).T
    remote_scores = remote.encode(queries, batch_size=32) @ remote.encode(texts, batch_size=32).T
    for q in range(len(queries)):
        local_top = list(np.argsort(-local_scores[q])[:5])
        remote_top = list(np.argsort(-remote_scores[q])[:5])
        # Near ties may swap at the edge of the five when in-process runs in bfloat16.
        assert remote_top[0] == local_top[0], (queries[q], remote_top, local_top)
        assert len(set(remote_top) & set(local_top)) >= 4, (queries[q], remote_top, local_top)


@pytest.mark.django_db
def test_documents_ingested_through_vllm_are_found_with_restrictions_kept(settings, embedding_vllm, corpus) -> None:
    texts, _ = corpus
    settings.EMBEDDING_BASE_URL = embedding_vllm
    settings.EMBEDDING_SERVER_MODEL = SERVED
    collection = CollectionFactory.create()
    lab = GroupFactory.create()
    for n, text in enumerate(texts[:6]):
        DocumentFactory.create(
            collection=collection,
            name=f"abstract-{n}.txt",
            content=text,
            groups=[lab] if n == 0 else (),
            processed=True,
        )
    member, outsider = UserFactory.create(), UserFactory.create()
    member.groups.add(lab)
    for user in (member, outsider):
        CollectionGrant.objects.create(collection=collection, user=user, role=Role.READ)
    title = texts[0].split("\n", 1)[0]
    seen = services.passages_retrieve(user=member, collection=collection, query=title, k=3)
    assert seen[0].document_name == "abstract-0.txt"
    hidden = services.passages_retrieve(user=outsider, collection=collection, query=title, k=10)
    assert all(p.document_name != "abstract-0.txt" for p in hidden)
    # The same question embedded in-process finds the same passage first: one embedding space.
    settings.EMBEDDING_BASE_URL = ""
    assert (
        services.passages_retrieve(user=member, collection=collection, query=title, k=3)[0].chunk_id == seen[0].chunk_id
    )
