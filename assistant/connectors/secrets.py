"""Connector credentials, encrypted at rest with a key from the environment.

``CONNECTOR_SECRET_KEY`` is a Fernet key (``manage.py connector key`` prints a new
one). Without it, connectors that need no credentials (a mounted folder) still
work; storing a credential refuses with a message saying what to set. The clear
text exists only in memory, while a source is being read: it is never logged,
shown back, written to the audit log or printed by ``connector list``.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured


class CredentialsUnavailable(ImproperlyConfigured):
    """The key is missing or is not the one the credentials were stored with."""


def _fernet() -> Any:
    from cryptography.fernet import Fernet

    key = settings.CONNECTOR_SECRET_KEY
    if not key:
        raise CredentialsUnavailable(
            "CONNECTOR_SECRET_KEY is not set: connector credentials cannot be stored or read. "
            "Generate a key with `manage.py connector key` and set it for the web server and the workers."
        )
    try:
        return Fernet(key.encode())
    except ValueError as exc:
        raise CredentialsUnavailable(f"CONNECTOR_SECRET_KEY is not a valid key ({exc}).") from None


def new_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def credentials_seal(values: dict[str, str]) -> bytes:
    """The encrypted form stored in ``Connector.credentials`` (empty for no credentials)."""
    if not values:
        return b""
    return bytes(_fernet().encrypt(json.dumps(values).encode()))


def credentials_open(sealed: bytes | memoryview) -> dict[str, str]:
    """The clear credentials, for a source that is about to be read."""
    from cryptography.fernet import InvalidToken

    data = bytes(sealed)
    if not data:
        return {}
    try:
        return dict(json.loads(_fernet().decrypt(data)))
    except InvalidToken:
        raise CredentialsUnavailable(
            "The connector's credentials cannot be read with the current CONNECTOR_SECRET_KEY "
            "(was the key changed?); store them again."
        ) from None
