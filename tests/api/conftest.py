from __future__ import annotations

import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.test import Client

from assistant.accounts.models import CollectionGrant
from assistant.accounts.services import token_create
from tests.factories import CollectionFactory, UserFactory


class Api:
    """A token client of /api/v1, as a script would be."""

    def __init__(self, token: str | None) -> None:
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def request(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None, **kw: Any):
        call = getattr(self.client, method)
        if body is not None and "data" not in kw:
            kw.update(data=json.dumps(body), content_type="application/json")
        return call(f"/api/v1{path}", headers={**self.headers, **(headers or {})}, **kw)

    def get(self, path: str, **kw: Any):
        return self.request("get", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any):
        return self.request("post", path, body, **kw)

    def put(self, path: str, body: Any = None, **kw: Any):
        return self.request("put", path, body, **kw)

    def patch(self, path: str, body: Any = None, **kw: Any):
        return self.request("patch", path, body, **kw)

    def delete(self, path: str, **kw: Any):
        return self.request("delete", path, **kw)


def api_for(user: Any, scope: str = "write") -> Api:
    return Api(token_create(user=user, name="test", scope=scope).plaintext)


@pytest.fixture
def staff():
    return UserFactory.create(is_staff=True)


@pytest.fixture
def staff_api(staff) -> Api:
    return api_for(staff)


@pytest.fixture
def collection(staff):
    return CollectionFactory.create(created_by=staff)


@pytest.fixture
def reader(collection):
    user = UserFactory.create()
    CollectionGrant.objects.create(collection=collection, user=user, role="read")
    return user


@pytest.fixture
def reader_api(reader) -> Api:
    return api_for(reader)


@pytest.fixture
def stranger_api() -> Api:
    return api_for(UserFactory.create(is_staff=True))


def error_code(response: Any) -> str:
    body = response.json()
    assert set(body) == {"error"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return str(body["error"]["code"])


def streamed(response: Any) -> bytes:
    """The whole body of a streamed response, async or not, as the test client left it."""
    if getattr(response, "is_async", False):

        async def collect() -> bytes:
            return b"".join([chunk async for chunk in response.streaming_content])

        return async_to_sync(collect)()
    return b"".join(response.streaming_content)
