"""How long a question may be, on every surface that takes one.

The chat page (its form and its view), the REST API's ``/search`` and ``/ask``, and
the OpenAI-compatible completions all refuse a longer one before anything is
retrieved, so the limit is the same whichever door a question comes through.
"""

from __future__ import annotations

MAX_QUESTION_CHARS = 4000
