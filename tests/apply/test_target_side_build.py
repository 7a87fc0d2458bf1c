"""Local-manifest target-side build of `k3sctl-adapter` on the lab's D601 (B1, B3, B4, P4, P5, V1, V4).

`udeploy apply --file <deploy.json with only k3sctl-adapter> --service k3sctl-adapter`: D601 fetches
the repository itself, builds from `git archive` of the resolved commit, stamps, recreates and
verifies. D601 is a provider host: every fetch and build goes through its node-local egress proxy,
here `scripts/lablib/egress_proxy.py` started by the test on a free port (it forwards to loopback
only), and stops when that proxy does not answer.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import docker
import pytest

from tests.apply.conftest import COMPOSE_ROOTS, ENGINES, REPO, Lab
from udeploy.engine.load.catalog import Host
from udeploy.engine.provider_api import StepRequest
from udeploy.providers.compose_build import PROXY_VARIABLES
from udeploy.providers.compose_host import ComposeHostProvider

ADAPTER = "k3sctl-adapter"
ADAPTER_DIR = "src/components/microservices/k3sctl-adapter"
IMAGE = "unidesk-k3sctl-adapter"
BUILD_BASE = f"{IMAGE}-build-base"
BASE_ARG = "K3SCTL_ADAPTER_BASE_IMAGE"
PROBE_URL = "http://127.0.0.1:5000/v2/"
HEALTH_PORT = 18293
# What a build must never leave behind on the machine (B3): Docker daemon/CLI config, shell profiles.
WATCHED = [Path("/etc/docker"), Path.home() / ".docker", Path("/etc/profile"), Path("/etc/profile.d"),
           Path("/etc/environment"), Path.home() / ".profile", Path.home() / ".bashrc",
           Path("/var/lib/udeploy-lab/etc/d601-daemon.json")]


@attrs.define
class EgressProxy:
    """scripts/lablib/egress_proxy.py as a subprocess of the test, on a port of its own."""

    log: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        before = self.lines()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, str(REPO / "scripts" / "lablib" / "egress_proxy.py"),
                                          "--port", str(self.port)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = [m for line in self.lines()[len(before):] if (m := re.search(r"listening=[\d.]+:(\d+)", line))]
            if found:
                self.port = int(found[0].group(1))
                return
            assert self.proc.poll() is None, f"egress proxy exited: {self.log.read_text()}"
            time.sleep(0.05)
        pytest.fail(f"egress proxy did not start: {self.log.read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []

    def requests(self) -> list[str]:
        return [line for line in self.lines() if line.startswith("egress_proxy method=")]


@pytest.fixture
def egress_proxy(tmp_path: Path) -> Iterator[EgressProxy]:
    proxy = EgressProxy(log=tmp_path / "egress-proxy.log")
    proxy.start()
    yield proxy
    proxy.stop()


@attrs.define
class Adapter:
    """The test's local-manifest setup: its own compose project on D601 and a deploy file."""

    lab: Lab
    proxy: EgressProxy
    project: str
    commit: str
    deploy_file: Path

    @property
    def project_dir(self) -> Path:
        return COMPOSE_ROOTS["D601"] / self.project

    def apply(self, *args: str) -> Any:
        return self.lab.cli("apply", "--file", str(self.deploy_file), "--service", ADAPTER, *args,
                            *self.lab.apply_args())

    def job_log(self, job_id: str) -> str:
        return (self.lab.state_dir / "jobs" / job_id / "log").read_text()


def _d601() -> docker.DockerClient:
    return docker.DockerClient(base_url=ENGINES["D601"], timeout=120)


def _remove_adapter_images() -> None:
    client = _d601()
    try:
        for image in client.images.list():
            for tag in image.tags:
                if tag.startswith(f"{IMAGE}:") or tag.startswith(f"{BUILD_BASE}:"):
                    client.images.remove(tag, force=True)
    finally:
        client.close()


def _mirror_dirs() -> set[Path]:
    src = COMPOSE_ROOTS["D601"] / ".udeploy" / "src"
    return set(src.iterdir()) if src.exists() else set()


@pytest.fixture
def adapter(lab: Lab, egress_proxy: EgressProxy) -> Iterator[Adapter]:
    """k3sctl-adapter in a compose project of this test, built FROM a declared warm-base argument; D601's
    egress proxy is the test's; a deploy file listing only k3sctl-adapter in prod, pinned to HEAD."""
    sample = lab.sample
    _remove_adapter_images()
    mirrors = _mirror_dirs()
    project = f"{lab.project}-local"
    config = json.loads((sample.clone / "config.json").read_text())
    config["hosts"]["D601"].update(egressProxy=egress_proxy.url, egressProbeUrl=PROBE_URL)
    ms = next(m for m in config["microservices"] if m["id"] == ADAPTER)
    ms["localMode"]["compose"]["project"] = project
    ms["localMode"]["buildBaseArg"] = BASE_ARG
    sample.commit_change("config.json", json.dumps(config, indent=2), f"local project {project}, test egress proxy")
    dockerfile = (sample.clone / ADAPTER_DIR / "Dockerfile").read_text()
    dockerfile = dockerfile.replace("FROM unidesk-lab/busybox:latest",
                                    f"ARG {BASE_ARG}=unidesk-lab/busybox:latest\nFROM ${{{BASE_ARG}}}")
    commit = sample.commit_change(f"{ADAPTER_DIR}/Dockerfile", dockerfile, "k3sctl-adapter: warm build base")
    entry = {"id": ADAPTER, "repo": sample.url, "commitId": sample.short(commit)}
    deploy_file = sample.workdir / "adapter-local.json"
    deploy_file.write_text(json.dumps({"schemaVersion": 2, "environments": {"prod": {"services": [entry]}}}))
    yield Adapter(lab=lab, proxy=egress_proxy, project=project, commit=commit, deploy_file=deploy_file)
    _remove_adapter_images()
    shutil.rmtree(COMPOSE_ROOTS["D601"] / project, ignore_errors=True)
    for created in _mirror_dirs() - mirrors:
        shutil.rmtree(created, ignore_errors=True)


def _snapshot(paths: list[Path]) -> dict[str, Any]:
    """Every file under `paths`: content hash and mode (absent paths recorded as absent)."""
    found: dict[str, Any] = {}
    for root in paths:
        if not root.exists():
            found[str(root)] = "absent"
            continue
        for p in [root] if root.is_file() else sorted(x for x in root.rglob("*") if x.is_file()):
            found[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mode)
    return found


def _log_values(log: str, key: str) -> list[str]:
    return re.findall(rf"^\s*\|?\s*{re.escape(key)}=(.*)$", log, flags=re.MULTILINE)


def _container(project: str) -> Any:
    client = _d601()
    found = client.containers.list(filters={"label": [f"com.docker.compose.project={project}",
                                                      f"com.docker.compose.service={ADAPTER}"]})
    assert len(found) == 1, found
    return found[0]


@pytest.mark.req("B1")
@pytest.mark.req("B3")
@pytest.mark.req("B4")
@pytest.mark.req("P5")
@pytest.mark.req("V1")
@pytest.mark.req("V4")
def test_B1_B3_B4_P5_local_manifest_target_side_build_of_k3sctl_adapter(adapter: Adapter) -> None:
    """B1: the context is `git archive` of the resolved commit fetched on D601 (the operator's dirty and
    untracked files never reach the image); V1 labels; V4 verify-live passes. B3: the job log has the
    proxy lines, the proxy saw the probes, nothing lasting is configured. B4: the second build uses the
    current image as cache, inline cache metadata and the declared warm build base."""
    sample, commit = adapter.lab.sample, adapter.commit
    committed_version = (sample.clone / ADAPTER_DIR / "VERSION").read_text()
    (sample.clone / ADAPTER_DIR / "VERSION").write_text("operator-dirty\n")  # dirty, uncommitted
    (sample.clone / ADAPTER_DIR / "OPERATOR-UNTRACKED").write_text("must never be built\n")
    watched, env_before = _snapshot(WATCHED), {k: os.environ.get(k) for k in PROXY_VARIABLES}

    dry = adapter.apply("--dry-run")  # O6: the same checks, the probes included; nothing is built
    assert dry.exit_code == 0, dry.stdout[-3000:] + dry.stderr[-3000:]
    assert _log_values(adapter.job_log(dry.json["jobId"]), "target_build_proxy_probe") == ["ok", "ok"]
    assert not _d601().images.list(name=IMAGE) and not adapter.lab.containers("D601")
    assert len(adapter.proxy.requests()) == 2

    r = adapter.apply()
    assert r.exit_code == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = r.json
    assert result["state"] == "succeeded"
    assert result["services"] == [{"id": ADAPTER, "commit": commit, "verified": True, "outcome": "deployed"}]
    assert list(result["nodes"]) == [f"{ADAPTER}/{k}" for k in
                                     ("export-source", "build-image", "stamp", "recreate", "verify-live")]
    log = adapter.job_log(result["jobId"])

    # B1: fetched and archived on the target, at the resolved commit; the operator's tree is not the context
    assert _log_values(log, "target_source_commit") == [commit]
    assert _log_values(log, "target_source_archive") == ["git-archive"]
    container = _container(adapter.project)
    listing = container.exec_run(["ls", "/srv"]).output.decode().split()
    assert "OPERATOR-UNTRACKED" not in listing and "serve.sh" in listing
    assert container.exec_run(["cat", "/srv/VERSION"]).output.decode() == committed_version
    build_dir = adapter.project_dir / ".build" / f"{ADAPTER}-{commit[:12]}"
    assert (build_dir / ADAPTER_DIR / "VERSION").read_text() == committed_version  # under the project dir
    assert not (build_dir / ADAPTER_DIR / "OPERATOR-UNTRACKED").exists()

    # V1 labels on the built image; V4 verify-live: labels, stamped env and health of the running container
    image = _d601().images.get(f"{IMAGE}:{commit}")
    assert {k: image.labels.get(k) for k in ("unidesk.ai/service-id", "unidesk.ai/source-repo",
                                              "unidesk.ai/source-commit", "unidesk.ai/dockerfile")} == {
        "unidesk.ai/service-id": ADAPTER, "unidesk.ai/source-repo": sample.url, "unidesk.ai/source-commit": commit,
        "unidesk.ai/dockerfile": f"{ADAPTER_DIR}/Dockerfile"}
    assert container.image.id == image.id
    assert f"done {ADAPTER}/verify-live" in log
    health = json.loads(container.exec_run(["cat", "/www/health"]).output)
    assert health["deploy"]["commit"] == commit and health["version"] == committed_version.strip()

    # B3: the three proxy lines, the proxy saw the probes, and the proxy lasts nowhere
    label = f"provider-gateway-ws-egress:{adapter.proxy.url}"
    assert _log_values(log, "target_source_proxy") == [label]
    assert _log_values(log, "target_build_proxy") == [label]
    assert _log_values(log, "target_build_proxy_probe") == ["ok", "ok"]  # before the fetch and before the build
    assert _log_values(log, "target_build_network") == ["host"]
    probes = [line for line in adapter.proxy.requests() if f"target={PROBE_URL} " in line]
    assert len(probes) == 4 and all("verdict=allowed status=200" in line for line in probes), adapter.proxy.lines()
    env = set(image.attrs["Config"].get("Env") or []) | set(container.attrs["Config"].get("Env") or [])
    assert not [e for e in env if e.split("=", 1)[0] in PROXY_VARIABLES]
    assert _snapshot(WATCHED) == watched
    assert {k: os.environ.get(k) for k in PROXY_VARIABLES} == env_before

    # B4: first build: no current image, no warm base yet; always inline cache metadata
    assert _log_values(log, "target_build_cache_from") == ["none"]
    assert _log_values(log, "target_build_cache_to") == ["type=inline"]
    assert _log_values(log, "target_build_base_image") == ["none"]

    # B4: a warm build base appears on the host; the next (forced) build uses it and the current image
    client = _d601()
    client.images.build(fileobj=io.BytesIO(b"FROM unidesk-lab/busybox:latest\nLABEL lab.warm-build-base=yes\n"),
                        tag=BUILD_BASE, rm=True)
    again = adapter.apply("--force")
    assert again.exit_code == 0, again.stdout[-3000:] + again.stderr[-3000:]
    log2 = adapter.job_log(again.json["jobId"])
    assert _log_values(log2, "target_build_cache_from") == [f"{IMAGE}:latest"]
    assert _log_values(log2, "target_build_cache_to") == ["type=inline"]
    assert _log_values(log2, "target_build_base_image") == [BUILD_BASE]
    rebuilt = client.images.get(f"{IMAGE}:{commit}")
    assert rebuilt.labels.get("lab.warm-build-base") == "yes"  # built FROM the warm base
    assert rebuilt.labels["unidesk.ai/source-commit"] == commit
    assert _container(adapter.project).image.id == rebuilt.id
    assert _snapshot(WATCHED) == watched


@pytest.mark.req("B3")
def test_B3_proxy_down_fails_before_fetch_or_build_without_fallback(adapter: Adapter) -> None:
    """With the node-local egress proxy down, nothing is fetched or built directly: the first target step
    fails on the probe and everything after it is skipped; a build-image step on its own fails the same way."""
    adapter.proxy.stop()
    r = adapter.apply()
    assert r.exit_code != 0
    result = r.json
    assert result["state"] == "failed"
    assert [f["node"] for f in result["failed"]] == [f"{ADAPTER}/export-source"]
    assert set(result["skipped"]) == {f"{ADAPTER}/{k}" for k in ("build-image", "stamp", "recreate", "verify-live")}
    log = adapter.job_log(result["jobId"])
    assert "no fallback to direct internet" in log
    assert _log_values(log, "target_build_proxy_probe")[0].startswith("failed")
    assert not (adapter.project_dir / ".build").exists()
    assert not _d601().images.list(name=IMAGE)
    assert not adapter.lab.containers("D601")

    # The build step itself also probes first: export with the proxy up, then build with it down.
    adapter.proxy.start()
    nodes = _plan_nodes(adapter)
    provider = _provider(adapter, "D601")
    try:
        def step(kind: str) -> Any:
            return provider.execute(StepRequest(nodes[kind]["id"], kind, ADAPTER, nodes[kind]["params"]))

        exported = step("export-source")
        assert exported.ok, exported.facts
        adapter.proxy.stop()
        built = step("build-image")
    finally:
        provider.close()
    assert not built.ok and "no fallback to direct internet" in built.message
    assert built.facts["log"][0] == f"target_build_proxy=provider-gateway-ws-egress:{adapter.proxy.url}"
    assert built.facts["log"][-1].startswith("target_build_proxy_probe=failed")
    assert not _d601().images.list(name=IMAGE)  # the build never started


@pytest.mark.req("B3")
def test_B3_main_server_builds_without_the_proxy(adapter: Adapter) -> None:
    """B3, last sentence: a main-server host builds directly: no probe, no proxy build args, its own network."""
    build = _plan_nodes(adapter)["build-image"]
    provider = _provider(adapter, "main-server")
    try:
        assert provider.build_proxy() is None
        dry = provider.execute(StepRequest(build["id"], "build-image", ADAPTER, build["params"], dry_run=True))
    finally:
        provider.close()
    assert dry.ok, dry.message
    assert dry.facts["log"][:2] == ["target_build_proxy=none", "target_build_network=default"]
    assert "target_build_cache_to=type=inline" in dry.facts["log"]
    assert "--network" not in dry.facts["command"] and "PROXY" not in dry.facts["command"].upper()
    assert not adapter.proxy.requests()


def _plan_nodes(adapter: Adapter) -> dict[str, Any]:
    """kind -> node of k3sctl-adapter's saved local-manifest plan."""
    plan = adapter.lab.sample.workdir / "plan.json"
    r = adapter.lab.cli("plan", "--file", str(adapter.deploy_file), "--service", ADAPTER, "-out", str(plan))
    assert r.exit_code == 0, r.stdout + r.stderr
    return {n["kind"]: n for n in json.loads(plan.read_text())["graph"]["nodes"]}


def _provider(adapter: Adapter, host_id: str) -> ComposeHostProvider:
    config = json.loads((adapter.lab.sample.clone / "config.json").read_text())
    settings = config["hosts"][host_id]
    return ComposeHostProvider.build(Host(host_id, "compose-host", host_id, settings["role"], settings), None)


@pytest.mark.req("P4")
def test_P4_local_manifest_refuses_reviewed_consumer_before_any_build(adapter: Adapter) -> None:
    """`apply --file` of a file listing backend-core is refused (exit 3) before any source materialization
    or build, pointing at the pull-only artifact path; k3sctl-adapter in the same file is not built either."""
    sample = adapter.lab.sample
    services = [{"id": s, "repo": sample.url, "commitId": sample.short(adapter.commit)}
                for s in ("backend-core", ADAPTER)]
    path = sample.workdir / "with-backend-core.json"
    path.write_text(json.dumps({"schemaVersion": 2, "environments": {"prod": {"services": services}}}))
    engines, mirrors = adapter.lab.engine_snapshot(), _mirror_dirs()
    r = adapter.lab.cli("apply", "--file", str(path), *adapter.lab.apply_args())
    assert r.exit_code == 3, r.stdout + r.stderr
    error = r.json["error"]
    assert error["path"] == "backend-core" and "P4" in json.dumps(error)
    assert "udeploy apply --env prod --service backend-core --commit <full-sha>" in error["message"]
    assert adapter.lab.engine_snapshot() == engines  # no image built, no container
    assert not adapter.project_dir.exists() and _mirror_dirs() == mirrors
    assert not adapter.proxy.requests()  # not even a probe
    assert not (adapter.lab.state_dir / "jobs").exists()
