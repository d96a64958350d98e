"""The REST API (``/api/v1/``) and the OpenAI-compatible endpoints (``/v1/``).

Routers validate input, find objects through the same permission selectors as the
browser pages, call one service and respond; no rule lives here.
"""
