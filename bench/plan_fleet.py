#!/usr/bin/env python3
"""Plan synthetic fleets against the lab: wall time and peak memory, bounded-parallel vs serial reads.

For each fleet size N this script generates a synthetic monorepo as real git (a bare origin, a
clone, a private GIT_CONFIG_GLOBAL whose `insteadOf` maps the sample's GitHub URL to the bare repo):
N services `svc-0001`... with a tiny Dockerfile dir each, spread round-robin over the three dev
targets of the sample (Compose on main-server over SSH, Compose on D601's local socket, k3s in
namespace unidesk-dev on D601-k3s), one service-image artifact each in CI.json, and a deploy.json
(schemaVersion 2) pinning every dev service to one commit. Every `--publish-every`-th artifact is
published to the lab registry (a manifest copied from `lab/busybox`, blobs mounted, nothing pulled)
so some registry reads hit; the rest, and every container and Deployment, are absent: an absent
object costs a real round trip too, and round trips are what this measures.

Each plan runs `udeploy plan --env dev --repo <clone> -out <file>` in a fresh subprocess, timed
with perf_counter; CPU time (ru_utime + ru_stime) and peak memory (ru_maxrss) are the child's, from
os.wait4. Per size: one untimed `--no-refresh` plan warms the git mirror cache, then `--repeat`
times: offline (`--no-refresh`), refresh at `--parallelism P`, the I/O floor (`bench/io_floor.py`:
only the reads that refreshed plan must make, with the same client libraries, timed the same way),
refresh at parallelism 1. The plan file is checked: N services, and the provider reads it made
(services with a live runtime read, services with a registry read). `--offline-only` (or
`--offline-sizes`) runs the offline plan alone, for sizes too large to refresh on the lab.
The goals of issue 11 are printed beside the figures, marked met or not met; nothing is asserted.

Usage: python3 bench/plan_fleet.py [--sizes 50,200,1000] [--offline-sizes 10000] [--parallelism 10] [--repeat 1]
Needs the lab (`scripts/lab up`) unless every size is offline; exits 2 with "lab not running" when a
component does not answer. Leaves nothing behind: the temp dir is removed and the published
manifests are deleted.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.fleet_images import http  # noqa: E402
from tests.sample_repo import REPO_URL, SampleRepo, init_empty  # noqa: E402

FIXTURE = REPO / "fixtures" / "unidesk-sample"
SAMPLE_CONFIG: dict[str, Any] = json.loads((FIXTURE / "config.json").read_text())
FOUNDATION = SAMPLE_CONFIG["environments"]["dev"]["prerequisites"]["dev-foundation"]["manifest"]
NAMESPACE = SAMPLE_CONFIG["environments"]["dev"]["namespace"]  # unidesk-dev
PROJECT = "unidesk-dev"  # the Compose project of the sample's dev services
TARGETS = ("main-server", "D601", "D601-k3s")  # service i runs on TARGETS[(i - 1) % 3]
COMPOSE_FILES = {"main-server": "deploy/compose/main-server.dev.compose.yml",
                 "D601": "deploy/compose/d601.dev.compose.yml"}
CONSUMER_KIND = {"main-server": "main-server-compose", "D601": "d601-direct-compose",
                 "D601-k3s": "d601-k3s-managed"}
BASE_IMAGE_REPO, BASE_IMAGE_TAG = "lab/busybox", "latest"  # in the lab registry (docs/lab.md)
MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"
LAB_DOWN = "lab not running: run `scripts/lab up`"


class BenchError(Exception):
    """A failure that ends the benchmark with a message and exit status 1 (2 for a lab that is down)."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


# -- the lab


LAB_COMPONENTS = ("main-docker", "d601-docker", "registry", "sshd", "k3s-containerd", "kubelab")


def lab_problems(config: Mapping[str, Any]) -> list[str]:
    """What is down, from `scripts/lab status` (when it runs) and direct probes: [] when all answer."""
    return _status_problems() + _probe_problems(config)


def _status_problems() -> list[str]:
    script = REPO / "scripts" / "lab"
    if not os.access(script, os.X_OK):
        return []
    try:
        done = subprocess.run([str(script), "status"], capture_output=True, text=True, timeout=120, check=False)
        components = json.loads(done.stdout)["components"]
    except (OSError, subprocess.TimeoutExpired, ValueError, KeyError) as exc:
        log(f"`scripts/lab status` gave no answer ({exc}); probing the components directly")
        return []
    return [f"{c} is down (log: {components[c].get('log')})" for c in LAB_COMPONENTS
            if c in components and not components[c].get("up")]


def _probe_problems(config: Mapping[str, Any]) -> list[str]:
    """Each lab endpoint the plan reads (as config.json names it), probed directly."""
    hosts, problems = config["hosts"], []
    registry = config["registry"]["address"]
    try:
        with urllib.request.urlopen(f"http://{registry}/v2/", timeout=5) as r:
            r.read()
    except (OSError, urllib.error.URLError) as exc:
        problems.append(f"registry http://{registry}/v2/: {getattr(exc, 'reason', exc)}")
    for host_id in ("D601",):  # local Docker sockets
        sock = str(hosts[host_id]["docker"]["socket"]).removeprefix("unix://")
        if not _docker_ping(sock):
            problems.append(f"{host_id} Docker engine {sock}: no answer to /_ping")
    ssh = hosts["main-server"]["docker"]["ssh"]
    try:
        with socket.create_connection((ssh["host"], int(ssh["port"])), timeout=5) as s:
            s.settimeout(5)
            if not s.recv(64).startswith(b"SSH-"):
                problems.append(f"main-server sshd {ssh['host']}:{ssh['port']}: not an SSH server")
    except OSError as exc:
        problems.append(f"main-server sshd {ssh['host']}:{ssh['port']}: {exc}")
    k3s = hosts["D601-k3s"]
    try:
        kubeconfig = yaml.safe_load(Path(k3s["kubeconfig"]).read_text())
        server = kubeconfig["clusters"][0]["cluster"]["server"].rstrip("/")
        with urllib.request.urlopen(f"{server}/version", timeout=5) as r:
            r.read()
    except (OSError, urllib.error.URLError, KeyError, IndexError, TypeError, yaml.YAMLError) as exc:
        problems.append(f"Kubernetes API ({k3s['kubeconfig']}): {getattr(exc, 'reason', exc)}")
    if not Path(k3s["containerdSocket"]).is_socket():
        problems.append(f"k3s containerd {k3s['containerdSocket']}: no socket")
    return problems


def _docker_ping(path: str) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(5)
            s.connect(path)
            s.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            return s.recv(64).split(b"\r\n")[0].endswith(b"200 OK")
    except OSError:
        return False


# -- the synthetic monorepo


@dataclass
class Fleet:
    size: int
    sample: SampleRepo
    commit: str  # the commit every dev service is pinned to
    short: str  # ... as written in deploy.json
    published: list[str] = field(default_factory=list)  # service ids with an artifact in the registry

    @property
    def env(self) -> dict[str, str]:
        return self.sample.env


def service_id(i: int) -> str:
    return f"svc-{i:04d}"


def target_of(i: int) -> str:
    return TARGETS[(i - 1) % len(TARGETS)]


def k3s_manifest_path(sid: str, shared: bool) -> str:
    return "deploy/k3s/dev/fleet.k8s.yaml" if shared else f"deploy/k3s/dev/{sid}.k8s.yaml"


def microservice(i: int, shared_manifest: bool) -> dict[str, Any]:
    sid, where = service_id(i), target_of(i)
    path = f"src/services/{sid}"
    target: dict[str, Any] = {"host": where}
    if where == "D601-k3s":
        target["k3s"] = {"namespace": NAMESPACE, "manifest": k3s_manifest_path(sid, shared_manifest),
                         "objects": [f"Deployment/{sid}-dev", f"Service/{sid}-dev"],
                         "stampDeployments": [f"{sid}-dev"], "importImage": f"unidesk-{sid}:{{commit}}",
                         "healthService": {"name": f"{sid}-dev", "port": 8080}}
        target["requires"] = ["dev-foundation"]
    else:
        target["compose"] = {"file": COMPOSE_FILES[where], "project": PROJECT, "service": sid,
                             "image": f"unidesk-{sid}", "healthPort": health_port(i)}
    return {
        "id": sid, "path": path,
        "repository": {"url": REPO_URL, "commitId": "0000000", "dockerfile": f"{path}/Dockerfile",
                       "buildContext": path},
        "deployment": {"mode": "unidesk-direct", "host": "D601" if where == "D601-k3s" else where},
        "health": {"path": "/health"},
        "reviewedArtifactConsumer": True,
        "environments": {"dev": {"consumerKind": CONSUMER_KIND[where], "target": target,
                                 "liveApply": {"mode": "enabled"}}},
    }


def health_port(i: int) -> int:
    return (20000 if target_of(i) == "main-server" else 30000) + i


def k3s_objects(sid: str) -> str:
    name = f"{sid}-dev"
    return f"""apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  namespace: {NAMESPACE}
  labels: {{app: {name}, unidesk.ai/service-id: {sid}}}
spec:
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
      annotations: {{unidesk.ai/deploy-commit: placeholder}}
    spec:
      containers:
        - name: {sid}
          image: unidesk-{sid}:placeholder
          imagePullPolicy: IfNotPresent
          ports: [{{name: http, containerPort: 8080}}]
          env:
            - {{name: UNIDESK_DEPLOY_SERVICE_ID, value: {sid}}}
            - {{name: UNIDESK_DEPLOY_REPO, value: "{REPO_URL}"}}
            - {{name: UNIDESK_DEPLOY_COMMIT, value: placeholder}}
            - {{name: UNIDESK_DEPLOY_REQUESTED_COMMIT, value: placeholder}}
          readinessProbe: {{httpGet: {{path: /health, port: http}}, periodSeconds: 5}}
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {NAMESPACE}
  labels: {{app: {name}}}
spec:
  type: ClusterIP
  selector: {{app: {name}}}
  ports: [{{name: http, port: 8080, targetPort: http}}]
"""


def compose_file(host: str, ids: list[tuple[int, str]]) -> str:
    lines = ['version: "3.7"', "", "services:"]
    for i, sid in ids:
        lines += [f"  {sid}:", f"    image: unidesk-{sid}:latest", f"    env_file: ./env/{sid}.env"]
        lines += ["    network_mode: host"] if host == "D601" else [f'    ports: ["127.0.0.1:{health_port(i)}:8080"]']
        lines += ["    environment:", f"      - PORT={health_port(i) if host == 'D601' else 8080}",
                  "      - LISTEN_ADDR=127.0.0.1" if host == "D601" else "      - LISTEN_ADDR=0.0.0.0", ""]
    return "\n".join(lines)


def _dump(doc: Any) -> str:
    return json.dumps(doc, indent=2) + "\n"


def build_fleet(workdir: Path, size: int, *, shared_manifest: bool, token: str) -> Fleet:
    """The monorepo at `workdir` (origin.git, clone/, gitconfig) with `size` services, pinned in dev."""
    sample = init_empty(workdir)
    clone = sample.clone

    serve = (FIXTURE / "src/components/frontend/serve.sh").read_text()
    dockerfile = (FIXTURE / "src/components/frontend/Dockerfile").read_text()
    by_target: dict[str, list[tuple[int, str]]] = {t: [] for t in TARGETS}
    for i in range(1, size + 1):
        sid = service_id(i)
        by_target[target_of(i)].append((i, sid))
        d = clone / "src/services" / sid
        d.mkdir(parents=True)
        (d / "Dockerfile").write_text(dockerfile)
        (d / "serve.sh").write_text(serve.replace("SERVICE_ID=frontend", f"SERVICE_ID={sid}"))
        (d / "VERSION").write_text("1\n")
    for host, ids in by_target.items():
        if host in COMPOSE_FILES:
            (clone / COMPOSE_FILES[host]).parent.mkdir(parents=True, exist_ok=True)
            (clone / COMPOSE_FILES[host]).write_text(compose_file(host, ids))
    k3s_dir = clone / "deploy/k3s/dev"
    k3s_dir.mkdir(parents=True)
    k3s_ids = [sid for _, sid in by_target["D601-k3s"]]
    if shared_manifest:
        (k3s_dir / "fleet.k8s.yaml").write_text("---\n".join(k3s_objects(sid) for sid in k3s_ids))
    else:
        for sid in k3s_ids:
            (k3s_dir / f"{sid}.k8s.yaml").write_text(k3s_objects(sid))
    (clone / FOUNDATION).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(FIXTURE / FOUNDATION, clone / FOUNDATION)
    (clone / "BENCH").write_text(f"udeploy plan benchmark fleet of {size} services, run {token}\n")

    config = {key: SAMPLE_CONFIG[key] for key in ("schemaVersion", "project", "registry", "hosts", "environments")}
    config["microservices"] = [microservice(i, shared_manifest) for i in range(1, size + 1)]
    registry, prefix = SAMPLE_CONFIG["registry"]["address"], SAMPLE_CONFIG["registry"]["repositoryPrefix"]
    ci = {"schemaVersion": 1, "registry": registry, "builder": {"host": "D601"},
          "artifacts": [{"id": sid, "kind": "service-image", "service": sid,
                         "dockerfile": f"src/services/{sid}/Dockerfile", "context": f"src/services/{sid}",
                         "image": f"{registry}/{prefix}/{sid}:{{commit}}"}
                        for sid in (service_id(i) for i in range(1, size + 1))]}
    (clone / "CI.json").write_text(_dump(ci))
    # compact: indented, a 10,000-service config.json passes udeploy's 8 MiB input limit
    commit = sample.commit_change("config.json", json.dumps(config, separators=(",", ":")) + "\n",
                                  f"fleet: {size} services", name="fleet")
    short = sample.short(commit)
    deploy = {"schemaVersion": 2, "environments": {"dev": {"services": [
        {"id": service_id(i), "repo": REPO_URL, "commitId": short} for i in range(1, size + 1)]}}}
    sample.commit_change("deploy.json", _dump(deploy), "deploy: pin every dev service", name="deploy")
    return Fleet(size=size, sample=sample, commit=commit, short=short)


# -- published artifacts (registry API only: copy lab/busybox's manifest, mount its blobs)



def publish(fleet: Fleet, every: int) -> str | None:
    """Publish services 1, 1+every, ... at the fleet commit; returns the manifest digest (None: nothing)."""
    if every <= 0:
        return None
    root = f"http://{SAMPLE_CONFIG['registry']['address']}/v2"
    prefix = SAMPLE_CONFIG["registry"]["repositoryPrefix"]
    status, headers, manifest = http("GET", f"{root}/{BASE_IMAGE_REPO}/manifests/{BASE_IMAGE_TAG}",
                                      headers={"Accept": MANIFEST_TYPES})
    if status != 200:
        print(f"bench: {BASE_IMAGE_REPO}:{BASE_IMAGE_TAG} is not in the lab registry (HTTP {status}); "
              "publishing nothing, every registry read misses", file=sys.stderr)
        return None
    media = headers.get("Content-Type", "application/vnd.docker.distribution.manifest.v2+json")
    doc = json.loads(manifest)
    blobs = [doc["config"]["digest"]] + [layer["digest"] for layer in doc["layers"]]
    digest = headers.get("Docker-Content-Digest")
    for i in range(1, fleet.size + 1, every):
        repo = f"{prefix}/{service_id(i)}"
        for blob in blobs:
            status, _, text = http("POST", f"{root}/{repo}/blobs/uploads/?mount={blob}&from={BASE_IMAGE_REPO}")
            if status != 201:
                raise BenchError(f"cannot mount {blob} into {repo}: HTTP {status} {text[:200]!r}")
        status, answer, text = http("PUT", f"{root}/{repo}/manifests/{fleet.commit}", body=manifest,
                                     headers={"Content-Type": media})
        if status != 201:
            raise BenchError(f"cannot push {repo}:{fleet.commit}: HTTP {status} {text[:200]!r}")
        digest = answer.get("Docker-Content-Digest", digest)
        fleet.published.append(service_id(i))
    return digest


def unpublish(fleet: Fleet, digest: str | None) -> None:
    root = f"http://{SAMPLE_CONFIG['registry']['address']}/v2"
    prefix = SAMPLE_CONFIG["registry"]["repositoryPrefix"]
    for sid in fleet.published:
        status, _, _ = http("DELETE", f"{root}/{prefix}/{sid}/manifests/{digest}")
        if status not in (202, 404):
            print(f"bench: could not delete {prefix}/{sid}@{digest}: HTTP {status}", file=sys.stderr)
    fleet.published.clear()


# -- running the planner


@dataclass
class Run:
    size: int
    parallelism: int | None  # None: offline
    refresh: bool
    wall_s: float
    cpu_s: float  # the child's ru_utime + ru_stime
    peak_mib: float
    plan_bytes: int  # size of the plan file written
    services: int
    runtime_reads: int
    registry_reads: int
    actions: dict[str, int]

    @property
    def services_per_s(self) -> float:
        return self.size / self.wall_s if self.wall_s else 0.0


def plan_command(clone: Path, out: Path, *, refresh: bool, parallelism: int, profile: Path | None) -> list[str]:
    cmd = [sys.executable]
    if profile is not None:
        cmd += ["-m", "cProfile", "-o", str(profile)]
    cmd += ["-m", "udeploy.engine.cli", "plan", "--env", "dev", "--repo", str(clone), "-out", str(out),
            "--parallelism", str(parallelism)]
    return cmd + ([] if refresh else ["--no-refresh"])


def child_env(fleet: Fleet, cache: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("UDEPLOY_")}
    env.update(fleet.env)
    env["UDEPLOY_CACHE_DIR"] = str(cache)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    return env


@dataclass
class Timed:
    """A child process's exit code, wall time, CPU time (user + system) and peak RSS, from wait4."""

    returncode: int
    wall_s: float
    cpu_s: float
    peak_mib: float


def timed(cmd: list[str], env: Mapping[str, str], log_out: Path, log_err: Path) -> Timed:
    with log_out.open("wb") as so, log_err.open("wb") as se:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=so, stderr=se, stdin=subprocess.DEVNULL, cwd=REPO, env=dict(env))
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped by wait4; keep Popen from polling
    return Timed(proc.returncode, wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024)


def run_plan(fleet: Fleet, workdir: Path, *, refresh: bool, parallelism: int, tag: str,
             profile: Path | None = None) -> Run:
    out, log_out, log_err = (workdir / f"{tag}.plan.json", workdir / f"{tag}.stdout", workdir / f"{tag}.stderr")
    cmd = plan_command(fleet.sample.clone, out, refresh=refresh, parallelism=parallelism, profile=profile)
    child = timed(cmd, child_env(fleet, workdir.parent / "cache"), log_out, log_err)
    if child.returncode != 0:
        raise BenchError(_plan_failure(cmd, child.returncode, log_out, log_err))
    plan = json.loads(out.read_text())
    services = plan["services"]
    if len(services) != fleet.size:
        raise BenchError(f"{tag}: the plan lists {len(services)} services, expected {fleet.size}")
    if bool(plan.get("refreshed")) != refresh:
        raise BenchError(f"{tag}: plan.refreshed is {plan.get('refreshed')}, expected {refresh}")
    actions: dict[str, int] = {}
    for s in services:
        actions[s["action"]] = actions.get(s["action"], 0) + 1
    runtime_reads = sum(1 for s in services if s.get("live") is not None)
    registry_reads = sum(1 for s in services if (s.get("artifactConsumer") or {}).get("registry", {})
                         .get("digestProvenance"))
    return Run(size=fleet.size, parallelism=parallelism if refresh else None, refresh=refresh, wall_s=child.wall_s,
               cpu_s=child.cpu_s, peak_mib=child.peak_mib, plan_bytes=out.stat().st_size, services=len(services),
               runtime_reads=runtime_reads, registry_reads=registry_reads, actions=actions)


# -- the I/O floor (bench/io_floor.py, its own process)


@dataclass
class FloorRun:
    size: int
    parallelism: int
    wall_s: float
    cpu_s: float
    peak_mib: float
    reads: dict[str, int]  # by kind, as io_floor.py counted them
    total_reads: int
    artifacts_found: int


def floor_spec(fleet: Fleet, parallelism: int) -> dict[str, Any]:
    """What io_floor.py reads for this fleet: the reads its refreshed dev plan must make."""
    hosts, registry = SAMPLE_CONFIG["hosts"], SAMPLE_CONFIG["registry"]
    images = [f"{registry['address']}/{registry['repositoryPrefix']}/{service_id(i)}:{fleet.commit}"
              for i in range(1, fleet.size + 1)]
    projects: dict[str, dict[str, int]] = {"main-server": {}, "D601": {}}
    namespace: list[dict[str, Any]] = []
    for i in range(1, fleet.size + 1):
        where, sid = target_of(i), service_id(i)
        if where in projects:
            projects[where][sid] = health_port(i)
        else:
            namespace.append({"deployment": f"{sid}-dev", "healthService": f"{sid}-dev", "port": 8080})
    k3s = hosts["D601-k3s"]
    return {"parallelism": parallelism, "healthPath": "/health", "registry": {"images": images},
            "docker": [{"ssh": hosts["main-server"]["docker"]["ssh"], "projects": {PROJECT: projects["main-server"]}},
                       {"socket": hosts["D601"]["docker"]["socket"], "projects": {PROJECT: projects["D601"]}}],
            "kubernetes": [{"kubeconfig": k3s["kubeconfig"], "context": k3s.get("kubeContext"),
                            "containerdSocket": k3s["containerdSocket"], "namespaces": {NAMESPACE: namespace}}]}


def run_floor(fleet: Fleet, workdir: Path, *, parallelism: int, tag: str) -> FloorRun:
    spec = workdir / "floor-spec.json"
    if not spec.exists():
        spec.write_text(json.dumps(floor_spec(fleet, parallelism)))
    log_out, log_err = workdir / f"{tag}.stdout", workdir / f"{tag}.stderr"
    cmd = [sys.executable, str(REPO / "bench" / "io_floor.py"), "--spec", str(spec)]
    child = timed(cmd, child_env(fleet, workdir.parent / "cache"), log_out, log_err)
    if child.returncode != 0:
        tail = "\n".join((log_out.read_text(errors="replace") + log_err.read_text(errors="replace"))
                         .strip().splitlines()[-25:])
        raise BenchError(f"`{' '.join(cmd)}` exited {child.returncode}:\n{tail}")
    answer = json.loads(log_out.read_text().strip().splitlines()[-1])
    if answer["artifactsFound"] != len(fleet.published):
        log(f"{tag}: the floor found {answer['artifactsFound']} artifacts, {len(fleet.published)} were published")
    return FloorRun(size=fleet.size, parallelism=parallelism, wall_s=child.wall_s, cpu_s=child.cpu_s,
                    peak_mib=child.peak_mib, reads=answer["reads"], total_reads=answer["totalReads"],
                    artifacts_found=answer["artifactsFound"])


def _plan_failure(cmd: list[str], code: int, log_out: Path, log_err: Path) -> str:
    stdout, stderr = log_out.read_text(errors="replace"), log_err.read_text(errors="replace")
    try:
        error = json.loads(stdout).get("error") or {}
    except ValueError:
        error = {}
    if error.get("code") == "provider-unreachable":
        return f"{LAB_DOWN} (udeploy plan: {error.get('message')})"
    tail = "\n".join((stdout.strip().splitlines() + stderr.strip().splitlines())[-25:])
    return f"`{' '.join(cmd)}` exited {code}:\n{tail}"


# -- the report

GOAL_FLOOR_RATIO, GOAL_OFFLINE_1000_S, GOAL_10K_VS_1K, GOAL_PEAK_MIB_1000 = 1.5, 1.5, 10.0, 150.0


def summarize(runs: list[Run], floor: dict[str, Any] | None = None) -> dict[str, Any]:
    first = runs[0]
    walls, cpus = [r.wall_s for r in runs], [r.cpu_s for r in runs]
    wall, cpu = statistics.median(walls), statistics.median(cpus)
    row = {"size": first.size, "parallelism": first.parallelism, "refresh": first.refresh,
           "wallSeconds": round(wall, 3), "wallSecondsAll": [round(w, 3) for w in walls],
           "cpuSeconds": round(cpu, 3), "cpuSecondsAll": [round(c, 3) for c in cpus],
           "peakMiB": round(max(r.peak_mib for r in runs), 1),
           "servicesPerSecond": round(first.size / wall, 1),
           "planBytes": first.plan_bytes, "planBytesPerService": round(first.plan_bytes / first.size),
           "services": first.services, "runtimeReads": first.runtime_reads, "registryReads": first.registry_reads,
           "providerReads": first.runtime_reads + first.registry_reads, "actions": first.actions}
    if floor is not None and first.refresh:
        row["vsFloorWall"] = round(wall / floor["wallSeconds"], 2)
        row["vsFloorCpu"] = round(cpu / floor["cpuSeconds"], 2) if floor["cpuSeconds"] else None
    return row


def summarize_floor(runs: list[FloorRun]) -> dict[str, Any]:
    first = runs[0]
    walls, cpus = [r.wall_s for r in runs], [r.cpu_s for r in runs]
    return {"size": first.size, "parallelism": first.parallelism,
            "wallSeconds": round(statistics.median(walls), 3), "wallSecondsAll": [round(w, 3) for w in walls],
            "cpuSeconds": round(statistics.median(cpus), 3), "cpuSecondsAll": [round(c, 3) for c in cpus],
            "peakMiB": round(max(r.peak_mib for r in runs), 1), "reads": first.reads,
            "totalReads": first.total_reads, "artifactsFound": first.artifacts_found}


def _run_name(row: Mapping[str, Any]) -> str:
    return f"P={row['parallelism']}" if row["refresh"] else "offline"


def print_table(rows: list[dict[str, Any]], floors: Mapping[int, dict[str, Any]]) -> None:
    header = (f"{'size':>5} | {'run':>7} | {'wall s':>7} | {'CPU s':>6} | {'peak MiB':>8} | {'B/svc':>6} | "
              f"{'reads':>5} | {'floor wall':>10} | {'floor CPU':>9} | {'floor MiB':>9} | "
              f"{'/floor wall':>11} | {'/floor CPU':>10} | vs P=1")
    print(header)
    print("-" * len(header))
    serial = {r["size"]: r["wallSeconds"] for r in rows if r["parallelism"] == 1 and r["refresh"]}
    for r in rows:
        speedup = ""
        if r["refresh"] and r["parallelism"] != 1 and serial.get(r["size"]):
            speedup = f"x{serial[r['size']] / r['wallSeconds']:.2f}"
        f = floors.get(r["size"]) if r["refresh"] else None
        floor_cells = (f"{f['wallSeconds']:>10.2f} | {f['cpuSeconds']:>9.2f} | {f['peakMiB']:>9.1f} | "
                       f"{_ratio(r.get('vsFloorWall')):>11} | {_ratio(r.get('vsFloorCpu')):>10}") if f else \
            f"{'-':>10} | {'-':>9} | {'-':>9} | {'-':>11} | {'-':>10}"
        print(f"{r['size']:>5} | {_run_name(r):>7} | {r['wallSeconds']:>7.2f} | {r['cpuSeconds']:>6.2f} | "
              f"{r['peakMiB']:>8.1f} | {r['planBytesPerService']:>6} | "
              f"{r['providerReads'] if r['refresh'] else '-':>5} | {floor_cells} | {speedup}")
    for size, f in sorted(floors.items()):
        kinds = ", ".join(f"{n} {kind}" for kind, n in sorted(f["reads"].items(), key=lambda kv: -kv[1]))
        print(f"floor reads at {size} (P={f['parallelism']}): {kinds} ({f['totalReads']} in all)")
    for line in scaling_lines(rows):
        print(line)


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"x{value:.2f}"


def scaling_lines(rows: list[dict[str, Any]]) -> list[str]:
    """Offline wall, CPU and peak memory from each offline size to the next: growth vs fleet growth."""
    offline = sorted((r for r in rows if not r["refresh"]), key=lambda r: r["size"])
    lines = []
    for small, big in zip(offline, offline[1:], strict=False):
        grow = big["size"] / small["size"]
        per_service_kib = (big["peakMiB"] - small["peakMiB"]) * 1024 / (big["size"] - small["size"])
        lines.append(f"offline {small['size']} -> {big['size']} (x{grow:.1f} services): "
                     f"wall x{big['wallSeconds'] / small['wallSeconds']:.2f}, "
                     f"CPU x{big['cpuSeconds'] / small['cpuSeconds']:.2f}, "
                     f"peak {small['peakMiB']:.0f} -> {big['peakMiB']:.0f} MiB ({per_service_kib:.1f} KiB/service)")
    return lines


def goals(rows: list[dict[str, Any]], parallelism: int) -> list[dict[str, Any]]:
    """Issue 11's goals against this run's figures: met True/False, None when not measured."""
    def row(size: int, refresh: bool, p: int | None = None) -> dict[str, Any] | None:
        return next((r for r in rows if r["size"] == size and r["refresh"] == refresh
                     and (p is None or r["parallelism"] == p)), None)

    out: list[dict[str, Any]] = []
    bounded = row(1000, True, parallelism)
    ratio = bounded.get("vsFloorWall") if bounded else None
    out.append({"goal": f"refreshed plan of 1000 (P={parallelism}) <= {GOAL_FLOOR_RATIO}x the I/O floor (wall)",
                "figure": None if ratio is None else f"x{ratio:.2f} (CPU x{bounded.get('vsFloorCpu')})",  # type: ignore[union-attr]
                "met": None if ratio is None else ratio <= GOAL_FLOOR_RATIO})
    k1 = row(1000, False)
    out.append({"goal": f"offline plan of 1000 <= {GOAL_OFFLINE_1000_S} s wall",
                "figure": None if k1 is None else f"{k1['wallSeconds']:.2f} s",
                "met": None if k1 is None else k1["wallSeconds"] <= GOAL_OFFLINE_1000_S})
    k10 = row(10000, False)
    growth = k10["wallSeconds"] / k1["wallSeconds"] if k1 and k10 else None
    out.append({"goal": f"offline plan of 10000 <= {GOAL_10K_VS_1K:g}x the 1000 figure",
                "figure": None if growth is None else f"x{growth:.2f}",
                "met": None if growth is None else growth <= GOAL_10K_VS_1K})
    at_1000 = [r["peakMiB"] for r in rows if r["size"] == 1000]
    out.append({"goal": f"peak RSS at 1000 <= {GOAL_PEAK_MIB_1000:g} MiB (every udeploy run)",
                "figure": f"{max(at_1000):.1f} MiB" if at_1000 else None,
                "met": max(at_1000) <= GOAL_PEAK_MIB_1000 if at_1000 else None})
    pairs = [(r["size"], r["wallSeconds"], s["wallSeconds"]) for r in rows
             if r["refresh"] and r["parallelism"] != 1 and (s := row(r["size"], True, 1)) is not None]
    out.append({"goal": f"parallel (P={parallelism}) not slower than serial, at every size",
                "figure": ", ".join(f"{n}: {p:.2f} s vs {q:.2f} s" for n, p, q in pairs) or None,
                "met": all(p <= q for _, p, q in pairs) if pairs else None})
    sizes = ", ".join(f"{r['size']}: {r['planBytesPerService']} B" for r in rows if not r["refresh"])
    out.append({"goal": "plan file size per service (printed, no bound)", "figure": sizes or None, "met": None})
    return out


def print_goals(found: list[dict[str, Any]]) -> None:
    print("goals (issue 11; printed, never asserted):")
    for g in found:
        mark = {True: "met", False: "NOT MET", None: "info"}[g["met"]]
        if g["figure"] is None:
            mark = "not measured in this run"
        print(f"  [{mark}] {g['goal']}: {g['figure'] or ''}".rstrip(": "))


def parse_sizes(text: str) -> list[int]:
    try:
        sizes = [int(s) for s in text.split(",") if s.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"--sizes must be comma-separated integers, not {text!r}") from exc
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError("--sizes needs at least one positive size")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 bench/plan_fleet.py", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("50,200,1000"),
                        help="fleet sizes (default 50,200,1000)")
    parser.add_argument("--offline-sizes", type=parse_sizes, default=[], metavar="SIZES",
                        help="more fleet sizes planned offline only (e.g. 10000: too slow to refresh on the lab)")
    parser.add_argument("--offline-only", action="store_true",
                        help="plan every size offline only (no refreshed plans, no floor, no lab needed)")
    parser.add_argument("--parallelism", type=int, default=10, help="--parallelism of the bounded runs (default 10)")
    parser.add_argument("--repeat", type=int, default=1, help="timed runs of each kind; the table shows the median")
    parser.add_argument("--publish-every", type=int, default=10, metavar="K",
                        help="publish every K-th service's artifact so its registry read hits (0: none; default 10)")
    parser.add_argument("--shared-k3s-manifest", action="store_true",
                        help="one k3s manifest for all k3s services instead of one file per service")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="also write a cProfile of one refresh run at --parallelism per size into DIR "
                             "(untimed; cProfile sees the main thread only)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (repos, plans, logs)")
    args = parser.parse_args(argv)
    if args.parallelism < 1 or args.repeat < 1:
        parser.error("--parallelism and --repeat must be at least 1")

    sizes = [(n, False) for n in ([] if args.offline_only else args.sizes)]
    offline_sizes = set(args.offline_sizes) | set(args.sizes) if args.offline_only else \
        set(args.offline_sizes) - set(args.sizes)
    sizes += [(n, True) for n in sorted(offline_sizes)]
    problems = lab_problems(SAMPLE_CONFIG) if any(not offline for _, offline in sizes) else []
    if problems:
        print(f"{LAB_DOWN}\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2

    token = uuid.uuid4().hex[:8]
    root = Path(tempfile.mkdtemp(prefix=f"udeploy-bench-{token}-"))
    rows: list[dict[str, Any]] = []
    floors: dict[int, dict[str, Any]] = {}
    try:
        for size, offline_only in sizes:
            rows += bench_size(size, root, args, token, floors, offline_only=offline_only)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return exc.status
    finally:
        if args.keep:
            print(f"bench: kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    found = goals(rows, args.parallelism)
    print()
    print_table(rows, floors)
    print()
    print_goals(found)
    print(json.dumps({"benchmark": "plan_fleet", "parallelism": args.parallelism, "repeat": args.repeat,
                      "publishEvery": args.publish_every, "sharedK3sManifest": args.shared_k3s_manifest,
                      "cpus": os.cpu_count(), "results": rows, "floors": [floors[n] for n in sorted(floors)],
                      "goals": found}, separators=(",", ":")))
    return 0


def bench_size(size: int, root: Path, args: argparse.Namespace, token: str, floors: dict[int, dict[str, Any]],
               *, offline_only: bool = False) -> list[dict[str, Any]]:
    """Rows for one fleet size (offline, P, P=1; offline alone when `offline_only`); its floor into `floors`."""
    work = root / f"fleet-{size}{'-offline' if offline_only else ''}"
    t0 = time.perf_counter()
    fleet = build_fleet(work, size, shared_manifest=args.shared_k3s_manifest, token=token)
    digest = None
    try:
        digest = None if offline_only else publish(fleet, args.publish_every)
        log(f"size {size}: repo generated and {len(fleet.published)} artifacts published in "
            f"{time.perf_counter() - t0:.1f}s; warming the git mirror")
        run_plan(fleet, work, refresh=False, parallelism=args.parallelism, tag="warm")
        offline: list[Run] = []
        bounded: list[Run] = []
        serial: list[Run] = []
        floor: list[FloorRun] = []
        for n in range(args.repeat):
            offline.append(run_plan(fleet, work, refresh=False, parallelism=args.parallelism, tag=f"offline-{n}"))
            if offline_only:
                log(f"size {size} run {n + 1}/{args.repeat}: offline {offline[-1].wall_s:.2f}s")
                continue
            bounded.append(run_plan(fleet, work, refresh=True, parallelism=args.parallelism,
                                    tag=f"p{args.parallelism}-{n}"))
            floor.append(run_floor(fleet, work, parallelism=args.parallelism, tag=f"floor-{n}"))
            serial.append(run_plan(fleet, work, refresh=True, parallelism=1, tag=f"p1-{n}"))
            log(f"size {size} run {n + 1}/{args.repeat}: offline {offline[-1].wall_s:.2f}s, "
                f"P={args.parallelism} {bounded[-1].wall_s:.2f}s, floor {floor[-1].wall_s:.2f}s, "
                f"P=1 {serial[-1].wall_s:.2f}s")
        if args.profile and not offline_only:
            args.profile.mkdir(parents=True, exist_ok=True)
            prof = args.profile.resolve() / f"plan-{size}-p{args.parallelism}.prof"
            run_plan(fleet, work, refresh=True, parallelism=args.parallelism, tag="profile", profile=prof)
            log(f"size {size}: profile written to {prof} (python3 -m pstats {prof})")
    finally:
        unpublish(fleet, digest)
    if offline_only:
        return [summarize(offline)]
    floors[size] = summarize_floor(floor)
    return [summarize(offline), summarize(bounded, floors[size]), summarize(serial, floors[size])]


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
