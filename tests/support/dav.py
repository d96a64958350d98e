"""A real WebDAV server on loopback (WsgiDAV on cheroot) with one user and a password."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx

USER, PASSWORD = "alice", "wonderland-42"


class DavServer:
    def __init__(self, root: Path) -> None:
        from cheroot import wsgi
        from wsgidav.wsgidav_app import WsgiDAVApp

        self.root = root
        app = WsgiDAVApp({
            "provider_mapping": {"/dav": str(root)},
            "simple_dc": {"user_mapping": {"*": {USER: {"password": PASSWORD}}}},
            "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
            "verbose": 0,
            "logging": {"enable": False},
            "lock_storage": True,
            "property_manager": True,
        })  # fmt: skip
        self.server = wsgi.Server(("127.0.0.1", 0), app, numthreads=4)
        self.server.prepare()
        self.url = f"http://127.0.0.1:{self.server.bind_addr[1]}/dav/"
        self.thread = threading.Thread(target=self.server.serve, daemon=True)
        self.thread.start()

    def move(self, source: str, target: str) -> None:
        response = httpx.request(
            "MOVE", self.url + source, headers={"Destination": self.url + target}, auth=(USER, PASSWORD)
        )
        assert response.status_code in (201, 204), response.text

    def close(self) -> None:
        self.server.stop()
