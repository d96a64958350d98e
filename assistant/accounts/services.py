"""Write-side operations on users and access."""

from __future__ import annotations

import secrets

from django.contrib.auth import get_user_model


def admin_bootstrap(*, username: str, password: str = "", email: str = "") -> tuple[bool, str]:
    """Create the first administrator unless one exists.

    Returns ``(created, password)``; the password is generated when none is given
    and is returned only at creation, so it can be shown exactly once.
    """
    user_model = get_user_model()
    if user_model.objects.filter(is_superuser=True).exists():
        return False, ""
    password = password or secrets.token_urlsafe(12)
    user_model.objects.create_superuser(username=username, email=email, password=password)
    return True, password
