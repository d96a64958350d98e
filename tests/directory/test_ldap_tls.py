"""Sign-in over LDAPS and StartTLS against a real slapd with a throwaway CA.

With the right CA the sign-in works on both; without it, with another CA, or
against a server that refuses StartTLS, the connection stops with a clear error
before any bind, so the password never goes out in plain text.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client

from assistant.directory.ldapclient import Directory, DirectoryUnavailable
from tests.directory.test_ldap import LDIF, sign_in
from tests.support import slapd as slapd_support
from tests.support.slapd import READER_DN, READER_PASSWORD, SUFFIX, Slapd, make_ca

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.once,  # its own slapd, no pass-specific settings
    pytest.mark.skipif(bool(slapd_support.available()), reason=slapd_support.available() or "slapd"),
]


@pytest.fixture(scope="module")
def tls_slapd():
    server = Slapd(LDIF, tls=True)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def plain_slapd():
    server = Slapd(LDIF)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory) -> Path:
    cert, _ = make_ca(tmp_path_factory.mktemp("other-ca"), "other")
    return cert


@pytest.fixture
def directory(settings):
    settings.LDAP_ENABLED = True
    settings.LDAP_BIND_DN = READER_DN
    settings.LDAP_BIND_PASSWORD = READER_PASSWORD
    settings.LDAP_USER_SEARCH_BASE = f"ou=people,{SUFFIX}"
    settings.LDAP_GROUP_SEARCH_BASE = f"ou=groups,{SUFFIX}"
    settings.LDAP_USER_DN_TEMPLATE = ""
    settings.LDAP_GROUP_MAP = {}
    settings.LDAP_GROUP_PREFIX = "ldap:"
    settings.LDAP_TLS_VERIFY = True
    settings.LDAP_TIMEOUT = 5
    settings.AUTHENTICATION_BACKENDS = [
        *settings.AUTHENTICATION_BACKENDS,
        "assistant.directory.backends.DirectoryBackend",
    ]
    return settings


@pytest.fixture
def binds(monkeypatch) -> list[str]:
    """The DNs of every bind the client sends (observed, then sent as usual)."""
    from ldap3 import Connection

    sent: list[str] = []
    original = Connection.bind

    def bind(self, *args, **kwargs):
        sent.append(str(self.user))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(Connection, "bind", bind)
    return sent


def _use(settings, uri: str, *, start_tls: bool, ca: Path | None) -> None:
    settings.LDAP_SERVER_URI = uri
    settings.LDAP_START_TLS = start_tls
    settings.LDAP_CA_FILE = str(ca) if ca else ""


@pytest.mark.parametrize("transport", ["ldaps", "starttls"])
def test_sign_in_over_tls_with_the_ca_configured(directory, tls_slapd: Slapd, binds, transport) -> None:
    uri = tls_slapd.ldaps_uri if transport == "ldaps" else tls_slapd.uri
    _use(directory, uri, start_tls=transport == "starttls", ca=tls_slapd.ca_file)
    _, alice = sign_in("alice")
    assert set(alice.groups.values_list("name", flat=True)) == {"ldap:board", "ldap:directors", "ldap:staff"}
    assert f"uid=alice,ou=people,{SUFFIX}" in binds  # the user's own bind went over TLS


@pytest.mark.parametrize("transport", ["ldaps", "starttls"])
@pytest.mark.parametrize("trust", ["system CAs only", "another CA"])
def test_an_untrusted_certificate_stops_before_any_bind(
    directory, tls_slapd: Slapd, other_ca: Path, binds, transport, trust
) -> None:
    uri = tls_slapd.ldaps_uri if transport == "ldaps" else tls_slapd.uri
    _use(directory, uri, start_tls=transport == "starttls", ca=other_ca if trust == "another CA" else None)
    for dn_template in ("", f"uid={{username}},ou=people,{SUFFIX}"):  # service account first, or the user
        directory.LDAP_USER_DN_TEMPLATE = dn_template
        with pytest.raises(DirectoryUnavailable, match=r"(?i)certificate verify failed"), Directory() as found:
            found.authenticate("alice", "alice-directory-pass")
    assert binds == []  # neither the service account's password nor alice's was sent
    refused = Client().post("/accounts/login/", {"username": "alice", "password": "alice-directory-pass"})
    assert refused.status_code == 200  # the form again
    assert binds == []


def test_a_server_refusing_starttls_gets_no_password_in_plain_text(
    directory, plain_slapd: Slapd, tls_slapd: Slapd, binds
) -> None:
    _use(directory, plain_slapd.uri, start_tls=True, ca=tls_slapd.ca_file)
    directory.LDAP_USER_DN_TEMPLATE = f"uid={{username}},ou=people,{SUFFIX}"
    with pytest.raises(DirectoryUnavailable, match="startTLS failed"), Directory() as found:
        found.authenticate("alice", "alice-directory-pass")
    assert binds == []
