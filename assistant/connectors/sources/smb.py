"""An SMB share read over the network (no mount): files under a folder of a share, filtered by globs.

Settings: ``host``, ``port`` (default 445), ``share``, ``path`` (a folder inside the
share, default its root), ``user`` (``DOMAIN\\user`` or ``user@realm`` as the server
expects), ``encrypt`` (ask for SMB3 encryption), ``include``/``exclude`` (globs on
the path relative to ``path``, ``connectors.sources.globs``) and ``groups``: the
ordered ``GLOB=GROUPS`` mapping of the folder connector (first match decides;
none: the collection's managers only). The password comes from the connector's
sealed credentials.

A file's version is its modification time and size as the directory listing gives
them (no file is opened to list it); the server's file id is kept beside it in the
item. Who may read a file is decided by the mapping: the share's own ACLs (security
descriptors, SIDs) are not read, since turning SIDs into the product's groups needs a
directory lookup smbprotocol does not do (docs/connectors.md).

``smbprotocol`` is imported only when a share is read. Each source keeps a connection
cache of its own, so two connectors to one server never share a login. A connection
that drops during a sync (a server restart, an idle timeout on the way) is made again
once, with the login, for the request that found it gone (``_again``).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from functools import partial
from typing import IO, Any, TypeVar

from assistant.connectors.sources import EVERYONE, ItemError, SourceError, SourceItem
from assistant.connectors.sources.folder import _mapping, _patterns
from assistant.connectors.sources.globs import first_match, glob_matches
from assistant.connectors.sources.groupmap import groupmap_clean
from assistant.connectors.sources.smb_acl import acl_groups, acl_parse, descriptor_read, is_sid

TIMEOUT_S = 60
PERMISSIONS = ("map", "acl")
logger = logging.getLogger(__name__)
T = TypeVar("T")


def _folder(value: Any) -> str:
    return "/".join(p for p in str(value or "").replace("\\", "/").split("/") if p and p != ".")


class SmbSource:
    def __init__(self, settings: dict[str, Any], credentials: dict[str, str]) -> None:
        self.settings = settings
        self.password = credentials.get("secret", "")
        self.include: list[str] = settings.get("include") or ["**"]
        self.exclude: list[str] = settings.get("exclude") or []
        self.mapping: list[dict[str, Any]] = settings.get("groups") or []
        self.from_acl = settings.get("permissions") == "acl"
        self.acl_mapping: dict[str, list[str]] = settings.get("acl_groups") or {}
        self._cache: dict[str, Any] = {}
        self._registered = False

    @staticmethod
    def clean_settings(settings: dict[str, Any]) -> dict[str, Any]:
        host = str(settings.get("host") or "").strip()
        if not host:
            raise ValueError("An SMB connector needs --host, the file server.")
        share = str(settings.get("share") or "").strip().strip("\\/")
        if not share or "/" in share or "\\" in share:
            raise ValueError("An SMB connector needs --share, the share's name (without folders).")
        port = settings.get("port") or 445
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise ValueError(f"--port must be a number, not '{port}'.") from None
        if not 0 < port < 65536:
            raise ValueError(f"--port must be between 1 and 65535, not {port}.")
        user = str(settings.get("user") or "").strip()
        if not user:
            raise ValueError("An SMB connector needs --user, the account that reads the share.")
        folder = _folder(settings.get("path"))
        if ".." in folder.split("/"):
            raise ValueError("The folder inside the share must not contain '..'.")
        permissions = str(settings.get("permissions") or "map").strip().lower()
        if permissions not in PERMISSIONS:
            raise ValueError("--permissions must be 'map' (the glob mapping) or 'acl' (the files' own ACLs).")
        acl_mapping = groupmap_clean(settings.get("acl_groups"))
        wrong = [sid for sid in acl_mapping if not is_sid(sid)]
        if wrong:
            raise ValueError(f"--acl-map names a SID (S-1-5-21-...=GROUP); not a SID: {wrong[0]}")
        return {
            "host": host, "port": port, "share": share, "path": folder, "user": user,
            "encrypt": bool(settings.get("encrypt")), "include": _patterns(settings.get("include"), "include"),
            "exclude": _patterns(settings.get("exclude"), "exclude"), "groups": _mapping(settings.get("groups")),
            "permissions": permissions, "acl_groups": {sid.upper(): groups for sid, groups in acl_mapping.items()},
        }  # fmt: skip

    def _where(self) -> str:
        return f"\\\\{self.settings['host']}\\{self.settings['share']}"

    def _unc(self, relative: str = "") -> str:
        parts = [p for p in (self.settings.get("path", ""), relative) if p]
        inside = "/".join(parts).replace("/", "\\")
        return self._where() + (f"\\{inside}" if inside else "")

    def _session(self) -> None:
        if self._registered:
            return
        import smbclient
        from smbprotocol.exceptions import LogonFailure, SMBException

        if not self.password:
            raise SourceError("The SMB connector has no password: store one with --secret-env or --secret-prompt.")
        try:
            smbclient.register_session(
                self.settings["host"], username=self.settings["user"], password=self.password,
                port=self.settings["port"], encrypt=self.settings.get("encrypt") or None,
                connection_timeout=TIMEOUT_S, connection_cache=self._cache, auth_protocol="ntlm",
            )  # fmt: skip
        except LogonFailure:
            raise SourceError(
                f"The server {self.settings['host']}:{self.settings['port']} refused the login of "
                f"'{self.settings['user']}' (wrong user name or password)."
            ) from None
        except (SMBException, ValueError, OSError) as exc:
            raise SourceError(
                f"Cannot reach the SMB server {self.settings['host']}:{self.settings['port']}: {exc}"
            ) from None
        self._registered = True

    def close(self) -> None:
        """End the session (and smbprotocol's reader thread with it)."""
        if self._cache:
            import smbclient

            try:
                smbclient.reset_connection_cache(connection_cache=self._cache)
            except Exception:  # a broken connection is closed anyway
                self._cache.clear()
        self._registered = False

    def _again(self, work: Callable[[], T]) -> T:
        """``work()``; once more on a new connection, logged in again, if the connection dropped under it.

        Without this, smbclient would open a new connection by itself but without the
        login (it has none to give), and every later request of the run would fail.
        """
        from smbprotocol.exceptions import SMBConnectionClosed, SMBOSError

        try:
            return work()
        except SMBOSError:
            raise  # the server answered, about the file: not a connection to make again
        except (SMBConnectionClosed, OSError) as exc:
            logger.warning("SMB connection to %s broke (%s); connecting again", self._where(), exc)
            self.close()
            self._session()
            return work()

    def _kwargs(self) -> dict[str, Any]:
        # The login travels with every request: should smbclient find the connection gone
        # and open a new one itself, it logs in with it (without: no login at all).
        return {
            "port": self.settings["port"], "connection_cache": self._cache,
            "username": self.settings["user"], "password": self.password,
        }  # fmt: skip

    def _wanted(self, relative: str) -> bool:
        name = relative.rsplit("/", 1)[-1]
        if name.startswith(("~$", ".")):
            return False
        return first_match(self.include, relative) is not None and first_match(self.exclude, relative) is None

    def _scandir(self, unc: str) -> list[Any]:
        import smbclient

        return list(smbclient.scandir(unc, **self._kwargs()))

    def list_items(self) -> Iterator[SourceItem]:
        from smbprotocol.exceptions import SMBException

        self._session()
        items: list[SourceItem] = []
        pending = [""]
        while pending:
            folder = pending.pop()
            try:
                entries = self._again(partial(self._scandir, self._unc(folder)))
            except (SMBException, OSError, ValueError) as exc:
                # An incomplete listing would read as deletions: refuse to sync instead.
                raise SourceError(f"Cannot list {self._unc(folder)}: {exc}") from None
            for entry in entries:
                if entry.name.startswith("."):
                    continue
                relative = f"{folder}/{entry.name}" if folder else entry.name
                if entry.is_dir():
                    pending.append(relative)
                    continue
                if not self._wanted(relative):
                    continue
                info = entry.smb_info
                size = int(info.end_of_file)
                modified = int(info.last_write_time.timestamp() * 1_000_000)
                items.append(
                    SourceItem(
                        source_id=relative, name=entry.name, link=self._link(relative),
                        version=f"{modified}:{size}", size=size, extra={"file_id": int(info.file_id)},
                    )
                )  # fmt: skip
        items.sort(key=lambda i: i.source_id)
        yield from items

    def _link(self, relative: str) -> str:
        from urllib.parse import quote

        port = "" if self.settings["port"] == 445 else f":{self.settings['port']}"
        inside = "/".join(p for p in (self.settings.get("path", ""), relative) if p)
        return f"smb://{self.settings['host']}{port}/{quote(self.settings['share'])}/{quote(inside)}"

    def open_item(self, item: SourceItem) -> AbstractContextManager[IO[bytes]]:
        import smbclient
        from smbprotocol.exceptions import SMBException

        try:
            self._session()
            stream: IO[bytes] = self._again(
                lambda: smbclient.open_file(self._unc(item.source_id), mode="rb", share_access="rwd", **self._kwargs())
            )
        except SourceError as exc:
            raise ItemError(str(exc)) from None
        except (SMBException, OSError, ValueError) as exc:
            raise ItemError(f"Cannot read {item.source_id}: {exc}") from None
        return stream

    def access(self, item: SourceItem) -> list[str]:
        if self.from_acl:
            return self._acl_access(item)
        for entry in self.mapping:
            if glob_matches(entry["glob"], item.source_id):
                groups: list[str] = entry["groups"]
                return [EVERYONE] if EVERYONE in groups else sorted(set(groups))
        return []

    def _acl_access(self, item: SourceItem) -> list[str]:
        """The groups the file's own ACL lets read it (``[]``: the managers only)."""
        from smbprotocol.exceptions import AccessDenied, SMBException, SMBOSError
        from smbprotocol.header import NtStatus

        try:
            self._session()
            descriptor = self._again(lambda: descriptor_read(self._unc(item.source_id), **self._kwargs()))
        except SourceError as exc:
            raise ItemError(str(exc)) from None
        except (AccessDenied, PermissionError):
            return []  # the account may read the file but not its ACL: unknown, least permissive
        except SMBOSError as exc:
            if exc.ntstatus == NtStatus.STATUS_ACCESS_DENIED:
                return []
            raise ItemError(f"Cannot read who may see {item.source_id}: {exc}") from None
        except (SMBException, OSError, ValueError) as exc:
            raise ItemError(f"Cannot read who may see {item.source_id}: {exc}") from None
        try:
            acl = acl_parse(descriptor)
        except (ValueError, struct.error, IndexError) as exc:
            raise ItemError(f"Cannot read who may see {item.source_id}: {exc}") from None
        return acl_groups(acl, self.acl_mapping)
