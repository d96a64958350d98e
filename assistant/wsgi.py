"""WSGI entry point, for servers without ASGI (answers then arrive in one piece)."""

import os

from django.core.wsgi import get_wsgi_application

from assistant import privacy  # noqa: F401

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")

application = get_wsgi_application()
