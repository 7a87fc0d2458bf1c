"""End-to-end apply fixtures on the real lab: the sample monorepo as real git, artifacts really
published to the lab registry, services really run on both Docker engines (and native k3s).

Each test gets compose projects of its own (config.json is rewritten and pushed), so tests never
see each other's containers; teardown removes what the test's projects started.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import docker
import pytest
from kubernetes import client, config

from tests.conftest import Cli, require_lab
from tests.sample_repo import SampleRepo
from udeploy.engine.ci import artifact

REPO = Path(__file__).resolve().parents[2]
ENGINES = {"main-server": "unix:///run/udeploy-lab/main/docker.sock",
           "D601": "unix:///run/udeploy-lab/d601/docker.sock"}
COMPOSE_ROOTS = {"main-server": Path("/var/lib/udeploy-lab/hosts/main-server"),
                 "D601": Path("/var/lib/udeploy-lab/hosts/D601")}


@attrs.define
class Lab:
    """One test's slice of the lab: its compose projects, its state dir, its published artifacts."""

    sample: SampleRepo
    cli: Cli
    project: str
    state_dir: Path

    def publish(self, service: str, commit: str) -> dict[str, Any]:
        result = artifact.publish(self.sample.clone, service, commit)
        assert result["status"] in ("published", "already-published"), result
        return result

    def containers(self, host: str) -> dict[str, str]:
        """compose service -> container id, for this test's projects on `host`."""
        client = docker.DockerClient(base_url=ENGINES[host])
        try:
            out = {}
            for c in client.containers.list(all=True, filters={"label": "com.docker.compose.project"}):
                labels = c.labels
                if labels["com.docker.compose.project"].startswith(self.project):
                    out[labels["com.docker.compose.service"]] = c.id
            return out
        finally:
            client.close()

    def engine_snapshot(self) -> dict[str, Any]:
        """What udeploy could touch on both engines: this test's containers (id, state, image) and
        every sample image tag (other suites may use the lab's engines for their own containers)."""
        snap: dict[str, Any] = {}
        for host, url in ENGINES.items():
            client = docker.DockerClient(base_url=url)
            try:
                containers = client.containers.list(all=True, filters={"label": "com.docker.compose.project"})
                snap[host] = {
                    "containers": sorted((c.id, c.status, c.image.id) for c in containers
                                         if c.labels["com.docker.compose.project"].startswith(self.project)),
                    "images": sorted((t, i.id) for i in client.images.list() for t in i.tags if SAMPLE_IMAGE.match(t)),
                }
            finally:
                client.close()
        return snap

    def compose_dir(self, host: str, env: str = "prod") -> Path:
        return COMPOSE_ROOTS[host] / f"{self.project}-{env}"

    def write_secrets(self, values: dict[str, str], env: str = "prod") -> Path:
        d = self.compose_dir("main-server", env)
        d.mkdir(parents=True, exist_ok=True)
        path = d / "baidu-netdisk.secrets.env"
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
        return path

    def apply_args(self) -> list[str]:
        return ["--state-dir", str(self.state_dir)]


# Compose projects these tests (and the demo) create: they bind the sample's fixed loopback ports,
# so leftovers of an earlier run are removed before a test starts.
SAMPLE_IMAGE = re.compile(r"^(127\.0\.0\.1:5000/unidesk/|unidesk-|baidu-netdisk:)")
OURS = re.compile(r"^(t[0-9a-f]{6}-(prod|dev)|unidesk|unidesk-dev)$")


def remove_projects(match: Callable[[str], bool]) -> None:
    for url in ENGINES.values():
        client = docker.DockerClient(base_url=url)
        try:
            for c in client.containers.list(all=True, filters={"label": "com.docker.compose.project"}):
                if match(c.labels["com.docker.compose.project"]):
                    c.remove(force=True)
            # each project's `_default` network too: the engine has a bounded pool of subnets
            for n in client.networks.list(filters={"label": "com.docker.compose.project"}):
                if match(n.attrs.get("Labels", {}).get("com.docker.compose.project", "")):
                    n.remove()
        finally:
            client.close()


@pytest.fixture
def lab(sample: SampleRepo, cli: Cli, tmp_path: Path) -> Iterator[Lab]:
    require_lab("main-docker", "d601-docker", "registry", "sshd", "busybox-image")
    remove_projects(lambda name: bool(OURS.match(name)))
    project = "t" + secrets.token_hex(3)
    config = json.loads((sample.clone / "config.json").read_text())
    for m in config["microservices"]:
        for env, target in m["environments"].items():
            compose = (target.get("target") or {}).get("compose")
            if compose:
                compose["project"] = f"{project}-{env}"
    sample.commit_change("config.json", json.dumps(config, indent=2), f"test projects {project}")
    cli.env["UDEPLOY_STATE_DIR"] = str(tmp_path / "state")
    yield Lab(sample=sample, cli=cli, project=project, state_dir=tmp_path / "state")
    remove_projects(lambda name: name.startswith(project))


KUBECONFIG = "/var/lib/udeploy-lab/k3s/kubeconfig.yaml"


def delete_namespace(api: client.CoreV1Api, name: str) -> None:
    try:
        api.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status != 404:
            raise
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            api.read_namespace(name)
        except client.ApiException as exc:
            if exc.status == 404:
                return
        time.sleep(0.2)
    raise AssertionError(f"namespace {name} was not deleted")


@pytest.fixture
def empty_dev_namespace(lab: Lab) -> Iterator[client.CoreV1Api]:
    require_lab("k3s-containerd", "kubelab")
    api = client.CoreV1Api(config.new_client_from_config(config_file=KUBECONFIG))
    delete_namespace(api, "unidesk-dev")
    yield api
    delete_namespace(api, "unidesk-dev")
