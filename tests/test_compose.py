"""Checks of compose.yaml, the production stack, without Docker.

The file is read with PyYAML (which resolves the anchors and merge keys) and its
``${VAR...}`` references are expanded the way Docker Compose does, with an
environment given by each test, so that URLs, ports and model names are checked as
the containers will see them.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
SERVICES = {"web", "worker", "postgres", "redis", "vllm"}
APP_SERVICES = ("web", "worker")
# Variables that hold a secret: none may come with a default value.
REQUIRED_SECRETS = ("POSTGRES_PASSWORD", "DJANGO_SECRET_KEY", "ASSISTANT_ADMIN_PASSWORD")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|API_KEY")
HEALTH_CONDITIONS = {"service_started", "service_healthy", "service_completed_successfully"}

# The environment of an operator who filled in .env as the file's header asks.
OPERATOR_ENV = {
    "POSTGRES_PASSWORD": "pg-password-0123",
    "DJANGO_SECRET_KEY": "django-secret-0123",
    "ASSISTANT_ADMIN_PASSWORD": "admin-password-0123",
}

# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?error}, ${VAR?error}, ${VAR:+alt},
# ${VAR+alt}, $VAR and the escaped $$.
REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?+])(?P<arg>[^}]*))?\}"
    r"|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


class MissingVariableError(Exception):
    pass


def interpolate_string(value: str, env: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["braced"] or match["bare"]
        op, arg = match["op"], match["arg"] or ""
        current = env.get(name)
        is_set = current is not None
        is_filled = bool(current)
        if op in (":?", "?"):
            if not (is_filled if op == ":?" else is_set):
                raise MissingVariableError(f"{name}: {arg}")
            return str(current)
        if op in (":-", "-"):
            return str(current) if (is_filled if op == ":-" else is_set) else arg
        if op in (":+", "+"):
            return arg if (is_filled if op == ":+" else is_set) else ""
        return current or ""

    return REFERENCE.sub(replace, value)


def interpolate(node: Any, env: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return interpolate_string(node, env)
    if isinstance(node, list):
        return [interpolate(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolate(value, env) for key, value in node.items()}
    return node


def strings_in(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [s for item in node for s in strings_in(item)]
    if isinstance(node, dict):
        return [s for value in node.values() for s in strings_in(value)]
    return []


def duration_seconds(value: str) -> float:
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", value)
    assert parts and "".join(n + u for n, u in parts) == value, f"not a compose duration: {value!r}"
    return sum(float(number) * units[unit] for number, unit in parts)


def makefile_variable(name: str) -> str:
    match = re.search(rf"^{name} := (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match, f"{name} is not set in the Makefile"
    return match.group(1).strip()


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


@pytest.fixture(scope="module")
def compose(raw: dict[str, Any]) -> dict[str, Any]:
    """The file as Compose sees it for an operator who set only the required secrets."""
    return interpolate(raw, OPERATOR_ENV)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def command_words(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else list(command)


def volume_mounts(service: dict[str, Any]) -> dict[str, str]:
    """Container path -> source, for the short ``source:target[:mode]`` syntax."""
    mounts = {}
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        mounts[target] = source
    return mounts


def test_defines_the_five_services(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES


def test_every_service_restarts_unless_stopped(services: dict[str, Any]) -> None:
    assert {name: s.get("restart") for name, s in services.items()} == dict.fromkeys(SERVICES, "unless-stopped")


def test_every_service_but_the_worker_has_a_healthcheck(services: dict[str, Any]) -> None:
    # The worker deliberately has none: celery is its main process, so a dead worker
    # stops the container and the restart policy brings it back.
    for name in SERVICES - {"worker"}:
        test = services[name].get("healthcheck", {}).get("test")
        assert isinstance(test, list), f"{name} has no healthcheck"
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test}"
    assert "healthcheck" not in services["worker"]


def test_web_healthcheck_probes_healthz_on_the_served_port(services: dict[str, Any]) -> None:
    probe = " ".join(services["web"]["healthcheck"]["test"])
    assert "http://127.0.0.1:8000/healthz" in probe
    assert "--port 8000" in " ".join(command_words(services["web"]))


def test_web_healthcheck_host_is_allowed_whatever_the_operator_sets(raw: dict[str, Any]) -> None:
    env = {**OPERATOR_ENV, "DJANGO_ALLOWED_HOSTS": "assistant.example.com"}
    allowed = interpolate(raw, env)["services"]["web"]["environment"]["DJANGO_ALLOWED_HOSTS"].split(",")
    assert "assistant.example.com" in allowed
    assert "127.0.0.1" in allowed


def test_postgres_and_redis_healthchecks_use_their_own_clients(services: dict[str, Any]) -> None:
    assert services["postgres"]["healthcheck"]["test"][1] == "pg_isready"
    assert services["redis"]["healthcheck"]["test"][1:] == ["redis-cli", "ping"]


def test_vllm_healthcheck_probes_health_with_a_generous_start_period(services: dict[str, Any]) -> None:
    healthcheck = services["vllm"]["healthcheck"]
    assert "http://localhost:8000/health" in " ".join(healthcheck["test"])
    assert duration_seconds(healthcheck["start_period"]) >= 10 * 60


def test_web_and_worker_share_one_build_and_image(raw: dict[str, Any]) -> None:
    web, worker = raw["services"]["web"], raw["services"]["worker"]
    assert web["build"] is worker["build"], "build should be one YAML anchor"
    assert web["image"] == worker["image"] == "assistant:latest"


def test_image_is_built_inline_because_the_repository_has_no_dockerfile(services: dict[str, Any]) -> None:
    build = services["web"]["build"]
    assert "dockerfile" not in build
    assert build["context"] == "."
    assert build["dockerfile_inline"].startswith("FROM python:3.11-slim\n")
    assert not (ROOT / "Dockerfile").exists()


def test_inline_dockerfile_has_no_unescaped_dollar(raw: dict[str, Any]) -> None:
    # Compose would substitute it from the operator's environment before building.
    dockerfile = raw["services"]["web"]["build"]["dockerfile_inline"]
    assert "$" not in dockerfile.replace("$$", "")


def test_inline_dockerfile_installs_the_system_packages(services: dict[str, Any]) -> None:
    dockerfile = services["web"]["build"]["dockerfile_inline"]
    for package in ("tesseract-ocr", "poppler-utils", "libmagic1", "build-essential", "cmake"):
        assert re.search(rf"apt-get install [^\n]*\b{package}\b", dockerfile), package


def test_inline_dockerfile_pins_the_cpu_torch_of_pyproject(services: dict[str, Any]) -> None:
    dockerfile = services["web"]["build"]["dockerfile_inline"]
    assert '"torch==2.13.0"' in (ROOT / "pyproject.toml").read_text()
    torch_line = next(line for line in dockerfile.splitlines() if line.startswith("RUN pip install torch=="))
    assert torch_line.split()[:4] == ["RUN", "pip", "install", "torch==2.13.0"]
    assert "https://download.pytorch.org/whl/cpu" in torch_line
    # Before the project, so that its torch pin is already met by the CPU build.
    assert dockerfile.index(torch_line) < dockerfile.index("pip install -e .")


def test_inline_dockerfile_builds_llama_cpp_with_the_makefile_flags(services: dict[str, Any]) -> None:
    dockerfile = services["web"]["build"]["dockerfile_inline"]
    assert f'CMAKE_ARGS="{makefile_variable("LLAMA_CMAKE_ARGS")}"' in dockerfile
    assert f"llama-cpp-python[server]=={makefile_variable('LLAMA_VERSION')}" in dockerfile
    assert dockerfile.index("llama-cpp-python") < dockerfile.index("pip install -e .")


def test_inline_dockerfile_installs_the_no_deps_pins_of_the_makefile(services: dict[str, Any]) -> None:
    dockerfile = services["web"]["build"]["dockerfile_inline"]
    assert f"pip install --no-deps {makefile_variable('NO_DEPS_PINS')}" in dockerfile


def test_inline_dockerfile_copies_paths_that_exist(services: dict[str, Any]) -> None:
    dockerfile = services["web"]["build"]["dockerfile_inline"]
    copies = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    sources = [source for sources in copies for source in sources]
    assert {"pyproject.toml", "manage.py", "assistant", "ingest", "templates"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository"


def test_app_services_point_at_the_stack_services(services: dict[str, Any]) -> None:
    postgres_env = services["postgres"]["environment"]
    for name in APP_SERVICES:
        env = services[name]["environment"]
        database = urlsplit(env["DATABASE_URL"])
        assert database.scheme == "postgres"
        assert (database.hostname, database.port) == ("postgres", 5432)
        assert database.username == postgres_env["POSTGRES_USER"]
        assert database.password == postgres_env["POSTGRES_PASSWORD"] == OPERATOR_ENV["POSTGRES_PASSWORD"]
        assert database.path == "/" + postgres_env["POSTGRES_DB"]

        broker = urlsplit(env["CELERY_BROKER_URL"])
        assert (broker.scheme, broker.hostname, broker.port) == ("redis", "redis", 6379)

        llm = urlsplit(env["LLM_BASE_URL"])
        assert (llm.scheme, llm.hostname, llm.port, llm.path) == ("http", "vllm", 8000, "/v1")


def test_llm_model_is_the_name_vllm_serves_it_under(raw: dict[str, Any]) -> None:
    for env in (OPERATOR_ENV, {**OPERATOR_ENV, "LLM_MODEL": "acme-model"}):
        services = interpolate(raw, env)["services"]
        command = command_words(services["vllm"])
        served_name = command[command.index("--served-model-name") + 1]
        assert served_name == env.get("LLM_MODEL", "assistant-llm")
        for name in APP_SERVICES:
            assert services[name]["environment"]["LLM_MODEL"] == served_name


def test_vllm_model_is_chosen_by_an_environment_variable(raw: dict[str, Any]) -> None:
    for env, expected in (
        (OPERATOR_ENV, "Qwen/Qwen2.5-7B-Instruct"),
        ({**OPERATOR_ENV, "VLLM_MODEL": "org/m"}, "org/m"),
    ):
        command = command_words(interpolate(raw, env)["services"]["vllm"])
        assert command[command.index("--model") + 1] == expected


def test_secrets_have_no_defaults(raw: dict[str, Any]) -> None:
    references = [m for s in strings_in(raw) for m in REFERENCE.finditer(s) if m["braced"] or m["bare"]]
    secret_references = [m for m in references if SECRET_NAME.search(m["braced"] or m["bare"])]
    assert {m["braced"] for m in secret_references} >= set(REQUIRED_SECRETS)
    for match in secret_references:
        name = match["braced"] or match["bare"]
        if name in REQUIRED_SECRETS:
            assert match["op"] == ":?" and match["arg"], f"{match[0]} must be required (${{{name}:?message}})"
        else:  # an optional secret may be empty, never a value written in the file
            assert match["op"] in (None, ":-", "-") and not match["arg"], f"{match[0]} has a default"


def test_secret_settings_are_required_variables_not_values(raw: dict[str, Any]) -> None:
    settings = [("postgres", "POSTGRES_PASSWORD"), ("web", "ASSISTANT_ADMIN_PASSWORD")]
    settings += [(name, "DJANGO_SECRET_KEY") for name in APP_SERVICES]
    for service, variable in settings:
        value = raw["services"][service]["environment"][variable]
        assert re.fullmatch(rf"\$\{{{variable}:\?[^}}]+\}}", value), f"{service}: {variable}={value}"


@pytest.mark.parametrize("secret", REQUIRED_SECRETS)
@pytest.mark.parametrize("value", [None, ""], ids=["unset", "empty"])
def test_stack_refuses_to_start_without_each_secret(raw: dict[str, Any], secret: str, value: str | None) -> None:
    env = {k: v for k, v in OPERATOR_ENV.items() if k != secret}
    if value is not None:
        env[secret] = value
    with pytest.raises(MissingVariableError, match=secret):
        interpolate(raw, env)


def test_vllm_image_is_the_official_one_with_a_pinned_tag(services: dict[str, Any]) -> None:
    repository, _, tag = services["vllm"]["image"].partition(":")
    assert repository == "vllm/vllm-openai"
    assert re.fullmatch(r"v\d+\.\d+\.\d+", tag), f"tag {tag!r} is not a pinned release"


def test_every_pulled_image_has_a_tag_other_than_latest(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if "build" in service:
            continue
        _, _, tag = service["image"].rpartition(":")
        assert tag and "/" not in tag and tag != "latest", f"{name}: {service['image']}"


def test_vllm_requests_an_nvidia_gpu(services: dict[str, Any]) -> None:
    devices = services["vllm"]["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices)
    assert services["vllm"]["ipc"] == "host"


def test_vllm_runs_offline_and_without_telemetry_by_default(raw: dict[str, Any], services: dict[str, Any]) -> None:
    env = services["vllm"]["environment"]
    assert env["VLLM_NO_USAGE_STATS"] == "1"
    assert env["DO_NOT_TRACK"] == "1"
    assert env["HF_HUB_OFFLINE"] == "1"
    online = interpolate(raw, {**OPERATOR_ENV, "HF_HUB_OFFLINE": "0"})["services"]["vllm"]["environment"]
    assert online["HF_HUB_OFFLINE"] == "0"


def test_vllm_keeps_models_in_a_named_volume(compose: dict[str, Any], services: dict[str, Any]) -> None:
    cache = volume_mounts(services["vllm"])["/root/.cache/huggingface"]
    assert cache in compose["volumes"]


def test_vllm_is_not_published_to_the_host(services: dict[str, Any]) -> None:
    assert "ports" not in services["vllm"]


def test_only_web_publishes_a_port_on_loopback_and_it_is_configurable(
    raw: dict[str, Any], services: dict[str, Any]
) -> None:
    # Only the TLS proxy on the host reaches it: clients on the network cannot bypass
    # the proxy and write their own X-Forwarded-For.
    assert [name for name, s in services.items() if s.get("ports")] == ["web"]
    assert services["web"]["ports"] == ["127.0.0.1:8000:8000"]
    moved = interpolate(raw, {**OPERATOR_ENV, "ASSISTANT_PORT": "9443"})["services"]["web"]
    assert moved["ports"] == ["127.0.0.1:9443:8000"]


def test_app_services_run_in_production_mode_behind_one_proxy(raw: dict[str, Any], services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = services[name]["environment"]
        assert env["DJANGO_SECURE"] == "true"
        assert env["DJANGO_PROXY_COUNT"] == "1"
        assert env["DJANGO_SECURE_PROXY_SSL_HEADER"] == "X-Forwarded-Proto"
    two = interpolate(raw, {**OPERATOR_ENV, "DJANGO_PROXY_COUNT": "2"})["services"]["web"]["environment"]
    assert two["DJANGO_PROXY_COUNT"] == "2"


def test_the_web_server_leaves_forwarded_headers_to_the_application(services: dict[str, Any]) -> None:
    # uvicorn would otherwise believe X-Forwarded-For from its own trusted addresses,
    # beside DJANGO_PROXY_COUNT.
    assert "--no-proxy-headers" in " ".join(command_words(services["web"]))


def test_no_service_changes_the_network_mode(services: dict[str, Any]) -> None:
    assert [name for name, s in services.items() if "network_mode" in s] == []


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, Any]) -> None:
    declared = set(compose.get("volumes") or {})
    used = {
        source
        for service in services.values()
        for source in volume_mounts(service).values()
        if not source.startswith((".", "/", "~"))
    }
    assert used, "no named volume is used"
    assert used <= declared, f"undeclared: {used - declared}"
    assert declared <= used, f"declared but unused: {declared - used}"


def test_data_dir_is_a_volume_shared_by_web_and_worker(compose: dict[str, Any], services: dict[str, Any]) -> None:
    sources = set()
    for name in APP_SERVICES:
        data_dir = services[name]["environment"]["ASSISTANT_DATA_DIR"]
        sources.add(volume_mounts(services[name]).get(data_dir))
    assert len(sources) == 1
    (source,) = sources
    assert source in compose["volumes"]


def test_stateful_services_keep_their_data_in_volumes(compose: dict[str, Any], services: dict[str, Any]) -> None:
    assert volume_mounts(services["postgres"])["/var/lib/postgresql/data"] in compose["volumes"]
    assert volume_mounts(services["redis"])["/data"] in compose["volumes"]
    command = command_words(services["redis"])
    assert command[command.index("--appendonly") + 1] == "yes"


def test_depends_on_conditions_reference_existing_services(services: dict[str, Any]) -> None:
    for name, service in services.items():
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert spec["condition"] in HEALTH_CONDITIONS, f"{name} -> {dependency}: {spec}"
            if spec["condition"] == "service_healthy":
                assert "healthcheck" in services[dependency], f"{name} waits for {dependency}, which has no check"


def test_app_services_wait_for_healthy_postgres_and_redis_and_started_vllm(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        depends_on = services[name]["depends_on"]
        assert depends_on["postgres"]["condition"] == "service_healthy"
        assert depends_on["redis"]["condition"] == "service_healthy"
        assert depends_on["vllm"]["condition"] in ("service_started", "service_healthy")


def test_web_migrates_and_collects_static_before_serving(services: dict[str, Any]) -> None:
    command = command_words(services["web"])
    assert command[:2] == ["sh", "-c"]
    steps = [step.strip() for step in command[2].split("&&")]
    assert steps == [
        "python manage.py migrate --noinput",
        "python manage.py bootstrap_admin",
        "python manage.py collectstatic --noinput",
        "exec python -m uvicorn assistant.asgi:application --host 0.0.0.0 --port 8000 --no-proxy-headers",
    ]


def test_worker_runs_celery_for_the_assistant_app(services: dict[str, Any]) -> None:
    command = command_words(services["worker"])
    assert command[:6] == ["python", "-m", "celery", "-A", "assistant", "worker"]
    assert command[command.index("--concurrency") + 1] == "2"
    assert {"--without-gossip", "--without-mingle"} <= set(command)
