"""A socket-level egress guard, installed at interpreter start.

Put this folder first on ``PYTHONPATH`` and set ``EGRESS_LOG`` (a file) and
``EGRESS_ALLOW`` (``host:port`` pairs separated by commas): every Python process
started with that environment, children included, then appends one JSON line per
network attempt to the log (``connect``, ``connect_ex``, ``sendto``,
``create_connection`` and name lookups, with host and port) and refuses any
attempt whose destination is not allowed. Unix-domain sockets are local and only
recorded.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import traceback
from typing import Any

_LOG = os.environ.get("EGRESS_LOG", "")
_ALLOW = {item.strip().lower() for item in os.environ.get("EGRESS_ALLOW", "").split(",") if item.strip()}
_LOOKUPS_ALLOWED = {"localhost", "127.0.0.1", "::1", "ip6-localhost", ""}
_lock = threading.Lock()


def _record(call: str, family: object, host: object, port: object, allowed: bool) -> None:
    entry = {
        "pid": os.getpid(),
        "call": call,
        "family": str(family),
        "host": None if host is None else str(host),
        "port": port if isinstance(port, int) or port is None else str(port),
        "allowed": allowed,
    }
    if not allowed:
        entry["stack"] = "".join(traceback.format_stack(limit=12)[:-2])
    with _lock, open(_LOG, "a", encoding="utf-8") as log:
        log.write(json.dumps(entry) + "\n")


def _split(address: object) -> tuple[object, object]:
    if isinstance(address, tuple) and len(address) >= 2:
        return address[0], address[1]
    return address, None


def _allowed(host: object, port: object) -> bool:
    name = str(host).lower().strip("[]")
    return f"{name}:{port}" in _ALLOW or (name in ("localhost",) and f"127.0.0.1:{port}" in _ALLOW)


def _check(call: str, sock: socket.socket, address: object) -> None:
    if sock.family == getattr(socket, "AF_UNIX", None):
        _record(call, "AF_UNIX", address, None, True)
        return
    host, port = _split(address)
    allowed = _allowed(host, port)
    _record(call, sock.family.name, host, port, allowed)
    if not allowed:
        raise ConnectionRefusedError(f"egress guard: connection to {host}:{port} is not allowed")


def install() -> None:
    original_connect = socket.socket.connect
    original_connect_ex = socket.socket.connect_ex
    original_sendto = socket.socket.sendto
    original_getaddrinfo = socket.getaddrinfo
    original_create_connection = socket.create_connection

    def connect(self: socket.socket, address: Any) -> None:
        _check("connect", self, address)
        return original_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check("connect_ex", self, address)
        return original_connect_ex(self, address)

    def sendto(self: socket.socket, data: bytes, *args: Any) -> int:
        address = args[-1]
        _check("sendto", self, address)
        return original_sendto(self, data, *args)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        allowed = str(name or "").lower() in _LOOKUPS_ALLOWED
        _record("getaddrinfo", None, name, port, allowed)
        if not allowed:
            raise socket.gaierror(socket.EAI_NONAME, f"egress guard: lookup of {name} is not allowed")
        return original_getaddrinfo(host, port, *args, **kwargs)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        host, port = address
        allowed = _allowed(host, port)
        _record("create_connection", None, host, port, allowed)
        if not allowed:
            raise ConnectionRefusedError(f"egress guard: connection to {host}:{port} is not allowed")
        return original_create_connection(address, *args, **kwargs)

    # setattr: the replacements take looser arguments than the stubs declare.
    setattr(socket.socket, "connect", connect)  # noqa: B010
    setattr(socket.socket, "connect_ex", connect_ex)  # noqa: B010
    setattr(socket.socket, "sendto", sendto)  # noqa: B010
    setattr(socket, "getaddrinfo", getaddrinfo)  # noqa: B010
    setattr(socket, "create_connection", create_connection)  # noqa: B010


if _LOG:
    install()
