"""Configuration comes from the environment; the product keeps itself offline and
starts without loading the heavy ML stack."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

PROBE = """
import json, os, sys
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
import django
django.setup()
from django.conf import settings
import assistant.urls, assistant.asgi, ingest.tasks  # what the web process and worker import
print(json.dumps({
    "db": settings.DATABASES["default"]["ENGINE"],
    "db_name": str(settings.DATABASES["default"]["NAME"]),
    "broker": settings.CELERY_BROKER_URL,
    "llm": settings.LLM_BASE_URL,
    "llm_embedded": settings.LLM_EMBEDDED,
    "data_dir": str(settings.DATA_DIR),
    "env": {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "SCARF_NO_ANALYTICS", "DO_NOT_TRACK")},
    "heavy": sorted(m for m in ("torch", "sentence_transformers", "faiss", "unstructured", "transformers")
                    if m in sys.modules),
}))
"""


def probe(tmp_path: Path, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "LLM_BASE_URL")}
    clean.update(ASSISTANT_DATA_DIR=str(tmp_path), **env)
    out = subprocess.run([sys.executable, "-c", PROBE], env=clean, cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_embedded_defaults_live_in_the_data_dir(tmp_path: Path) -> None:
    config = probe(tmp_path)
    assert config["db"] == "django.db.backends.sqlite3"
    assert config["db_name"] == str(tmp_path / "db.sqlite3")
    assert config["broker"] == "filesystem://"
    assert (tmp_path / "broker" / "queue").is_dir()
    assert config["llm_embedded"] is True
    assert config["llm"].startswith("http://127.0.0.1:")


def test_environment_switches_to_production_services(tmp_path: Path) -> None:
    config = probe(
        tmp_path,
        DATABASE_URL="postgres://u:p@db.internal:5432/assistant",
        CELERY_BROKER_URL="redis://cache.internal:6379/0",
        LLM_BASE_URL="http://vllm.internal:8000/v1",
    )
    assert config["db"] == "django.db.backends.postgresql"
    assert config["broker"] == "redis://cache.internal:6379/0"
    assert config["llm"] == "http://vllm.internal:8000/v1"
    assert config["llm_embedded"] is False


def test_offline_switches_are_forced_even_against_the_environment(tmp_path: Path) -> None:
    config = probe(tmp_path, HF_HUB_OFFLINE="0", DO_NOT_TRACK="false")
    assert config["env"] == {"HF_HUB_OFFLINE": "1", "SCARF_NO_ANALYTICS": "true", "DO_NOT_TRACK": "true"}


def test_web_and_worker_start_without_the_ml_stack(tmp_path: Path) -> None:
    assert probe(tmp_path)["heavy"] == []


def test_fresh_data_dir_is_an_independent_instance(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL")}
    for name in ("one", "two"):
        data = tmp_path / name
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v0"],
            env={**env, "ASSISTANT_DATA_DIR": str(data)}, cwd=REPO, check=True,
        )  # fmt: skip
        assert (data / "db.sqlite3").exists()
        assert (data / "secret_key").stat().st_mode & 0o077 == 0
    assert (tmp_path / "one" / "secret_key").read_text() != (tmp_path / "two" / "secret_key").read_text()


REPLICA_PROBE = """
import json, os
os.environ.setdefault("DATABASE_URL", "sqlite:///x.sqlite3")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "assistant.settings")
from django.conf import settings
replica = settings.DATABASES.get("replica")
print(json.dumps({
    "aliases": sorted(settings.DATABASES),
    "routers": settings.DATABASE_ROUTERS,
    "replica": None if replica is None else {
        "host": replica["HOST"], "port": replica["PORT"], "mirror": replica["TEST"]["MIRROR"],
        "timeout": replica["OPTIONS"]["connect_timeout"],
    },
}))
"""


def _replica_probe(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DATABASE_")}
    clean.update(ASSISTANT_DATA_DIR=str(tmp_path), **env)
    return subprocess.run([sys.executable, "-c", REPLICA_PROBE], env=clean, cwd=REPO, capture_output=True, text=True)


def test_without_a_replica_url_there_is_one_database_and_no_router(tmp_path: Path) -> None:
    result = _replica_probe(tmp_path, DATABASE_URL="postgres://u:p@db.internal:5432/assistant")
    config = json.loads(result.stdout)
    assert config == {"aliases": ["default"], "routers": [], "replica": None}


def test_a_replica_url_adds_the_replica_and_its_router(tmp_path: Path) -> None:
    result = _replica_probe(
        tmp_path,
        DATABASE_URL="postgres://u:p@db.internal:5432/assistant",
        DATABASE_REPLICA_URL="postgres://u:p@replica.internal:5433/assistant",
    )
    config = json.loads(result.stdout)
    assert config["aliases"] == ["default", "replica"]
    assert config["routers"] == ["assistant.replica.ReplicaRouter"]
    # Tests read the test database's copy on the replica; a dead replica costs 2 s, not minutes.
    assert config["replica"] == {"host": "replica.internal", "port": 5433, "mirror": "default", "timeout": 2}


def test_a_replica_needs_a_postgresql_primary(tmp_path: Path) -> None:
    result = _replica_probe(
        tmp_path, DATABASE_URL="sqlite:///db.sqlite3", DATABASE_REPLICA_URL="postgres://u:p@replica.internal/assistant"
    )
    assert result.returncode != 0
    assert "DATABASE_REPLICA_URL needs DATABASE_URL to name a PostgreSQL primary" in result.stderr
