"""A TCP relay on loopback that a test can cut: what a dropped connection looks like to a client.

Bytes go both ways unchanged between the client and a real server; ``cut()`` closes
every connection open at that moment (new ones are relayed again), as a server
restart or a firewall's idle timeout on the way does; with ``refuse`` set, every new
connection is closed at once (a server that stays away).
"""

from __future__ import annotations

import socket
import threading
from contextlib import suppress


class CuttableRelay:
    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.host, self.port = "127.0.0.1", self.listener.getsockname()[1]
        self.open: list[socket.socket] = []
        self.cuts = 0
        self.refuse = False
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self.refuse:
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            with self.lock:
                self.open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, target: socket.socket) -> None:
        with suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        for end in (source, target):
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)

    def cut(self) -> None:
        """Drop every connection open now."""
        with self.lock:
            dropped, self.open = self.open, []
            self.cuts += 1
        for end in dropped:
            with suppress(OSError):
                end.shutdown(socket.SHUT_RDWR)
            end.close()

    def close(self) -> None:
        self.listener.close()
        self.cut()
