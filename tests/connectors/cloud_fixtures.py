"""Fixtures of the HTTP connectors' tests: the fakes on loopback, recorded waits, readers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from assistant.accounts.models import Role
from assistant.accounts.services import collection_grant
from assistant.chat import services as chat_services
from assistant.connectors import http
from assistant.connectors.secrets import new_key
from tests.connectors.fake_confluence import FakeConfluence
from tests.connectors.vendor_fakes import FakeGraph, FakeService, serve
from tests.factories import GroupFactory, UserFactory


@pytest.fixture
def waits(monkeypatch) -> list[float]:
    """The back-off's waits, recorded instead of slept."""
    recorded: list[float] = []
    monkeypatch.setattr(http, "sleep", recorded.append)
    return recorded


@pytest.fixture
def sealing_key(settings) -> None:
    settings.CONNECTOR_SECRET_KEY = new_key()


def _served(service: FakeService) -> Iterator[FakeService]:
    server, thread = serve(service)
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def cloud_wiki() -> Iterator[FakeService]:
    yield from _served(FakeConfluence(cloud=True))


@pytest.fixture
def dc_wiki() -> Iterator[FakeService]:
    yield from _served(FakeConfluence(cloud=False))


@pytest.fixture
def graph() -> Iterator[FakeService]:
    yield from _served(FakeGraph())


@pytest.fixture
def readers(collection) -> dict:
    """An outsider (reads the collection), an ``hr`` member (the control) and a manager."""
    hr = GroupFactory.create(name="hr")
    outsider, member, manager = UserFactory.create(), UserFactory.create(), UserFactory.create()
    member.groups.add(hr)
    for user in (outsider, member):
        collection_grant(collection=collection, user=user, role=Role.READ)
    collection_grant(collection=collection, user=manager, role=Role.MANAGE)
    return {"outsider": outsider, "member": member, "manager": manager}


def found(user, collection, query: str) -> dict[str, str]:
    """Document name -> the passages' text the user's retrieval reaches, however weakly they match."""
    texts: dict[str, str] = {}
    for passage in chat_services.passages_ranked(user=user, collection=collection, query=query, k=50):
        texts[passage.document_name] = texts.get(passage.document_name, "") + " " + passage.text
    return texts
