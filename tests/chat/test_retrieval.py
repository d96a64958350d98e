"""Retrieval only ever returns passages the asker may read, from ready documents."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied

from assistant.accounts.models import CollectionGrant, Role
from assistant.accounts.scope import Scope
from assistant.chat import services
from assistant.chat.retrieval import DenseRetriever
from ingest.models import Document
from tests.factories import CollectionFactory, DocumentFactory, GroupFactory, UserFactory
from tests.support.documents import HANDBOOK_PAGES, make_pdf

pytestmark = pytest.mark.django_db

SECRET = "The merger code name is BLUEHERON and closes on 14 May."


def ingest(collection, name: str, pages: list[str]) -> Document:
    return DocumentFactory.create(collection=collection, name=name, content=make_pdf(pages), processed=True)


@pytest.fixture
def collections():
    public = CollectionFactory.create(name="Public")
    board = CollectionFactory.create(name="Board")
    ingest(public, "handbook.pdf", HANDBOOK_PAGES)
    ingest(board, "board-minutes.pdf", [SECRET])
    return public, board


def test_user_without_grant_cannot_retrieve(collections) -> None:
    _, board = collections
    with pytest.raises(PermissionDenied):
        services.passages_retrieve(user=UserFactory.create(), collection=board, query="merger code name", k=5)


def test_anonymous_user_reads_nothing(collections) -> None:
    _, board = collections
    assert not services.readable_collections(AnonymousUser()).exists()
    with pytest.raises(PermissionDenied):
        services.passages_retrieve(user=AnonymousUser(), collection=board, query="merger", k=5)


def test_group_grant_gives_read_access(collections) -> None:
    public, _ = collections
    user, group = UserFactory.create(), GroupFactory.create()
    user.groups.add(group)
    CollectionGrant.objects.create(collection=public, group=group, role=Role.READ)
    passages = services.passages_retrieve(user=user, collection=public, query="meal allowance abroad", k=3)
    assert passages[0].document_name == "handbook.pdf"
    assert passages[0].page_start == 2


def test_other_collections_never_contribute_passages(collections, settings) -> None:
    public, _ = collections
    # Every passage of the readable collection, however weak: this is about scope, not relevance.
    settings.RETRIEVAL_MIN_RELEVANCE = -1.0
    user = UserFactory.create()
    CollectionGrant.objects.create(collection=public, user=user, role=Role.READ)
    passages = services.passages_retrieve(user=user, collection=public, query="merger code name BLUEHERON", k=50)
    assert passages
    assert all("BLUEHERON" not in p.text for p in passages)
    assert {p.collection_id for p in passages} == {public.pk}


def test_documents_not_ready_are_not_retrieved(collections) -> None:
    public, _ = collections
    Document.objects.filter(collection=public).update(status=Document.Status.PARSING)
    assert DenseRetriever(scope=Scope.of([public.pk])).retrieve("meal allowance", k=5) == []


def test_revoking_access_takes_effect_on_the_next_question(collections) -> None:
    _, board = collections
    user = UserFactory.create()
    grant = CollectionGrant.objects.create(collection=board, user=user, role=Role.READ)
    assert services.passages_retrieve(user=user, collection=board, query="merger", k=1)
    grant.delete()
    with pytest.raises(PermissionDenied):
        services.passages_retrieve(user=user, collection=board, query="merger", k=1)


def test_creator_and_superuser_can_read(collections) -> None:
    _, board = collections
    creator = UserFactory.create()
    board.created_by = creator
    board.save()
    admin = UserFactory.create(is_superuser=True)
    for user in (creator, admin):
        assert services.passages_retrieve(user=user, collection=board, query="merger", k=1)[0].text == SECRET


def test_hidden_documents_are_skipped_before_ranking(collections) -> None:
    public, _ = collections
    memo = ingest(public, "memo.pdf", ["Travel meal allowance abroad is 60 euros per day."])
    scope = Scope.of([public.pk], hidden_document_ids=[memo.pk])
    passages = DenseRetriever(scope=scope).retrieve("meal allowance abroad euros per day", k=50)
    assert passages
    assert memo.pk not in {p.document_id for p in passages}
    visible = DenseRetriever(scope=Scope.of([public.pk])).retrieve("meal allowance abroad euros per day", k=50)
    assert memo.pk in {p.document_id for p in visible}
