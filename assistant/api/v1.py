"""The REST API, version 1, at ``/api/v1/`` (docs at ``/api/v1/docs``)."""

from __future__ import annotations

from ninja import NinjaAPI, Swagger

from assistant.api.auth import READ
from assistant.api.errors import install_handlers
from assistant.api.routers import answers, audit, collections, conversations, documents

api = NinjaAPI(
    title="Document assistant API",
    version="1.0.0",
    description=(
        "Collections, documents, search and cited answers over your company's documents. "
        "Authenticate with a personal API token: `Authorization: Bearer <token>` "
        "(create one under *API tokens* in the web interface). Errors are "
        '`{"error": {"code": ..., "message": ...}}`.'
    ),
    urls_namespace="api-v1",
    auth=READ,
    # Swagger UI from the files django-ninja ships (it is an installed app), and no
    # badge from the public validator: the browser loads nothing from outside. A
    # token typed into "Authorize" stays in the page's memory, never localStorage,
    # where any script on this origin could read it long after the tab is closed.
    docs=Swagger(settings={"validatorUrl": None, "persistAuthorization": False}),
    docs_url="/docs",
    openapi_url="/openapi.json",
)
install_handlers(api)
api.add_router("", collections.router)
api.add_router("", documents.router)
api.add_router("", answers.router)
api.add_router("", conversations.router)
api.add_router("", audit.router)
