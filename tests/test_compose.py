"""Checks of compose.yaml, the production stack, and .env.example, without Docker.

This machine's Docker has no compose plugin (``docker compose version`` fails), so
``docker compose config`` cannot run here: the file is read with PyYAML (which
resolves the anchors and merge keys) and its ``${VAR...}`` references are expanded
the way Docker Compose does, with an environment given by each test, so that URLs,
ports, queue and model names are checked as the containers will see them. The result
is then validated against the Compose Specification by its parser (``compose-spec``,
bindings of the Rust ``compose_spec`` crate): what ``docker compose config`` refuses
(an unknown key, a bad restart policy, port or dependency condition, a volume used by
several services but not declared) fails here too.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from ingest.pgvector_store import MIN_VERSION

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "compose.yaml"
WORKERS = ("worker-ingest", "worker-index", "worker-connectors", "worker-default")
APP_SERVICES = ("web", *WORKERS, "beat")
SERVICES = {*APP_SERVICES, "postgres", "redis", "vllm"}
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


def _validated(compose: dict[str, Any]) -> Any:
    from compose_spec import PyCompose

    parsed = PyCompose.from_json(json.dumps(compose))
    parsed.validate()  # every network, volume, config and secret a service uses is declared
    return parsed


def test_the_file_is_valid_under_the_compose_specification(compose: dict[str, Any]) -> None:
    assert set(_validated(compose).service_names()) == SERVICES


@pytest.mark.parametrize(
    ("mistake", "refused"),
    [
        (lambda s: s["web"].update(healthchek=s["web"].pop("healthcheck")), "healthchek"),
        (lambda s: s["web"].update(restart="sometimes"), "sometimes"),
        (lambda s: s["web"].update(ports=["127.0.0.1:web:8000"]), "web"),
        (lambda s: s["web"].update(depends_on={"postgres": {"condition": "service_ready"}}), "service_ready"),
        (lambda s: s["vllm"]["deploy"]["resources"]["reservations"]["devices"][0].update(count="many"), "many"),
    ],
    ids=["unknown key", "restart policy", "port", "dependency condition", "gpu count"],
)
def test_the_specification_check_refuses_what_compose_refuses(
    compose: dict[str, Any], mistake: Any, refused: str
) -> None:
    broken = copy.deepcopy(compose)
    mistake(broken["services"])
    with pytest.raises(ValueError, match=refused):
        _validated(broken)


def test_defines_the_services(services: dict[str, Any]) -> None:
    assert set(services) == SERVICES


def test_every_service_restarts_unless_stopped(services: dict[str, Any]) -> None:
    assert {name: s.get("restart") for name, s in services.items()} == dict.fromkeys(SERVICES, "unless-stopped")


def test_every_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name in SERVICES:
        healthcheck = services[name].get("healthcheck", {})
        test = healthcheck.get("test")
        assert isinstance(test, list), f"{name} has no healthcheck"
        assert test[0] in ("CMD", "CMD-SHELL"), f"{name}: {test}"
        assert not healthcheck.get("disable"), name
        for key in ("interval", "timeout", "start_period"):
            assert duration_seconds(healthcheck[key]) > 0, f"{name}: {key}"


def test_web_healthcheck_probes_readyz_on_the_served_port(services: dict[str, Any]) -> None:
    probe = services["web"]["healthcheck"]["test"]
    assert probe[1:5] == ["python", "manage.py", "healthcheck", "web"]
    assert probe[probe.index("--url") + 1] == "http://127.0.0.1:8000/readyz"
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


def test_app_services_share_one_build_and_image(raw: dict[str, Any]) -> None:
    builds = {id(raw["services"][name]["build"]) for name in APP_SERVICES}
    assert len(builds) == 1, "build should be one YAML anchor"
    assert {raw["services"][name]["image"] for name in APP_SERVICES} == {"assistant:latest"}


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


def test_workers_serve_metrics_on_the_stack_network_without_publishing_a_port(
    raw: dict[str, Any], services: dict[str, Any]
) -> None:
    # Bound to the container's loopback a worker's metrics would reach no Prometheus;
    # on every interface of its container they reach the stack's network, and no more.
    for name in WORKERS:
        assert services[name]["environment"]["METRICS_ADDR"] == "0.0.0.0", name  # noqa: S104
        assert "ports" not in services[name], name
    pinned = interpolate(raw, {**OPERATOR_ENV, "METRICS_ADDR": "10.0.3.7"})["services"]
    assert pinned["worker-ingest"]["environment"]["METRICS_ADDR"] == "10.0.3.7"


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


def test_data_dir_is_a_volume_shared_by_web_and_workers(compose: dict[str, Any], services: dict[str, Any]) -> None:
    sources = set()
    for name in APP_SERVICES:
        data_dir = services[name]["environment"]["ASSISTANT_DATA_DIR"]
        sources.add(volume_mounts(services[name]).get(data_dir))
    assert len(sources) == 1
    (source,) = sources
    assert source in compose["volumes"]


def test_originals_are_a_volume_of_their_own_shared_by_web_and_workers(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    sources = set()
    for name in APP_SERVICES:
        environment = services[name]["environment"]
        originals = environment["ORIGINALS_DIR"]
        assert not originals.startswith(environment["ASSISTANT_DATA_DIR"] + "/")
        sources.add(volume_mounts(services[name]).get(originals))
    assert len(sources) == 1
    (source,) = sources
    assert source in compose["volumes"] and source != volume_mounts(services["web"])["/data"]
    # The image creates the mount point for its user, so a fresh volume is writable.
    assert "/originals" in services["web"]["build"]["dockerfile_inline"].split("chown assistant:assistant", 1)[1]


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
        "rm -rf /tmp/prometheus",
        "mkdir /tmp/prometheus",
        "exec python -m uvicorn assistant.asgi:application --host 0.0.0.0 --port 8000 --no-proxy-headers --workers 4",
    ]
    assert services["web"]["environment"]["PROMETHEUS_MULTIPROC_DIR"] == "/tmp/prometheus"


def test_web_workers_come_from_a_variable(raw: dict[str, Any]) -> None:
    web = interpolate(raw, {**OPERATOR_ENV, "WEB_WORKERS": "9"})["services"]["web"]
    assert command_words(web)[2].endswith("--workers 9")


# ---- Queues, commands and variables, checked against what the code reads ------------

WORKER_KINDS = {"worker-ingest": "ingest", "worker-index": "index", "worker-connectors": "connectors"}
WORKER_KINDS["worker-default"] = "default"
# Variables read outside assistant/settings.py, and where (checked below).
COMMAND_VARIABLES = {
    "ASSISTANT_ADMIN_USER": "assistant/accounts/management/commands/bootstrap_admin.py",
    "ASSISTANT_ADMIN_PASSWORD": "assistant/accounts/management/commands/bootstrap_admin.py",
    "ASSISTANT_HOST": "assistant/management/commands/serve.py",
    "ASSISTANT_PORT": "assistant/management/commands/serve.py",
}
ENTRY = re.compile(r"^(?:# )?([A-Z][A-Z0-9_]*)=(.*)$")


def settings_variables() -> set[str]:
    """Every environment variable assistant/settings.py reads through ``env``."""
    import ast

    tree = ast.parse((ROOT / "assistant" / "settings.py").read_text())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        target = func.value if isinstance(func, ast.Attribute) else func
        first = node.args[0]
        if isinstance(target, ast.Name) and target.id == "env" and isinstance(first, ast.Constant):
            names.add(str(first.value))
    return names


def compose_variables(raw: dict[str, Any]) -> set[str]:
    return {m["braced"] or m["bare"] for s in strings_in(raw) for m in REFERENCE.finditer(s) if not m["escaped"]}


def env_example() -> dict[str, str]:
    entries = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = ENTRY.match(line)
        if match:
            assert match[1] not in entries, f".env.example lists {match[1]} twice"
            entries[match[1]] = match[2]
    return entries


def option(words: list[str], name: str) -> str:
    assert name in words, f"{name} missing from {words}"
    return words[words.index(name) + 1]


def test_settings_reader_finds_the_variables() -> None:
    # The reader itself: it must see plain, typed and database reads.
    found = settings_variables()
    assert {"DATABASE_URL", "CELERY_BROKER_URL", "LLM_MODEL", "QUEUE_INGEST", "OIDC_RP_CLIENT_SECRET"} <= found
    assert len(found) > 100


def test_env_example_lists_every_variable_settings_read() -> None:
    missing = settings_variables() - set(env_example())
    assert not missing, f"read by assistant/settings.py but not in .env.example: {sorted(missing)}"


def test_env_example_lists_every_variable_compose_reads(raw: dict[str, Any]) -> None:
    missing = compose_variables(raw) - set(env_example())
    assert not missing, f"used by compose.yaml but not in .env.example: {sorted(missing)}"


def test_env_example_lists_nothing_nobody_reads(raw: dict[str, Any]) -> None:
    for name, path in COMMAND_VARIABLES.items():
        assert f'"{name}"' in (ROOT / path).read_text(), f"{path} no longer reads {name}"
    unknown = set(env_example()) - settings_variables() - compose_variables(raw) - set(COMMAND_VARIABLES)
    assert not unknown, f".env.example lists variables nothing reads: {sorted(unknown)}"


def test_env_example_explains_each_variable_and_leaves_secrets_empty() -> None:
    lines = (ROOT / ".env.example").read_text().splitlines()
    for number, line in enumerate(lines):
        match = ENTRY.match(line)
        if not match:
            continue
        above = lines[number - 1]
        assert above.startswith("# ") and not ENTRY.match(above), f"{match[1]} has no explanation above it"
        if re.search(r"(PASSWORD|SECRET|SECRET_KEY|TOKEN|API_KEY)$", match[1]):
            assert match[2] == "", f"{match[1]} has a value in .env.example"
    required = [m[1] for m in map(ENTRY.match, lines) if m and not m[0].startswith("#")]
    assert sorted(required) == sorted(REQUIRED_SECRETS)


def test_env_example_defaults_match_the_settings_defaults(settings: Any) -> None:
    # Spot checks of values the settings hold when the variable is unset.
    entries = env_example()
    assert entries["QUEUE_INGEST"] == "ingest" and entries["QUEUE_DEFAULT"] == "celery"
    assert int(entries["INGEST_TIME_LIMIT_S"]) == 2 * 3600
    assert int(entries["ASSISTANT_MAX_UPLOAD_BYTES"]) == 200 * 1024 * 1024
    assert float(entries["HEALTH_STALE_AFTER_S"]) == 60.0
    assert entries["LLM_MODEL"] == "smollm2-135m-instruct"


def test_every_variable_compose_sets_in_app_containers_is_read(services: dict[str, Any]) -> None:
    known = settings_variables() | set(COMMAND_VARIABLES)
    for name in APP_SERVICES:
        unknown = set(services[name]["environment"]) - known
        assert not unknown, f"{name} sets variables nothing reads: {sorted(unknown)}"


def test_app_services_read_the_operators_env_file(services: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        assert services[name]["env_file"] == [{"path": ".env", "required": False}], name


def test_one_worker_per_queue_consuming_the_settings_queues(services: dict[str, Any], settings: Any) -> None:
    consumed = {}
    for name, kind in WORKER_KINDS.items():
        words = command_words(services[name])
        assert words[:6] == ["python", "-m", "celery", "-A", "assistant", "worker"], name
        assert {"--without-gossip", "--without-mingle"} <= set(words)
        assert int(option(words, "--concurrency")) >= 1
        consumed[kind] = option(words, "--queues")
        assert option(words, "--hostname") == f"{kind}@%h"
    assert consumed == settings.TASK_QUEUES


def test_worker_healthchecks_check_their_own_node_and_queue(services: dict[str, Any], settings: Any) -> None:
    for name, kind in WORKER_KINDS.items():
        probe = services[name]["healthcheck"]["test"]
        assert probe[1:5] == ["python", "manage.py", "healthcheck", "worker"]
        assert option(probe, "--node") == option(command_words(services[name]), "--hostname")
        # A kind, which the command resolves to the configured name.
        assert option(probe, "--queue") == kind
        assert settings.TASK_QUEUES[kind] == option(command_words(services[name]), "--queues")


def test_queue_names_follow_the_variables_everywhere(raw: dict[str, Any]) -> None:
    renamed = {"QUEUE_INGEST": "parse", "QUEUE_INDEX": "idx", "QUEUE_CONNECTORS": "sync", "QUEUE_DEFAULT": "misc"}
    services = interpolate(raw, {**OPERATOR_ENV, **renamed})["services"]
    for name, kind in WORKER_KINDS.items():
        variable = "QUEUE_" + kind.upper()
        assert option(command_words(services[name]), "--queues") == renamed[variable]
    for name in APP_SERVICES:  # senders and consumers agree on the names
        assert {k: services[name]["environment"][k] for k in renamed} == renamed


def test_beat_is_its_own_single_service(services: dict[str, Any]) -> None:
    assert command_words(services["beat"]) == [
        "python",
        "-m",
        "celery",
        "-A",
        "assistant",
        "beat",
        "--loglevel",
        "INFO",
    ]
    assert services["beat"]["healthcheck"]["test"][1:] == ["python", "manage.py", "healthcheck", "beat"]
    assert not any(
        "--beat" in command_words(services[name]) or "-B" in command_words(services[name]) for name in WORKERS
    )
    assert "deploy" not in services["beat"], "beat must never be replicated"


def test_every_manage_py_command_of_the_stack_exists_and_parses_its_arguments(services: dict[str, Any]) -> None:
    from django.core.management import get_commands, load_command_class

    invocations = []
    for name in APP_SERVICES:
        words = command_words(services[name])
        steps = [shlex.split(step) for step in words[2].split("&&")] if words[:2] == ["sh", "-c"] else [words]
        invocations += [step for step in steps if step[:2] == ["python", "manage.py"]]
        invocations.append(services[name]["healthcheck"]["test"][1:])
    assert len(invocations) >= len(APP_SERVICES) + 3
    commands = get_commands()
    for words in invocations:
        assert words[:2] == ["python", "manage.py"], words
        assert words[2] in commands, f"no manage.py command {words[2]}"
        command = load_command_class(commands[words[2]], words[2])
        command.create_parser("manage.py", words[2]).parse_args(words[3:])  # exits on unknown arguments


def test_celery_subcommands_and_options_exist() -> None:
    from celery.bin.celery import celery

    assert {"worker", "beat"} <= set(celery.commands)
    worker_options = {opt for param in celery.commands["worker"].params for opt in param.opts}
    assert {
        "--queues",
        "--hostname",
        "--concurrency",
        "--without-gossip",
        "--without-mingle",
        "--loglevel",
    } <= worker_options


def test_postgres_is_the_official_pgvector_image_pinned_to_0_8_or_later(services: dict[str, Any]) -> None:
    """A version tag, not the floating ``pgN``: the pgvector engine needs 0.8's iterative scans."""
    repository, _, tag = services["postgres"]["image"].partition(":")
    assert repository == "pgvector/pgvector"
    match = re.fullmatch(r"(\d+)\.(\d+)\.(\d+)-pg(\d+)", tag)
    assert match, tag
    assert (int(match[1]), int(match[2])) >= MIN_VERSION, tag


def test_vllm_sizes_come_from_variables(raw: dict[str, Any]) -> None:
    env = {
        **OPERATOR_ENV,
        "VLLM_MAX_MODEL_LEN": "32768",
        "VLLM_GPU_MEMORY_UTILIZATION": "0.8",
        "VLLM_TENSOR_PARALLEL_SIZE": "4",
    }
    command = command_words(interpolate(raw, env)["services"]["vllm"])
    assert option(command, "--max-model-len") == "32768"
    assert option(command, "--gpu-memory-utilization") == "0.8"
    assert option(command, "--tensor-parallel-size") == "4"
    defaults = command_words(interpolate(raw, OPERATOR_ENV)["services"]["vllm"])
    assert option(defaults, "--tensor-parallel-size") == "1"
