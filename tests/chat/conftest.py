from __future__ import annotations

import pytest

from tests.support.scripted_llm import serving


@pytest.fixture
def http_server(request):
    """A scripted LLM server; parametrize indirectly with its request handler class."""
    with serving(request.param) as base_url:
        yield base_url
