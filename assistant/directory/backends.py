"""The sign-in backend for the company directory (listed only when LDAP_SERVER_URI is set)."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.http import HttpRequest

logger = logging.getLogger(__name__)


class DirectoryBackend(ModelBackend):
    """Checks the password by binding to the directory as the user.

    Comes after Django's own backend: a local account signs in with its local
    password, and a directory person whose user name a local account holds is
    refused (``services.ldap_account``). Sessions are then served by the
    inherited ``get_user``, which refuses inactive users.
    """

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> Any:
        from assistant.directory.ldapclient import Directory, DirectoryUnavailable
        from assistant.directory.services import DirectorySignInRefused, ldap_account

        if not username or not password:
            return None
        try:
            with Directory() as directory:
                person = directory.authenticate(username, password)
        except DirectoryUnavailable as exc:
            logger.error("Directory sign-in of %s not possible: %s", username, exc)
            return None
        if person is None:
            return None
        try:
            return ldap_account(person=person)
        except DirectorySignInRefused as refusal:
            logger.warning("Directory sign-in refused: %s", refusal)
            return None
