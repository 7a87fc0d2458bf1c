"""issue 9, security item 1 (D5): `udeploy validate` never runs the manifest's db-guard script on the host.

The script is pull-request content. Each test puts a hostile script into a copy of the sample's dev
foundation manifest (ConfigMap/unidesk-dev-db-guard, key db-guard.sh) and runs `validate` through
the CLI against the lab's main Docker engine, the operator's sandbox engine. What must hold: the
host is untouched, the script runs as a non-root user without network, a hang is cut off at the
timeout, a fork bomb hits the pids limit, no container is left behind, and an engine that cannot
run the guard is a D5 finding (exit 1), never a silent pass or a traceback.
"""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from typer.testing import CliRunner

from tests.validate.support import FIXTURE, K3S, break_manifest
from udeploy.engine.cli import app
from udeploy.providers.db_guard import LABEL, SandboxLimits

FOUNDATION = f"{K3S}/dev/unidesk-dev-foundation.k8s.yaml"
GUARD = "ConfigMap/unidesk-dev-db-guard"
TIMEOUT = SandboxLimits().timeout_s


@pytest.fixture
def engine(lab: dict[str, Any], require: Callable[..., None]) -> str:
    require("main-docker")
    return str(lab["main"]["docker_host"])


@pytest.fixture
def client(engine: str) -> Iterator[docker.DockerClient]:
    c = docker.DockerClient(base_url=engine)
    yield c
    c.close()


@pytest.fixture
def manifest(tmp_path: Path) -> Path:
    """A copy of the sample's dev foundation manifest, its own path per test."""
    path = tmp_path / "unidesk-dev-foundation.k8s.yaml"
    shutil.copy(FIXTURE / FOUNDATION, path)
    return path


def with_guard(manifest: Path, script: str) -> Path:
    break_manifest(manifest, [{"object": GUARD, "set": "data/db-guard.sh", "value": script}])
    return manifest


def validate(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict[str, Any], str]:
    result = CliRunner().invoke(app, ["validate", *args], env=env, catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout), result.stderr


def guard_of(doc: dict[str, Any]) -> dict[str, Any]:
    guard: dict[str, Any] = doc["manifests"][0]["dbGuard"]
    return guard


def d5_findings(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in doc["manifests"][0]["findings"] if f["rule"] == "D5"]


def leftover_containers(client: docker.DockerClient, manifest: Path) -> list[str]:
    return [c.name for c in client.containers.list(all=True, filters={"label": f"{LABEL}={manifest}"})]


def test_D5_issue9_sample_guard_runs_in_the_sandbox_dev_passes_production_is_refused(
        manifest: Path, engine: str, client: docker.DockerClient) -> None:
    code, doc, _ = validate("--manifest", str(manifest), "--sandbox-docker-host", engine)
    assert code == 0 and doc["ok"] is True, json.dumps(doc, indent=2)
    guard = guard_of(doc)
    assert guard["ran"] is True
    assert [(r["expect"], r["accepted"], r["timedOut"]) for r in guard["runs"]] == [
        ("accept", True, False), ("reject", False, False), ("reject", False, False), ("reject", False, False)]
    assert guard["runs"][0]["output"].startswith("db-guard: ok host=postgres-dev")
    sandbox = guard["sandbox"]
    assert sandbox["engine"] == engine
    assert re.fullmatch(r"udeploy/db-guard-sandbox:[0-9a-f]{16}", sandbox["image"])
    assert sandbox["limits"] == SandboxLimits().to_json()
    assert sandbox["limits"]["network"] == "none" and sandbox["limits"]["user"] == "65534:65534"
    # Built once per engine, then reused under the same content-hash tag.
    _, again, _ = validate("--manifest", str(manifest), "--sandbox-docker-host", engine)
    assert guard_of(again)["sandbox"]["image"] == sandbox["image"]
    assert client.images.get(sandbox["image"]).attrs["Config"]["User"] == "65534:65534"
    assert leftover_containers(client, manifest) == []


def test_D5_issue9_hostile_guard_writes_nothing_on_the_host_and_runs_unprivileged(
        manifest: Path, tmp_path: Path, engine: str, client: docker.DockerClient,
        monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "marker"
    tmp_marker = Path("/tmp") / f"udeploy-issue9-{uuid.uuid4().hex}"
    monkeypatch.setenv("UDEPLOY_ISSUE9_HOST_SECRET", "host-secret-value")
    with_guard(manifest, f"id -un > {marker}; id -u > {tmp_marker}; echo uid=$(id -u) gid=$(id -g)\n"
                         "touch /bin/pwned || echo rootfs-read-only\n"
                         "grep -E '^(CapEff|NoNewPrivs)' /proc/self/status\n"
                         "env | sed 's/^/env: /'\n")
    code, doc, stderr = validate("--manifest", str(manifest), "--sandbox-docker-host", engine)
    assert not marker.exists() and not tmp_marker.exists()  # the old host `sh` run wrote `root` here
    assert "Traceback" not in stderr
    guard = guard_of(doc)
    assert guard["ran"] is True and len(guard["runs"]) == 4
    for run in guard["runs"]:
        output = run["output"]
        assert "uid=65534 gid=65534" in output, output
        assert "rootfs-read-only" in output
        assert re.search(r"CapEff:\s+0+\n", output) and re.search(r"NoNewPrivs:\s+1", output)
        env = {line.split("=", 1)[0] for line in output.splitlines() if line.startswith("env: ")}
        assert "env: DATABASE_URL" in env and "env: GUARD" not in env
        assert "host-secret-value" not in output and "UDEPLOY_ISSUE9_HOST_SECRET" not in output
    # The script exits 0 for every URL, so D5 reports each production-looking URL it accepted.
    assert code == 1 and doc["ok"] is False
    assert [f["summary"] for f in d5_findings(doc)] == [
        f"db-guard.sh accepted the production-looking DATABASE_URL {r['databaseUrl']}" for r in guard["runs"][1:]]
    assert leftover_containers(client, manifest) == []


@pytest.fixture
def host_listener() -> Iterator[tuple[int, list[str]]]:
    """A TCP port open on every host address; records whoever connects."""
    server = socket.create_server(("0.0.0.0", 0))
    server.settimeout(0.2)
    accepted: list[str] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except TimeoutError:
                continue
            accepted.append(peer[0])
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def test_D5_issue9_hostile_guard_cannot_reach_the_network(
        manifest: Path, engine: str, client: docker.DockerClient, lab: dict[str, Any],
        host_listener: tuple[int, list[str]]) -> None:
    port, accepted = host_listener
    gateway = client.networks.get("bridge").attrs["IPAM"]["Config"][0]["Gateway"]
    registry = lab["registry"]["host"]  # 127.0.0.1:5000 on the host
    with socket.create_connection(("127.0.0.1", port), timeout=2):
        pass  # control: the listener is reachable from the host, and records it
    deadline = time.monotonic() + 5
    while not accepted and time.monotonic() < deadline:
        time.sleep(0.05)
    assert accepted == ["127.0.0.1"]
    accepted.clear()
    host, registry_port = registry.split(":")
    with_guard(manifest, f"for target in '127.0.0.1 {port}' '{gateway} {port}' '{host} {registry_port}'; do\n"
                         "  if nc -w 2 $target </dev/null; then echo \"reached $target\"; "
                         "else echo \"blocked $target\"; fi\ndone\n")
    code, doc, _ = validate("--manifest", str(manifest), "--sandbox-docker-host", engine)
    assert accepted == []
    for run in guard_of(doc)["runs"]:
        assert "reached" not in run["output"], run["output"]
        assert run["output"].count("blocked") == 3, run["output"]
        assert "Network is unreachable" in run["output"]  # no route at all to the host's bridge
    assert code == 1 and guard_of(doc)["ran"] is True
    assert leftover_containers(client, manifest) == []


def test_D5_issue9_hanging_guard_is_killed_at_the_timeout_and_removed(
        manifest: Path, engine: str, client: docker.DockerClient) -> None:
    with_guard(manifest, "echo started; sleep 600\n")
    began = time.monotonic()
    code, doc, stderr = validate("--manifest", str(manifest), "--sandbox-docker-host", engine)
    elapsed = time.monotonic() - began
    assert elapsed < TIMEOUT + 15, elapsed  # the cases run side by side: about one timeout, not four
    assert code == 1 and doc["ok"] is False and "Traceback" not in stderr
    runs = guard_of(doc)["runs"]
    assert [(r["timedOut"], r["exitCode"], r["accepted"]) for r in runs] == [(True, None, False)] * 4
    assert all(r["output"] == f"started\ndb-guard sandbox: timed out after {TIMEOUT}s, killed" for r in runs)
    assert [f["summary"] for f in d5_findings(doc)] == [
        f"db-guard.sh timed out on DATABASE_URL {r['databaseUrl']}" for r in runs]
    assert leftover_containers(client, manifest) == []


def test_D5_issue9_fork_bomb_hits_the_pids_limit(manifest: Path, engine: str, client: docker.DockerClient) -> None:
    with_guard(manifest, "i=0\nwhile [ $i -lt 500 ]; do sleep 60 & i=$((i+1)); echo \"forked $i\"; done\n"
                         "echo all-forked\n")
    code, doc, _ = validate("--manifest", str(manifest), "--sandbox-docker-host", engine)
    pids = SandboxLimits().pids
    for run in guard_of(doc)["runs"]:
        forked = [int(n) for n in re.findall(r"forked (\d+)", run["output"])]
        assert "all-forked" not in run["output"] and "can't fork" in run["output"], run["output"]
        assert forked and max(forked) < pids, run["output"]
        assert run["accepted"] is False
    assert code == 1
    assert leftover_containers(client, manifest) == []


@pytest.mark.parametrize("how", ["option", "envvar", "DOCKER_HOST"])
def test_D5_issue9_unreachable_sandbox_engine_is_a_D5_finding_not_a_pass(
        manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    dead = f"unix://{tmp_path}/no-such-docker.sock"
    monkeypatch.delenv("UDEPLOY_SANDBOX_DOCKER_HOST", raising=False)
    args, named = ["--manifest", str(manifest)], dead
    if how == "option":
        args += ["--sandbox-docker-host", dead]
    elif how == "envvar":
        monkeypatch.setenv("UDEPLOY_SANDBOX_DOCKER_HOST", dead)
    else:
        monkeypatch.setenv("DOCKER_HOST", dead)
        named = f"DOCKER_HOST={dead}"
    marker = tmp_path / "marker"
    with_guard(manifest, f"echo ran > {marker}\n")
    code, doc, stderr = validate(*args)
    assert code == 1 and doc["ok"] is False and "Traceback" not in stderr
    assert not marker.exists()  # no fallback to the host's sh
    assert guard_of(doc) == {"ran": False, "sandbox": {"engine": named}}
    [finding] = doc["manifests"][0]["findings"]
    assert (finding["rule"], finding["object"]) == ("D5", GUARD)
    assert finding["summary"].startswith(f"the db guard could not run in the sandbox on {named}: "
                                         "the engine does not answer: ")
    assert "No such file or directory" in finding["summary"].split("does not answer: ", 1)[1]  # the cause


def test_D5_issue9_skip_db_guard_is_the_operators_explicit_choice(manifest: Path, tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    with_guard(manifest, f"echo ran > {marker}\n")
    code, doc, _ = validate("--manifest", str(manifest), "--skip-db-guard",
                            "--sandbox-docker-host", f"unix://{tmp_path}/no-such-docker.sock")
    assert code == 0 and doc["ok"] is True
    assert guard_of(doc) == {"ran": False, "skipped": True}
    assert doc["manifests"][0]["findings"] == [] and not marker.exists()


def test_D5_issue9_guard_too_large_for_the_sandbox_is_a_finding(manifest: Path, engine: str) -> None:
    with_guard(manifest, "#" * (65 * 1024) + "\n")
    code, doc, _ = validate("--manifest", str(manifest), "--sandbox-docker-host", engine)
    assert code == 1 and guard_of(doc)["ran"] is False
    assert [f["summary"] for f in d5_findings(doc)] == [
        f"the db guard could not run in the sandbox on {engine}: db-guard.sh is larger than 64 KiB"]


def test_D5_issue9_hanging_guard_is_cut_off_over_an_ssh_sandbox_engine_too(
        manifest: Path, lab: dict[str, Any], require: Callable[..., None], client: docker.DockerClient) -> None:
    """The ssh transport ignores request timeouts: the deadline must not depend on them."""
    require("sshd", "main-docker")
    engine = str(lab["main"]["ssh_docker_host"])
    with_guard(manifest, "sleep 600\n")
    began = time.monotonic()
    code, doc, stderr = validate("--manifest", str(manifest), "--sandbox-docker-host", engine)
    assert time.monotonic() - began < TIMEOUT + 45  # ssh adds a second or so per API call, never the 600 s
    assert code == 1 and "Traceback" not in stderr
    guard = guard_of(doc)
    assert guard["sandbox"]["engine"] == engine
    assert [r["timedOut"] for r in guard["runs"]] == [True] * 4
    assert leftover_containers(client, manifest) == []


@pytest.mark.parametrize("engine", ["bogus", "http://[::1", "tcp://127.0.0.1:1", "ssh://nobody@127.0.0.1:1"])
def test_D5_issue9_malformed_or_dead_sandbox_engine_is_a_D5_finding_not_a_crash(
        manifest: Path, engine: str) -> None:
    code, doc, stderr = validate("--manifest", str(manifest), "--sandbox-docker-host", engine)
    assert code == 1 and doc["ok"] is False and "Traceback" not in stderr
    assert guard_of(doc) == {"ran": False, "sandbox": {"engine": engine}}
    assert [f["summary"].split(": ")[0] for f in d5_findings(doc)] == [
        f"the db guard could not run in the sandbox on {engine}"]
