"""A small OpenID Connect provider on 127.0.0.1, for single sign-on tests.

It speaks real HTTP: an authorization endpoint that signs a chosen person in and
redirects back with a code, a token endpoint (authorization code and refresh
token grants, refresh tokens rotated), a JWKS endpoint and a userinfo endpoint. ID
tokens are RS256-signed with a key made for each provider. Tests change people's
groups, disable them or take the provider down, and count the calls it received.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa


class IdentityProvider:
    def __init__(self, *, client_id: str = "assistant", client_secret: str = "sso-client-secret") -> None:  # noqa: S107
        self.client_id = client_id
        self.client_secret = client_secret
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = secrets.token_hex(4)
        self.people: dict[str, dict[str, Any]] = {}  # subject -> claims
        self.disabled: set[str] = set()
        self.down = False
        self.audience = client_id  # the "aud" of the ID tokens it signs
        self.calls: Counter[str] = Counter()
        self.issued_refresh_tokens: list[str] = []
        self._codes: dict[str, tuple[str, str, str]] = {}  # code -> (subject, nonce, redirect_uri)
        self._refresh: dict[str, str] = {}  # refresh token -> subject
        self._access: dict[str, str] = {}  # access token -> subject
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}/realms/corp"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> IdentityProvider:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def endpoint(self, name: str) -> str:
        return f"{self.issuer}/{name}"

    def person(self, subject: str, **claims: Any) -> None:
        """Add or replace a person at the provider."""
        self.people[subject] = {"sub": subject, **claims}

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    # --- What the endpoints answer -----------------------------------------------

    def _tokens(self, subject: str, nonce: str | None) -> dict[str, Any]:
        now = int(time.time())
        claims = {"iss": self.issuer, "sub": subject, "aud": self.audience, "iat": now, "exp": now + 300}
        if nonce is not None:
            claims["nonce"] = nonce
        id_token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        access, refresh = secrets.token_urlsafe(16), secrets.token_urlsafe(24)
        self._access[access] = subject
        self._refresh[refresh] = subject
        self.issued_refresh_tokens.append(refresh)
        return {"access_token": access, "refresh_token": refresh, "id_token": id_token, "token_type": "Bearer"}

    def _authorize(self, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        # The person signs in here; the test names them in login_hint.
        subject = query["login_hint"]
        if subject in self.disabled or subject not in self.people:
            return 200, {}, {"error": "this person cannot sign in"}
        code = secrets.token_urlsafe(12)
        self._codes[code] = (subject, query.get("nonce", ""), query["redirect_uri"])
        location = query["redirect_uri"] + "?" + urlencode({"code": code, "state": query["state"]})
        return 302, {"Location": location}, None

    def _token(self, form: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        if (form.get("client_id"), form.get("client_secret")) != (self.client_id, self.client_secret):
            return 401, {}, {"error": "invalid_client"}
        if form.get("grant_type") == "authorization_code":
            subject, nonce, redirect_uri = self._codes.pop(form.get("code", ""), ("", "", ""))
            if not subject or redirect_uri != form.get("redirect_uri"):
                return 400, {}, {"error": "invalid_grant", "error_description": "Code not valid"}
            return 200, {}, self._tokens(subject, nonce)
        if form.get("grant_type") == "refresh_token":
            subject = self._refresh.pop(form.get("refresh_token", ""), "")  # rotated: used once
            if not subject:
                return 400, {}, {"error": "invalid_grant", "error_description": "Token is not active"}
            if subject in self.disabled:
                return 400, {}, {"error": "invalid_grant", "error_description": "Account disabled"}
            return 200, {}, self._tokens(subject, None)
        return 400, {}, {"error": "unsupported_grant_type"}

    def _userinfo(self, authorization: str) -> tuple[int, dict[str, str], Any]:
        subject = self._access.get(authorization.removeprefix("Bearer "), "")
        if not subject or subject in self.disabled or subject not in self.people:
            return 401, {}, {"error": "invalid_token"}
        return 200, {}, self.people[subject]

    def _jwks(self) -> tuple[int, dict[str, str], Any]:
        jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        return 200, {}, {"keys": [{**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self, status: int, headers: dict[str, str], body: Any) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _route(self, form: dict[str, str]) -> None:
                url = urlsplit(self.path)
                name = url.path.rsplit("/", 1)[-1]
                provider.calls[name] += 1
                if provider.down:
                    self._answer(503, {}, {"error": "temporarily_unavailable"})
                    return
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                if name == "auth":
                    self._answer(*provider._authorize(query))
                elif name == "token":
                    self._answer(*provider._token(form))
                elif name == "userinfo":
                    self._answer(*provider._userinfo(self.headers.get("Authorization", "")))
                elif name == "certs":
                    self._answer(*provider._jwks())
                else:
                    self._answer(404, {}, {"error": "not_found"})

            def do_GET(self) -> None:
                self._route({})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
                self._route(form)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
