"""Talking to the company directory over LDAP (ldap3, imported only when used).

``Directory`` binds as the user to check a password (directly through
``LDAP_USER_DN_TEMPLATE``, or search-then-bind with the service account), reads
the person's attributes, and resolves every group they are in, nested groups
included: Active Directory answers that in one search with the
LDAP_MATCHING_RULE_IN_CHAIN (1.2.840.113556.1.4.1941); other servers (OpenLDAP)
are walked level by level through the groups' ``member`` attribute.

Values from the user (the user name) are escaped before they go into a filter or
a DN: a name like ``*)(uid=*`` matches nobody.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

logger = logging.getLogger(__name__)

AD_IN_CHAIN = "1.2.840.113556.1.4.1941"
# How deep the walk through nested groups goes on servers without the in-chain rule.
MAX_NESTING = 10


class DirectoryUnavailable(Exception):
    """The directory did not answer, or refused the service account: nothing may be concluded."""


@dataclass(frozen=True)
class DirectoryGroupEntry:
    dn: str
    name: str  # the group's cn


@dataclass(frozen=True)
class DirectoryPerson:
    dn: str
    external_id: str
    username: str
    email: str = ""
    first_name: str = ""
    last_name: str = ""
    groups: tuple[DirectoryGroupEntry, ...] = field(default=())


def _value(attributes: dict[str, Any], name: str) -> str:
    if not name:
        return ""
    for key, value in attributes.items():
        if key.lower() == name.lower():
            if isinstance(value, list):
                value = value[0] if value else ""
            if isinstance(value, bytes):
                # objectGUID and other binary ids: kept as hex, stable and printable.
                return value.hex()
            return str(value)
    return ""


class Directory:
    """One conversation with the directory server; use as a context manager."""

    def __init__(self) -> None:
        self._service: Any = None

    # --- connections -------------------------------------------------------------

    def _server(self) -> Any:
        import ssl

        from ldap3 import NONE, Server, Tls

        uri = settings.LDAP_SERVER_URI
        tls = Tls(
            validate=ssl.CERT_REQUIRED if settings.LDAP_TLS_VERIFY else ssl.CERT_NONE,
            ca_certs_file=settings.LDAP_CA_FILE or None,
        )
        return Server(
            uri, use_ssl=uri.lower().startswith("ldaps://"), tls=tls, get_info=NONE,
            connect_timeout=settings.LDAP_TIMEOUT,
        )  # fmt: skip

    def _connect(self, user: str | None, password: str | None) -> Any:
        """A bound connection, or None when the server refused the credentials."""
        from ldap3 import Connection
        from ldap3.core.exceptions import LDAPException

        connection = Connection(
            self._server(), user=user, password=password, receive_timeout=settings.LDAP_TIMEOUT,
            raise_exceptions=False, read_only=True,
        )  # fmt: skip
        try:
            connection.open()
            if settings.LDAP_START_TLS:
                connection.start_tls()
            bound = connection.bind()
        except LDAPException as exc:
            raise DirectoryUnavailable(f"{settings.LDAP_SERVER_URI}: {type(exc).__name__}: {exc}") from exc
        if not bound:
            result = connection.result or {}
            connection.unbind()
            if result.get("result") == 49:  # invalidCredentials
                return None
            raise DirectoryUnavailable(f"{settings.LDAP_SERVER_URI}: bind refused: {result.get('description')}")
        return connection

    def service(self) -> Any:
        """The service account's connection (anonymous when LDAP_BIND_DN is empty)."""
        if self._service is None:
            connection = self._connect(settings.LDAP_BIND_DN or None, settings.LDAP_BIND_PASSWORD or None)
            if connection is None:
                raise DirectoryUnavailable("the directory refused the service account (LDAP_BIND_DN)")
            self._service = connection
        return self._service

    def close(self) -> None:
        if self._service is not None:
            self._service.unbind()
            self._service = None

    def __enter__(self) -> Directory:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- searches ----------------------------------------------------------------

    def _search(self, connection: Any, base: str, query: str, attributes: list[str], scope: str = "SUBTREE") -> list:
        import ldap3

        ok = connection.search(base, query, search_scope=getattr(ldap3, scope), attributes=attributes)
        result = connection.result or {}
        if not ok and result.get("result") not in (0, 32):  # 32: noSuchObject, nothing there
            raise DirectoryUnavailable(f"search in {base} failed: {result.get('description')}")
        return [e for e in connection.response or [] if e.get("type") == "searchResEntry"]

    def _user_attributes(self) -> list[str]:
        names = [
            settings.LDAP_ATTR_USERNAME, settings.LDAP_ATTR_ID, settings.LDAP_ATTR_EMAIL,
            settings.LDAP_ATTR_FIRST_NAME, settings.LDAP_ATTR_LAST_NAME,
        ]  # fmt: skip
        return [n for n in names if n]

    def _person(self, entry: dict[str, Any], connection: Any, fallback_username: str) -> DirectoryPerson:
        attributes = entry.get("raw_attributes", {}) if settings.LDAP_ATTR_ID.lower() == "objectguid" else {}
        values = entry.get("attributes", {})
        external_id = _value(attributes, settings.LDAP_ATTR_ID) or _value(values, settings.LDAP_ATTR_ID)
        dn = str(entry["dn"])
        return DirectoryPerson(
            dn=dn,
            external_id=external_id or dn.lower(),
            username=_value(values, settings.LDAP_ATTR_USERNAME) or fallback_username,
            email=_value(values, settings.LDAP_ATTR_EMAIL),
            first_name=_value(values, settings.LDAP_ATTR_FIRST_NAME),
            last_name=_value(values, settings.LDAP_ATTR_LAST_NAME),
            groups=tuple(self.groups_of(dn, connection)),
        )

    def _user_filter(self, username: str) -> str:
        from ldap3.utils.conv import escape_filter_chars

        return settings.LDAP_USER_FILTER.replace("{username}", escape_filter_chars(username))

    def find(self, username: str) -> DirectoryPerson | None:
        """The person the service account finds under that user name, or None (also when ambiguous)."""
        connection = self.service()
        entries = self._search(
            connection, settings.LDAP_USER_SEARCH_BASE, self._user_filter(username), self._user_attributes()
        )
        if len(entries) != 1:
            return None
        return self._person(entries[0], connection, username)

    def authenticate(self, username: str, password: str) -> DirectoryPerson | None:
        """The person whose password this is, or None. ``DirectoryUnavailable`` when no answer."""
        if not username or not password:
            # An empty password is an "unauthenticated bind" that many servers accept.
            return None
        if settings.LDAP_USER_DN_TEMPLATE:
            from ldap3.utils.dn import escape_rdn

            dn = settings.LDAP_USER_DN_TEMPLATE.replace("{username}", escape_rdn(username))
        else:
            found = self.find(username)
            if found is None:
                return None
            dn = found.dn
        connection = self._connect(dn, password)
        if connection is None:
            return None
        try:
            entries = self._search(connection, dn, "(objectClass=*)", self._user_attributes(), scope="BASE")
            if not entries:
                return None
            # Groups are read with the service account when there is one: a user may
            # not be allowed to read the groups they are in.
            reader = self.service() if settings.LDAP_BIND_DN else connection
            return self._person(entries[0], reader, username)
        finally:
            connection.unbind()

    def groups_of(self, dn: str, connection: Any) -> list[DirectoryGroupEntry]:
        """Every group ``dn`` is in, directly or through nested groups."""
        from ldap3.utils.conv import escape_filter_chars

        base, group_filter, member = (
            settings.LDAP_GROUP_SEARCH_BASE, settings.LDAP_GROUP_FILTER, settings.LDAP_GROUP_MEMBER_ATTR,
        )  # fmt: skip
        if not base:
            return []
        found: dict[str, DirectoryGroupEntry] = {}
        if settings.LDAP_ACTIVE_DIRECTORY:
            query = f"(&{group_filter}({member}:{AD_IN_CHAIN}:={escape_filter_chars(dn)}))"
            for entry in self._search(connection, base, query, ["cn"]):
                found[str(entry["dn"]).lower()] = DirectoryGroupEntry(
                    str(entry["dn"]), _value(entry["attributes"], "cn")
                )
            return sorted(found.values(), key=lambda g: g.dn.lower())
        frontier = [dn]
        for _ in range(MAX_NESTING):
            if not frontier:
                break
            members = "".join(f"({member}={escape_filter_chars(d)})" for d in frontier)
            query = f"(&{group_filter}(|{members}))"
            frontier = []
            for entry in self._search(connection, base, query, ["cn"]):
                key = str(entry["dn"]).lower()
                if key not in found:  # a cycle of groups ends here
                    found[key] = DirectoryGroupEntry(str(entry["dn"]), _value(entry["attributes"], "cn"))
                    frontier.append(str(entry["dn"]))
        return sorted(found.values(), key=lambda g: g.dn.lower())
