"""A mailbox over IMAP: each message of the chosen folders is a document (its .eml).

Settings: ``host``, ``port`` (default 993 for ``imaps``, 143 otherwise), ``security``
(``imaps``: TLS from the start; ``starttls``: upgraded before the login; ``plain``:
no encryption, accepted only for a loopback host and with ``allow_plain`` set, for
tests), ``cafile`` (a CA bundle for a server whose certificate a private CA signed),
``user``, ``folders`` (default ``INBOX``), ``include``/``exclude`` (globs on folder
names, ``/`` between levels: ``include`` adds every folder that matches, ``exclude``
removes), and ``groups``: the mapping (``connectors.sources.folder``) from folder
globs to product groups. A mailbox has one owner, its ``user``; ``**=GROUP`` says
which product group stands for that owner, a narrower glob can give one folder to
others. No entry matching: the collection's managers only. The password comes from
the connector's sealed credentials.

Messages never change under their UID, so the listing asks the server for UIDs,
sizes and flags only (``UID FETCH 1:* (UID RFC822.SIZE FLAGS)``), and a sync with
nothing new reads no message. ``source_id`` is ``FOLDER/UIDVALIDITY/UID``: a new
UIDVALIDITY (the server renumbered the folder) lists every message under a new id,
and the sync matches them by content hash to what it holds (renames, nothing is
embedded again); a message moved to another folder keeps its bytes, and so its
document, the same way. Expunged messages (and those flagged ``\\Deleted``) are
gone from the listing, so their documents are deleted.

Attachments stay inside the message: the mail parser (``ingest.parsers.mail``) makes
each one a document of its own, linked to the message as its parent, parsed as its
own type, cited by its own name, restricted and deleted with the message.
"""

from __future__ import annotations

import base64
import contextlib
import email.parser
import email.policy
import imaplib
import io
import ipaddress
import logging
import re
import ssl
from collections.abc import Iterator
from contextlib import AbstractContextManager
from typing import IO, Any
from urllib.parse import quote

from django.conf import settings as django_settings

from assistant.connectors.sources import EVERYONE, ItemError, SourceError, SourceItem
from assistant.connectors.sources.folder import _mapping, _patterns
from assistant.connectors.sources.globs import first_match, glob_matches

SECURITY = ("imaps", "starttls", "plain")
TIMEOUT_S = 60.0
_LIST_LINE = re.compile(rb'\((?P<flags>[^)]*)\) (?P<delimiter>"[^"]*"|NIL) (?P<name>.+)')
_FETCH_LINE = re.compile(rb"UID (\d+)|RFC822\.SIZE (\d+)|FLAGS \(([^)]*)\)")
logger = logging.getLogger(__name__)


class _Broken(Exception):
    """The connection dropped during a command (the server or the network closed it)."""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def utf7_decode(raw: str) -> str:
    """IMAP's modified UTF-7 (RFC 3501 5.1.3) folder name as text: ``Entw&APw-rfe`` is ``Entwürfe``."""

    def decode(match: re.Match[str]) -> str:
        chunk = match.group(1)
        if not chunk:
            return "&"
        data = chunk.replace(",", "/")
        return base64.b64decode(data + "=" * (-len(data) % 4)).decode("utf-16-be")

    return re.sub(r"&([^-]*)-", decode, raw)


def _unquote(raw: bytes) -> str:
    text = raw.decode("ascii", "replace").strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].replace('\\"', '"').replace("\\\\", "\\")
    return text


def _subject_name(message: bytes, fallback: str) -> str:
    """The document's name: the message's subject as a file name (``.eml``)."""
    try:
        headers = email.parser.BytesHeaderParser(policy=email.policy.default).parsebytes(message)
        subject = str(headers.get("subject", "") or "")
    except Exception:  # broken headers: the parser names it anyway
        subject = ""
    subject = re.sub(r"[\\/:*?\"<>|\x00-\x1f]+", " ", subject)
    subject = " ".join(subject.split())[:150].strip(" .")
    return f"{subject or fallback}.eml"


class ImapSource:
    def __init__(self, settings: dict[str, Any], credentials: dict[str, str]) -> None:
        self.settings = settings
        self.password = credentials.get("secret", "")
        self.mapping: list[dict[str, Any]] = settings.get("groups") or []
        self._client: imaplib.IMAP4 | None = None
        self._selected: tuple[str, str] | None = None  # (raw folder name, its UIDVALIDITY)
        self._raw: dict[str, str] = {}  # folder as shown -> as the server names it

    @staticmethod
    def clean_settings(settings: dict[str, Any]) -> dict[str, Any]:
        host = str(settings.get("host") or "").strip()
        if not host:
            raise ValueError("An IMAP connector needs --host, the mail server.")
        security = str(settings.get("security") or "imaps").strip().lower()
        if security not in SECURITY:
            raise ValueError(f"--imap-security must be one of {', '.join(SECURITY)}, not '{security}'.")
        allow_plain = bool(settings.get("allow_plain"))
        if security == "plain" and not (allow_plain and _loopback(host)):
            raise ValueError(
                "An unencrypted IMAP connection sends the password in clear: it is accepted only to a loopback "
                "host (tests) and with --allow-plain. Use imaps or starttls."
            )
        port = settings.get("port") or (993 if security == "imaps" else 143)
        try:
            port = int(port)
        except (TypeError, ValueError):
            raise ValueError(f"--port must be a number, not '{port}'.") from None
        if not 0 < port < 65536:
            raise ValueError(f"--port must be between 1 and 65535, not {port}.")
        user = str(settings.get("user") or "").strip()
        if not user:
            raise ValueError("An IMAP connector needs --user, the mailbox's login.")
        folders = _patterns(settings.get("folders"), "folders") or ["INBOX"]
        cafile = str(settings.get("cafile") or "").strip()
        return {
            "host": host, "port": port, "security": security, "allow_plain": allow_plain, "cafile": cafile,
            "user": user, "folders": folders, "include": _patterns(settings.get("include"), "include"),
            "exclude": _patterns(settings.get("exclude"), "exclude"), "groups": _mapping(settings.get("groups")),
        }  # fmt: skip

    # The connection ------------------------------------------------------------------

    def _where(self) -> str:
        return f"{self.settings['host']}:{self.settings['port']}"

    def _connect(self) -> imaplib.IMAP4:
        if self._client is not None:
            return self._client
        host, port, security = self.settings["host"], self.settings["port"], self.settings["security"]
        context = ssl.create_default_context(cafile=self.settings.get("cafile") or None)
        try:
            client: imaplib.IMAP4
            if security == "imaps":
                client = imaplib.IMAP4_SSL(host, port, ssl_context=context, timeout=TIMEOUT_S)
            else:
                client = imaplib.IMAP4(host, port, timeout=TIMEOUT_S)
                if security == "starttls":
                    client.starttls(ssl_context=context)
        except (OSError, imaplib.IMAP4.error) as exc:
            raise SourceError(f"Cannot reach the IMAP server {self._where()} ({security}): {exc}") from None
        if not self.password:
            raise SourceError("The IMAP connector has no password: store one with --secret-env or --secret-prompt.")
        try:
            client.login(self.settings["user"], self.password)
        except imaplib.IMAP4.error as exc:
            raise SourceError(
                f"The IMAP server {self._where()} refused the login of '{self.settings['user']}': "
                f"{exc.args[0] if exc.args else exc}"
            ) from None
        except OSError as exc:
            raise SourceError(f"The IMAP server {self._where()} closed the connection at the login: {exc}") from None
        self._client = client
        return client

    def close(self) -> None:
        if self._client is not None:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                self._client.logout()
            self._client = None
            self._selected = None

    def __del__(self) -> None:
        self.close()

    def _command(self, name: str, *args: Any) -> list[Any]:
        try:
            return self._command_once(name, *args)
        except _Broken as broken:
            # A dropped connection (a server restart, an idle timeout on the way) is tried
            # once more on a new one, in the folder that was selected; a second break ends
            # the listing (the sync changes nothing) or fails the item being read.
            selected, self._selected = self._selected, None
            logger.warning("IMAP connection to %s broke (%s); connecting again", self._where(), broken)
            try:
                if selected is not None and name != "select":
                    self._command_once("select", _quoted(selected[0]), True)
                    if self._validity() != selected[1]:
                        raise SourceError(f"The IMAP folder {selected[0]} was renumbered while it was read.")
                    self._selected = selected
                return self._command_once(name, *args)
            except _Broken as again:
                raise SourceError(
                    f"The IMAP connection to {self._where()} broke, and again after connecting anew: {again}"
                ) from None

    def _command_once(self, name: str, *args: Any) -> list[Any]:
        client = self._connect()
        try:
            status, data = getattr(client, name)(*args)
        except (OSError, imaplib.IMAP4.abort) as exc:
            self._client = None
            with contextlib.suppress(OSError, ValueError):
                client.shutdown()
            raise _Broken(str(exc) or type(exc).__name__) from None
        except imaplib.IMAP4.error as exc:
            raise SourceError(f"The IMAP server refused {name.upper()}: {exc}") from None
        if status != "OK":
            raise SourceError(f"The IMAP server answered {name.upper()} with {status}: {data!r}")
        return list(data)

    def _validity(self) -> str:
        _, validity = self._connect().response("UIDVALIDITY")
        return validity[-1].decode() if validity and validity[-1] else ""

    # Folders -------------------------------------------------------------------------

    def _folders(self) -> list[str]:
        """The folders to read, as shown (``/`` between levels), each mapped to its raw name."""
        self._raw = {}
        for line in self._command("list", '""', "*"):
            if not isinstance(line, bytes):
                continue
            match = _LIST_LINE.match(line)
            if match is None:
                continue
            if b"\\noselect" in match.group("flags").lower() or b"\\nonexistent" in match.group("flags").lower():
                continue
            raw = _unquote(match.group("name"))
            delimiter = _unquote(match.group("delimiter")) if match.group("delimiter") != b"NIL" else ""
            shown = utf7_decode(raw)
            if delimiter and delimiter != "/":
                shown = shown.replace(delimiter, "/")
            self._raw[shown] = raw
        wanted = {f for f in self.settings["folders"] if f in self._raw}
        missing = [f for f in self.settings["folders"] if f not in self._raw]
        if missing:
            raise SourceError(f"The mailbox has no folder {', '.join(repr(f) for f in missing)}.")
        if self.settings["include"]:
            wanted |= {f for f in self._raw if first_match(self.settings["include"], f)}
        return sorted(f for f in wanted if first_match(self.settings["exclude"], f) is None)

    def _select(self, folder: str) -> tuple[str, int]:
        """Open ``folder`` read-only: its UIDVALIDITY and how many messages it holds."""
        raw = self._raw[folder]
        exists = self._command("select", _quoted(raw), True)
        count = int(exists[-1]) if exists and exists[-1] else 0
        value = self._validity()
        if not value:
            raise SourceError(f"The IMAP server gave no UIDVALIDITY for {folder}.")
        self._selected = (raw, value)
        return value, count

    # The source ----------------------------------------------------------------------

    def list_items(self) -> Iterator[SourceItem]:
        items: list[SourceItem] = []
        for folder in self._folders():
            validity, count = self._select(folder)
            if not count:
                continue
            for line in self._command("uid", "FETCH", "1:*", "(UID RFC822.SIZE FLAGS)"):
                if isinstance(line, tuple):
                    line = line[0]
                if not isinstance(line, bytes):
                    continue
                found: dict[str, Any] = {}
                for uid, size, flags in _FETCH_LINE.findall(line):
                    found.update({k: v for k, v in (("uid", uid), ("size", size), ("flags", flags)) if v})
                if "uid" not in found or b"\\deleted" in found.get("flags", b"").lower():
                    continue  # flagged for deletion: as good as expunged
                uid = int(found["uid"])
                size = int(found.get("size") or 0)
                items.append(
                    SourceItem(
                        source_id=f"{folder}/{validity}/{uid}", name=f"message-{uid}.eml",
                        link=self._link(folder, validity, uid), version=f"size:{size}", size=size,
                        extra={"folder": folder, "uidvalidity": validity, "uid": uid, "owner": self.settings["user"]},
                    )
                )  # fmt: skip
        items.sort(key=lambda i: i.source_id)
        yield from items

    def _link(self, folder: str, validity: str, uid: int) -> str:
        """An IMAP URL (RFC 5092) of the message, as mail clients open it."""
        port = "" if self.settings["port"] == 143 else f":{self.settings['port']}"
        user = quote(self.settings["user"], safe="")
        return (
            f"imap://{user}@{self.settings['host']}{port}/{quote(self._raw.get(folder, folder), safe='/')}"
            f";UIDVALIDITY={validity}/;UID={uid}"
        )

    def open_item(self, item: SourceItem) -> AbstractContextManager[IO[bytes]]:
        folder, validity, uid = item.extra["folder"], item.extra["uidvalidity"], item.extra["uid"]
        limit = django_settings.MAX_UPLOAD_BYTES
        if item.size > limit:  # the sync would refuse it after reading: not fetched at all
            raise ItemError(f"The file is larger than the upload limit of {limit // (1024 * 1024)} MB.")
        try:
            if not self._raw:
                self._folders()
            if folder not in self._raw:
                raise ItemError(f"The folder {folder} was removed since the listing.")
            if (self._selected or ("", ""))[0] != self._raw[folder]:
                self._select(folder)
            if self._selected != (self._raw[folder], validity):
                raise ItemError(f"The folder {folder} was renumbered since the listing; the next sync reads it again.")
            data = self._command("uid", "FETCH", str(uid), "(BODY.PEEK[])")
        except SourceError as exc:
            raise ItemError(str(exc)) from None
        message = next((part[1] for part in data if isinstance(part, tuple) and len(part) > 1), None)
        if not isinstance(message, bytes):
            raise ItemError(f"The message {uid} in {folder} is no longer there.")
        item.extra["name"] = _subject_name(message, f"message-{uid}")
        return io.BytesIO(message)

    def access(self, item: SourceItem) -> list[str]:
        for entry in self.mapping:
            if glob_matches(entry["glob"], item.extra["folder"]):
                groups: list[str] = entry["groups"]
                return [EVERYONE] if EVERYONE in groups else sorted(set(groups))
        return []


def _quoted(name: str) -> str:
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
