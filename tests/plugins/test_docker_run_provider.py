"""An out-of-tree provider proves the provider boundary (issue 10, "Done when").

`tests/plugins/udeploy-docker-run` is a package a third party could write: its own pyproject.toml,
a `docker-run` entry point in `udeploy.providers`, and imports of udeploy's provider protocol,
errors and load-phase value types only. These tests pip-install it into the running interpreter,
point the sample's findjob dev target at a config.json host served by it, and drive the real
`udeploy` CLI on the lab's D601 engine: plan (verify-artifact + the plugin's chain), apply (a plain
`docker run` container, no Compose), verify live (V4), re-plan (noop), then a container restamped
outside udeploy is reported as drift and redeployed. The plugin is uninstalled afterwards.
"""

from __future__ import annotations

import ast
import importlib
import json
import secrets
import shutil
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import docker
import docker.errors
import pytest

from tests.conftest import Cli, require_lab
from tests.sample_repo import SampleRepo
from udeploy.engine.ci import artifact
from udeploy.engine.provider_api import ProviderNotFound, provider_class

PLUGIN = Path(__file__).resolve().parent / "udeploy-docker-run"
DISTRIBUTION = "udeploy-docker-run"
D601 = "unix:///run/udeploy-lab/d601/docker.sock"
SERVICE_LABEL = "io.udeploy.docker-run.service"  # the plugin's own label (read here as a user would)
HOST = "D601-docker-run"
SERVICE = "findjob"
# What a provider may import from udeploy: the protocol, the errors, and the load phase's value types.
ALLOWED = ("udeploy.engine.provider_api", "udeploy.engine.errors", "udeploy.engine.load")


def pip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True, timeout=300, check=False)


def forget_plugin() -> None:
    importlib.invalidate_caches()
    for name in [m for m in sys.modules if m == "udeploy_docker_run" or m.startswith("udeploy_docker_run.")]:
        del sys.modules[name]


@pytest.fixture(scope="module")
def plugin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The plugin pip-installed (from a copy: an in-tree build would leave build/ and egg-info in
    tests/), uninstalled afterwards."""
    pip("uninstall", "-y", DISTRIBUTION)  # a leftover of an interrupted run
    source = tmp_path_factory.mktemp("plugin") / DISTRIBUTION
    shutil.copytree(PLUGIN, source, ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    installed = pip("install", "--no-build-isolation", "--no-deps", "--quiet", str(source))
    assert installed.returncode == 0, installed.stdout + installed.stderr
    forget_plugin()
    try:
        yield
    finally:
        removed = pip("uninstall", "-y", DISTRIBUTION)
        forget_plugin()
        assert removed.returncode == 0, removed.stdout + removed.stderr
        with pytest.raises(ProviderNotFound):
            provider_class("docker-run")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def point_findjob_at_plugin(sample: SampleRepo, settings: dict[str, Any]) -> None:
    """config.json gains a docker-run host on D601's engine; findjob's dev target moves to it."""
    config = json.loads((sample.clone / "config.json").read_text())
    config["hosts"][HOST] = {"provider": "docker-run", "providerId": "D601", "docker": {"socket": D601}}
    (findjob,) = [m for m in config["microservices"] if m["id"] == SERVICE]
    findjob["environments"]["dev"] = {"consumerKind": "x-docker-run",
                                      "target": {"host": HOST, "settings": settings},
                                      "liveApply": {"mode": "enabled"}}
    sample.commit_change("config.json", json.dumps(config, indent=2) + "\n", "findjob dev: docker-run plugin")


@pytest.fixture
def container(plugin: None) -> Iterator[str]:
    """A container name of this test's own; every container of that name is removed afterwards."""
    require_lab("d601-docker", "registry", "busybox-image")
    name = f"udeploy-drun-{secrets.token_hex(3)}"
    yield name
    client = docker.DockerClient(base_url=D601)
    try:
        for c in client.containers.list(all=True, filters={"name": f"^/{name}$"}):
            c.remove(force=True)
    finally:
        client.close()


def inspect(name: str) -> dict[str, Any]:
    client = docker.DockerClient(base_url=D601)
    try:
        return client.api.inspect_container(name)  # type: ignore[no-any-return]
    finally:
        client.close()


def env_of(attrs: dict[str, Any]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in attrs["Config"]["Env"])


def health(port: int) -> dict[str, Any]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
        return json.loads(answer.read())  # type: ignore[no-any-return]


def plan(cli: Cli, path: Path) -> dict[str, Any]:
    r = cli("plan", "--env", "dev", "--service", SERVICE, "-out", str(path))
    assert r.exit_code == 0, r.stdout + r.stderr
    (item,) = r.json["services"]
    return {"item": item, "nodes": r.json["graph"]["nodes"]}


def test_plugin_imports_only_the_provider_protocol_errors_and_load_values() -> None:
    for module in sorted((PLUGIN / "udeploy_docker_run").glob("*.py")):
        for node in ast.walk(ast.parse(module.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            for name in names:
                if name == "udeploy" or name.startswith("udeploy."):
                    assert name.startswith(ALLOWED), f"{module.name} imports {name}"


def test_plan_apply_verify_noop_then_drift_through_the_installed_plugin(
        sample: SampleRepo, cli: Cli, container: str, tmp_path: Path) -> None:
    port = free_port()
    point_findjob_at_plugin(sample, {"container": container, "healthPort": port,
                                     "env": {"PORT": str(port), "LISTEN_ADDR": "127.0.0.1"}})
    cli.env["UDEPLOY_STATE_DIR"] = str(tmp_path / "state")
    state_dir = ["--state-dir", str(tmp_path / "state")]
    commit = sample.commits["frontend-v2"]  # the sample's dev pin
    image = f"127.0.0.1:5000/unidesk/{SERVICE}:{commit}"
    published = artifact.publish(sample.clone, SERVICE, commit)
    assert published["status"] in ("published", "already-published"), published

    # plan: the engine's verify-artifact, then the plugin's own chain, all on the plugin's host
    first = plan(cli, tmp_path / "plan.json")
    assert first["item"]["action"] == "deploy", first["item"]
    assert first["item"]["artifactConsumer"]["consumerKind"] == "x-docker-run"
    assert [n["id"] for n in first["nodes"]] == [f"{SERVICE}/verify-artifact", f"{SERVICE}/transfer-image",
                                                 f"{SERVICE}/recreate", f"{SERVICE}/verify-live"]
    assert {(n["provider"], n["host"]) for n in first["nodes"][1:]} == {("docker-run", HOST)}

    # a dry run reads and says what it would do, and starts nothing
    dry = cli("apply", "--env", "dev", "--service", SERVICE, "--dry-run", *state_dir)
    assert dry.exit_code == 0 and dry.json["dryRun"] is True, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert f"would run {image} as {container}" in dry.stderr
    with pytest.raises(docker.errors.NotFound):
        inspect(container)

    # apply: a plain container (no Compose labels), stamped (V2), verified live (V4)
    r = cli("apply", str(tmp_path / "plan.json"), *state_dir)
    assert r.exit_code == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.json["state"] == "succeeded" and [(s["id"], s["verified"]) for s in r.json["services"]] == [
        (SERVICE, True)]
    live = inspect(container)
    assert live["State"]["Status"] == "running" and live["Config"]["Image"] == image
    assert live["Config"]["Labels"][SERVICE_LABEL] == SERVICE
    assert not any(k.startswith("com.docker.compose.") for k in live["Config"]["Labels"])
    env = env_of(live)
    assert env["UNIDESK_DEPLOY_COMMIT"] == commit and env["UNIDESK_DEPLOY_SERVICE_ID"] == SERVICE
    assert health(port)["deploy"]["commit"] == commit

    # re-plan: what runs is what is wanted
    again = plan(cli, tmp_path / "again.json")
    assert again["item"]["action"] == "noop", again["item"]
    assert again["item"]["drift"] is None and again["nodes"] == []
    check = cli("check", "--env", "dev", "--service", SERVICE)
    assert check.exit_code == 0 and check.json["inSync"] is True, check.stdout

    # outside udeploy, someone restarts the same image under the same name with another stamp
    other = sample.commits["backend-core-v2"]
    client = docker.DockerClient(base_url=D601)
    try:
        client.containers.get(container).remove(force=True)
        client.containers.run(image, name=container, detach=True, network_mode="host",
                              labels={SERVICE_LABEL: SERVICE},
                              environment={**env, "UNIDESK_DEPLOY_COMMIT": other})
    finally:
        client.close()
    drifted = plan(cli, tmp_path / "drifted.json")
    assert drifted["item"]["action"] == "deploy", drifted["item"]
    assert "changed outside udeploy" in drifted["item"]["drift"] and other[:12] in drifted["item"]["drift"]
    assert other[:12] in drifted["item"]["reason"]

    # and the plan puts it back
    r = cli("apply", str(tmp_path / "drifted.json"), *state_dir)
    assert r.exit_code == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert env_of(inspect(container))["UNIDESK_DEPLOY_COMMIT"] == commit
    assert plan(cli, tmp_path / "healed.json")["item"]["action"] == "noop"


@pytest.mark.parametrize(("settings", "bad"), [
    ({"container": "ok", "healthPort": "18490"}, "healthPort"),
    ({"container": "no spaces allowed", "healthPort": 18490}, "container"),
    ({"container": "ok", "healthPort": 18490, "env": {"UNIDESK_DEPLOY_COMMIT": "x"}}, "env.UNIDESK_DEPLOY_COMMIT"),
])
def test_bad_target_settings_are_a_usage_error_naming_the_path(
        sample: SampleRepo, cli: Cli, plugin: None, settings: dict[str, Any], bad: str) -> None:
    point_findjob_at_plugin(sample, settings)
    r = cli("plan", "--env", "dev", "--service", SERVICE, "--no-refresh")
    assert r.exit_code == 1, r.stdout + r.stderr
    error = r.json["error"]
    assert error["code"] == "usage"
    assert error["path"] == f"config.json#microservices[{SERVICE}].environments.dev.target.settings.{bad}"


def test_a_host_without_a_docker_socket_is_refused_naming_the_path(
        sample: SampleRepo, cli: Cli, plugin: None) -> None:
    point_findjob_at_plugin(sample, {"container": "ok", "healthPort": 18490})
    config = json.loads((sample.clone / "config.json").read_text())
    del config["hosts"][HOST]["docker"]
    sample.commit_change("config.json", json.dumps(config, indent=2) + "\n", "docker-run host without a socket")
    r = cli("plan", "--env", "dev", "--service", SERVICE)
    assert r.exit_code == 1, r.stdout + r.stderr
    assert r.json["error"]["code"] == "usage" and r.json["error"]["path"] == f"hosts.{HOST}.docker.socket"
