"""Authentication backends of the product."""

from __future__ import annotations

from typing import Any

from axes.backends import AxesStandaloneBackend
from django.http import HttpRequest


class LoginThrottleBackend(AxesStandaloneBackend):
    """django-axes' lockout check, for sign-ins that come with a request.

    Listed first in ``AUTHENTICATION_BACKENDS``: a user name locked out from the
    client's address is refused before any password is checked. Authentication
    without a request (``manage.py`` commands, the test client's ``login()``) is
    not a web sign-in and has no address to count against; axes itself would
    refuse it with an error.
    """

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)
