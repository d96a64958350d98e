"""Authentication, scopes, the error shape and the docs page of /api/v1."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from django.contrib.staticfiles import finders
from django.test import Client
from django.utils import timezone

from assistant.accounts.models import ApiToken
from assistant.accounts.services import token_create, token_revoke
from tests.api.conftest import Api, api_for, error_code
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_missing_malformed_revoked_and_expired_tokens_get_401_json(staff) -> None:
    revoked = token_create(user=staff, name="r")
    token_revoke(token=revoked.token)
    expired = token_create(user=staff, name="e")
    ApiToken.objects.filter(pk=expired.token.pk).update(expires_at=timezone.now() - timedelta(minutes=1))
    for token in (None, "nonsense", "ast_abc_def", revoked.plaintext, expired.plaintext):
        for method, path in (("get", "/collections"), ("post", "/collections")):
            response = getattr(Api(token), method)(path, body={"name": "x"} if method == "post" else None)
            assert response.status_code == 401, (token, method)
            assert error_code(response) == "unauthenticated"
            assert response["WWW-Authenticate"].startswith("Bearer")


def test_read_token_on_a_write_endpoint_gets_403(staff, collection) -> None:
    api = api_for(staff, scope="read")
    assert api.get("/collections").status_code == 200
    for response in (
        api.post("/collections", {"name": "New"}),
        api.patch(f"/collections/{collection.pk}", {"description": "x"}),
        api.delete(f"/collections/{collection.pk}"),
        api.put(f"/collections/{collection.pk}/members", {"user": staff.username, "role": "read"}),
        api.post(f"/collections/{collection.pk}/documents", data={}, content_type="multipart/form-data; boundary=x"),
    ):
        assert response.status_code == 403
        assert error_code(response) == "insufficient_scope"
    # Reading, searching and asking are what a read token is for.
    assert api.post("/conversations", {"collection_id": collection.pk}).status_code == 201


def test_validation_errors_have_the_same_shape(staff_api) -> None:
    response = staff_api.post("/collections", {"description": "no name"})
    assert response.status_code == 422
    assert error_code(response) == "validation_error"
    body = response.json()["error"]
    assert "name" in body["message"]
    assert body["details"][0]["loc"][-1] == "name"
    bad_json = staff_api.post("/collections", data="{not json", content_type="application/json")
    assert bad_json.status_code in (400, 422) and error_code(bad_json) in ("bad_request", "validation_error")
    assert staff_api.get("/collections?limit=0").status_code == 422
    not_a_number = staff_api.get("/collections/not-a-number")
    assert not_a_number.status_code == 422 and error_code(not_a_number) == "validation_error"
    for path in ("/collections/-1", "/no/such/endpoint"):
        response = staff_api.get(path)
        assert response.status_code == 404 and error_code(response) == "not_found", path


def test_browser_session_works_and_needs_csrf_for_writes(collection, staff) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(staff)
    assert client.get("/api/v1/collections").json()["total"] == 1
    refused = client.post("/api/v1/collections", data='{"name": "X"}', content_type="application/json")
    assert refused.status_code == 403
    client.get("/account/tokens/")  # a page with a form sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    created = client.post(
        "/api/v1/collections", data='{"name": "X"}', content_type="application/json", headers={"X-CSRFToken": token}
    )
    assert created.status_code == 201, created.content


def test_openapi_document_lists_every_resource() -> None:
    document = Client().get("/api/v1/openapi.json").json()
    assert document["openapi"].startswith("3.")
    paths = document["paths"]
    for path in (
        "/api/v1/collections",
        "/api/v1/collections/{collection_id}",
        "/api/v1/collections/{collection_id}/members",
        "/api/v1/collections/{collection_id}/documents",
        "/api/v1/documents/{document_id}",
        "/api/v1/documents/{document_id}/download",
        "/api/v1/documents/{document_id}/reindex",
        "/api/v1/search",
        "/api/v1/ask",
        "/api/v1/ask/stream",
        "/api/v1/conversations",
        "/api/v1/conversations/{conversation_id}",
        "/api/v1/conversations/{conversation_id}/messages",
        "/api/v1/messages/{message_id}/feedback",
    ):
        assert path in paths, path
    assert "TokenAuth" in document["components"]["securitySchemes"]


def test_docs_page_loads_nothing_from_outside() -> None:
    page = Client().get("/api/v1/docs")
    assert page.status_code == 200
    html = page.content.decode()
    references = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert any(r.endswith("swagger-ui-bundle.js") for r in references)
    for reference in references:
        assert reference.startswith("/") and not reference.startswith("//"), reference
    assert "cdn." not in html and "https://" not in html
    assert '"validatorUrl": null' in html
    for asset in ("ninja/swagger-ui-bundle.js", "ninja/swagger-ui.css", "ninja/swagger-ui-init.js"):
        assert finders.find(asset), asset


def test_docs_page_keeps_a_typed_token_out_of_local_storage() -> None:
    # Swagger UI's persistAuthorization writes the bearer token to localStorage, where
    # it outlives the tab and any script on the origin can read it.
    html = Client().get("/api/v1/docs").content.decode()
    settings_json = re.search(r'<script type="application/json" id="swagger-settings">(.*?)</script>', html, re.S)
    assert settings_json is not None
    assert json.loads(settings_json.group(1)).get("persistAuthorization") is not True


def test_a_user_without_any_grant_sees_no_collections(collection) -> None:
    api = api_for(UserFactory.create())
    body = api.get("/collections").json()
    assert body == {"total": 0, "limit": 50, "offset": 0, "items": []}
