"""ASGI entry point: the chat streams answers as server-sent events under uvicorn, and
the Model Context Protocol server answers at ``/mcp`` beside it (docs/mcp.md)."""

import os

from django.core.asgi import get_asgi_application

from assistant import privacy  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")

django_application = get_asgi_application()

# Imported once Django is set up: the MCP door reads tokens through the ORM.
from assistant.mcp.http import with_mcp  # noqa: E402

application = with_mcp(django_application)
