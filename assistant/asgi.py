"""ASGI entry point: the chat streams answers as server-sent events under uvicorn."""

import os

from django.core.asgi import get_asgi_application

from assistant import privacy  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")

application = get_asgi_application()
