#!/usr/bin/env python3
"""Deploy synthetic fleets on the lab with `udeploy apply`, beside a minimal script making the same engine calls.

Per fleet size N (the fleet of `bench/plan_fleet.py`: a third Compose on main-server over SSH, a
third Compose on D601, a third k3s Deployments), moved into a Compose project and a namespace of
the run's own (`udbench-<token>-dev`, so the apply tests' cleanup of `unidesk-dev` never meets it):

1. every service's artifact is pushed to the lab registry (`bench/fleet_images.py`: lab/busybox's
   layers, one tiny serve.sh layer, a config with the service's V1 labels; nothing is built);
2. `udeploy plan --env dev -out` (untimed; every service must be `deploy`), then `udeploy apply
   <plan> --parallelism P` timed as a whole process (wall, CPU and peak RSS from wait4);
3. no-op: a second `plan -out` (every service `noop`) and `apply`, timed, while the engines'
   own events are counted (`bench/engine_events.py`): Docker pulls, tags, container creates and
   starts on both engines, containerd image creates/updates and container starts, Deployment
   generation/resourceVersion changes and new Pods;
4. everything the deploy made is torn down (containers, Compose dirs, namespace, engine and
   containerd images), then `bench/apply_floor.py` deploys the same fleet from the same state,
   timed the same way, and is checked (every service healthy at its commit); torn down again;
5. the registry manifests pushed are deleted.

With `--repeat K`, steps 2 and 4 run K times (torn down in between) and the table shows the
medians of the paired runs (the largest peak memory).

Usage: python3 bench/apply_fleet.py [--sizes 6,30] [--parallelism 10] [--repeat 1] [--keep]
Prints a table (udeploy, floor, ratio; no-op apply and its engine event counts) and a JSON line.
The goal of issue 11 (apply <= 1.10x the floor; no-op apply makes zero pulls, imports, recreates)
is printed, never asserted. Needs the lab; exits 2 when it is down.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.engine_events import AccessLog, EngineWatch, kube_resource, registry_resource  # noqa: E402
from bench.fleet_images import ImageMaker, RegistryError  # noqa: E402
from bench.plan_fleet import (  # noqa: E402
    COMPOSE_FILES,
    FOUNDATION,
    LAB_DOWN,
    REPO_URL,
    SAMPLE_CONFIG,
    BenchError,
    Fleet,
    build_fleet,
    child_env,
    health_port,
    k3s_manifest_path,
    lab_problems,
    log,
    parse_sizes,
    service_id,
    target_of,
    timed,
)

GOAL_RATIO = 1.10
LAB_LOGS = Path("/var/lib/udeploy-lab/logs")  # the lab's access logs: requests counted per window
ENGINES = {"main-server": "unix:///run/udeploy-lab/main/docker.sock",  # the bench reads both engines directly
           "D601": str(SAMPLE_CONFIG["hosts"]["D601"]["docker"]["socket"])}
K3S = SAMPLE_CONFIG["hosts"]["D601-k3s"]
REGISTRY, PREFIX = SAMPLE_CONFIG["registry"]["address"], SAMPLE_CONFIG["registry"]["repositoryPrefix"]
NOOP_KEYS = ("image pull", "image tag", "container create", "container start", "/images/create",
             "/images/update", "/containers/create", "k8s Deployment changed", "k8s Pod created")


@dataclass
class BenchFleet:
    fleet: Fleet
    project: str  # Compose project on both hosts
    namespace: str

    @property
    def size(self) -> int:
        return self.fleet.size

    def image(self, i: int) -> str:
        return f"{REGISTRY}/{PREFIX}/{service_id(i)}:{self.fleet.commit}"

    def local_image(self, i: int) -> str:
        return f"unidesk-{service_id(i)}"

    def env(self, i: int) -> dict[str, str]:
        return {"UNIDESK_DEPLOY_SERVICE_ID": service_id(i), "UNIDESK_DEPLOY_REPO": REPO_URL,
                "UNIDESK_DEPLOY_COMMIT": self.fleet.commit, "UNIDESK_DEPLOY_REQUESTED_COMMIT": self.fleet.short}


# -- the fleet, in a project and namespace of its own


def make_fleet(work: Path, size: int, token: str) -> BenchFleet:
    fleet = build_fleet(work, size, shared_manifest=False, token=token)
    bench = BenchFleet(fleet, project=f"udbench-{token}-dev", namespace=f"udbench-{token}-dev")
    clone = fleet.sample.clone
    config = json.loads((clone / "config.json").read_text())
    dev = config["environments"]["dev"]
    dev["namespace"] = bench.namespace
    dev["prerequisites"]["dev-foundation"]["namespace"] = bench.namespace
    for m in config["microservices"]:
        target = m["environments"]["dev"]["target"]
        if "compose" in target:
            target["compose"]["project"] = bench.project
        else:
            target["k3s"]["namespace"] = bench.namespace
    # the foundation is the namespace alone: the sample's database objects are not what is measured
    (clone / FOUNDATION).write_text(f"apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {bench.namespace}\n")
    for i in range(1, size + 1):
        if target_of(i) == "D601-k3s":
            path = clone / k3s_manifest_path(service_id(i), False)
            path.write_text(path.read_text().replace("namespace: unidesk-dev", f"namespace: {bench.namespace}"))
    fleet.sample.commit_change("config.json", json.dumps(config, separators=(",", ":")) + "\n",
                               f"bench: project and namespace {bench.project}")
    return bench


def publish(bench: BenchFleet, maker: ImageMaker) -> None:
    for i in range(1, bench.size + 1):
        sid = service_id(i)
        labels = {"unidesk.ai/service-id": sid, "unidesk.ai/source-repo": REPO_URL,
                  "unidesk.ai/source-commit": bench.fleet.commit,
                  "unidesk.ai/dockerfile": f"src/services/{sid}/Dockerfile"}
        maker.push(f"{PREFIX}/{sid}", bench.fleet.commit, labels)


# -- udeploy


@dataclass
class Timing:
    wall_s: float
    cpu_s: float
    peak_mib: float


def udeploy(bench: BenchFleet, work: Path, tag: str, *args: str) -> tuple[Timing, dict[str, Any]]:
    cmd = [sys.executable, "-m", "udeploy.engine.cli", *args]
    out, err = work / f"{tag}.stdout", work / f"{tag}.stderr"
    child = timed(cmd, child_env(bench.fleet, work.parent / "cache"), out, err)
    text = out.read_text(errors="replace")
    try:
        doc = json.loads(text)
    except ValueError:
        doc = {}
    if child.returncode != 0:
        tail = "\n".join((text.strip().splitlines() + err.read_text(errors="replace").strip().splitlines())[-30:])
        raise BenchError(f"`udeploy {' '.join(args)}` exited {child.returncode}:\n{tail}")
    return Timing(child.wall_s, child.cpu_s, child.peak_mib), doc


def plan(bench: BenchFleet, work: Path, tag: str, parallelism: int, expect: str) -> Path:
    path = work / f"{tag}.plan.json"
    udeploy(bench, work, tag, "plan", "--env", "dev", "--repo", str(bench.fleet.sample.clone), "-out", str(path),
            "--parallelism", str(parallelism))
    actions = {s["id"]: s["action"] for s in json.loads(path.read_text())["services"]}
    wrong = {s: a for s, a in actions.items() if a != expect}
    if len(actions) != bench.size or wrong:
        raise BenchError(f"{tag}: expected {bench.size} services to {expect}, got {dict(list(wrong.items())[:5])}")
    return path


def apply(bench: BenchFleet, work: Path, tag: str, plan_path: Path, parallelism: int) -> Timing:
    timing, doc = udeploy(bench, work, tag, "apply", str(plan_path), "--repo", str(bench.fleet.sample.clone),
                          "--state-dir", str(work / f"state-{tag}"),
                          "--parallelism", str(parallelism))
    if doc.get("state") != "succeeded":
        raise BenchError(f"{tag}: apply state {doc.get('state')!r}")
    return timing


class Watch:
    """The engines' events (`EngineWatch`) and the Kubernetes API and registry requests of one window."""

    def __init__(self, bench: BenchFleet) -> None:
        names = [f"{PREFIX}/{service_id(i)}" for i in range(1, bench.size + 1)] + \
            [bench.local_image(i) for i in range(1, bench.size + 1)]
        pattern = re.compile("|".join(re.escape(n) + r"\b" for n in names))
        self.engines = EngineWatch(ENGINES, containerd_socket=K3S["containerdSocket"], kubeconfig=K3S["kubeconfig"],
                                   namespace=bench.namespace, image_match=lambda s: bool(pattern.search(s)),
                                   project_match=lambda p: p == bench.project)
        self.kube = AccessLog(str(LAB_LOGS / "kubelab.log"), lambda path: f"/{bench.namespace}" in path, kube_resource)
        self.registry = AccessLog(str(LAB_LOGS / "registry.log"), lambda path: bool(pattern.search(path)),
                                  registry_resource)

    def start(self) -> None:
        self.engines.start()
        self.kube.start()
        self.registry.start()

    def stop(self) -> dict[str, Any]:
        api = {**{f"k8s {k}": v for k, v in self.kube.stop().items()},  # before the watch's own reads
               **{f"registry {k}": v for k, v in self.registry.stop().items()}}
        return {**self.engines.stop(), "api": api}


def watch(bench: BenchFleet) -> Watch:
    return Watch(bench)


# -- the floor


def floor_spec(bench: BenchFleet, parallelism: int) -> dict[str, Any]:
    """What apply_floor.py deploys: the same fleet, the same engine calls udeploy's steps make."""
    hosts = SAMPLE_CONFIG["hosts"]
    clone = bench.fleet.sample.clone
    compose: list[dict[str, Any]] = []
    for host in ("main-server", "D601"):
        docker_cfg = hosts[host]["docker"]
        services = [{"service": service_id(i), "image": bench.image(i), "localImage": bench.local_image(i),
                     "tags": ["latest", bench.fleet.commit], "env": bench.env(i), "healthPort": health_port(i),
                     "commit": bench.fleet.commit}
                    for i in range(1, bench.size + 1) if target_of(i) == host]
        compose.append({"host": host, **({"ssh": docker_cfg["ssh"]} if "ssh" in docker_cfg else
                                          {"socket": docker_cfg["socket"]}),
                        "projectDir": f"{hosts[host]['composeRoot']}/{bench.project}", "project": bench.project,
                        "file": Path(COMPOSE_FILES[host]).name,
                        "composeYaml": (clone / COMPOSE_FILES[host]).read_text(), "services": services})
    k3s = []
    for i in range(1, bench.size + 1):
        if target_of(i) != "D601-k3s":
            continue
        sid = service_id(i)
        objects = list(yaml.safe_load_all((clone / k3s_manifest_path(sid, False)).read_text()))
        k3s.append({"service": sid, "image": bench.image(i),
                    "localImage": f"{bench.local_image(i)}:{bench.fleet.commit}",
                    "objects": objects, "deployment": f"{sid}-dev", "env": bench.env(i),
                    "healthService": f"{sid}-dev", "port": 8080, "commit": bench.fleet.commit})
    return {"parallelism": parallelism, "healthPath": "/health", "registry": REGISTRY, "compose": compose,
            "kubernetes": {"kubeconfig": K3S["kubeconfig"], "context": K3S.get("kubeContext"),
                           "containerdSocket": K3S["containerdSocket"], "namespace": bench.namespace,
                           "foundation": [{"apiVersion": "v1", "kind": "Namespace",
                                           "metadata": {"name": bench.namespace}}],
                           "services": k3s}}


def run_floor(bench: BenchFleet, work: Path, parallelism: int) -> tuple[Timing, dict[str, Any]]:
    spec = work / "apply-floor-spec.json"
    spec.write_text(json.dumps(floor_spec(bench, parallelism)))
    out, err = work / "floor.stdout", work / "floor.stderr"
    cmd = [sys.executable, str(REPO / "bench" / "apply_floor.py"), "--spec", str(spec)]
    child = timed(cmd, child_env(bench.fleet, work.parent / "cache"), out, err)
    if child.returncode != 0:
        tail = "\n".join((out.read_text(errors="replace") + err.read_text(errors="replace")).strip().splitlines()[-30:])
        raise BenchError(f"`{' '.join(cmd)}` exited {child.returncode}:\n{tail}")
    answer = json.loads(out.read_text().strip().splitlines()[-1])
    if answer["verified"] != bench.size:
        raise BenchError(f"the floor verified {answer['verified']} of {bench.size} services: {answer.get('failures')}")
    return Timing(child.wall_s, child.cpu_s, child.peak_mib), answer


# -- teardown


def teardown(bench: BenchFleet) -> None:
    """Remove what a deploy of the fleet made: containers, networks, Compose dirs, the namespace, images."""
    for url in ENGINES.values():
        client = docker.DockerClient(base_url=url, version="1.41", timeout=120)
        try:
            label = f"com.docker.compose.project={bench.project}"
            for c in client.containers.list(all=True, filters={"label": label}):
                c.remove(force=True)
            for n in client.networks.list(filters={"label": label}):
                n.remove()
            for image in client.images.list():
                if any(t.startswith((f"{REGISTRY}/{PREFIX}/svc-", "unidesk-svc-")) for t in image.tags) and \
                        (image.labels or {}).get("unidesk.ai/source-commit") == bench.fleet.commit:
                    client.images.remove(image.id, force=True)
        finally:
            client.close()
    for host in ("main-server", "D601"):
        shutil.rmtree(f"{SAMPLE_CONFIG['hosts'][host]['composeRoot']}/{bench.project}", ignore_errors=True)
    delete_namespace(bench.namespace)
    ctr = ["ctr", "--address", K3S["containerdSocket"], "-n", "k8s.io"]
    listed = subprocess.run([*ctr, "images", "ls", "-q"], capture_output=True, text=True, check=False).stdout.split()
    ours = [r for r in listed if bench.fleet.commit in r and ("/svc-" in r or "unidesk-svc-" in r)]
    if ours:
        subprocess.run([*ctr, "images", "rm", *ours], capture_output=True, check=False)


def delete_namespace(name: str) -> None:
    from kubernetes import client, config

    with open(K3S["kubeconfig"], encoding="utf-8") as f:
        api = client.CoreV1Api(config.new_client_from_config_dict(yaml.safe_load(f)))
    try:
        api.delete_namespace(name)
    except client.ApiException as exc:
        if exc.status == 404:
            return
        raise
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            api.read_namespace(name)
        except client.ApiException as exc:
            if exc.status == 404:
                return
        time.sleep(0.3)
    log(f"namespace {name} still there after 60 s")


# -- one size


def bench_size(size: int, root: Path, args: argparse.Namespace, token: str) -> dict[str, Any]:
    work = root / f"fleet-{size}"
    t0 = time.perf_counter()
    bench = make_fleet(work, size, f"{token}{size}")
    maker = ImageMaker(REGISTRY)
    p = args.parallelism
    try:
        publish(bench, maker)
        log(f"size {size}: fleet generated and {size} images pushed in {time.perf_counter() - t0:.1f}s")
        first = plan(bench, work, "plan", p, "deploy")
        deploy_watch = watch(bench)
        deploy_watch.start()
        deploy = apply(bench, work, "apply", first, p)
        deploy_seen = deploy_watch.stop()
        log(f"size {size}: udeploy apply {deploy.wall_s:.2f}s")
        again = plan(bench, work, "noop-plan", p, "noop")
        watcher = watch(bench)
        watcher.start()
        noop = apply(bench, work, "noop-apply", again, p)
        seen = watcher.stop()
        log(f"size {size}: no-op apply {noop.wall_s:.2f}s, engine events {seen['counts'] or 'none'}")
        teardown(bench)
        floor_watch = watch(bench)
        floor_watch.start()
        floor, answer = run_floor(bench, work, p)
        floor_seen = floor_watch.stop()
        log(f"size {size}: floor {floor.wall_s:.2f}s")
        deploys, floors = [deploy], [floor]
        for i in range(2, args.repeat + 1):  # paired runs again, from the same empty state each time
            teardown(bench)
            deploys.append(apply(bench, work, f"apply-{i}", plan(bench, work, f"plan-{i}", p, "deploy"), p))
            teardown(bench)
            floors.append(run_floor(bench, work, p)[0])
            log(f"size {size} run {i}/{args.repeat}: udeploy apply {deploys[-1].wall_s:.2f}s, "
                f"floor {floors[-1].wall_s:.2f}s")
        deploy, floor = median(deploys), median(floors)
    finally:
        teardown(bench)
        failures = maker.delete_all()
        if failures:
            log("could not delete: " + "; ".join(failures))
    return {"size": size, "parallelism": p,
            "udeploy": vars(deploy), "floor": vars(floor), "floorCalls": answer["calls"],
            "ratioWall": round(deploy.wall_s / floor.wall_s, 2),
            "ratioCpu": round(deploy.cpu_s / floor.cpu_s, 2) if floor.cpu_s else None,
            "noop": vars(noop), "noopEvents": seen["counts"], "noopEventLog": seen["events"][:50],
            "deployEvents": deploy_seen["counts"], "floorEvents": floor_seen["counts"],
            "deployRequests": deploy_seen["api"], "floorRequests": floor_seen["api"], "noopRequests": seen["api"]}


def median(runs: list[Timing]) -> Timing:
    """Median wall and CPU of paired runs; the largest peak memory."""
    return Timing(statistics.median(r.wall_s for r in runs), statistics.median(r.cpu_s for r in runs),
                  max(r.peak_mib for r in runs))


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (f"{'size':>5} | {'P':>3} | {'udeploy wall':>12} | {'CPU s':>6} | {'MiB':>6} | {'floor wall':>10} | "
              f"{'CPU s':>6} | {'MiB':>6} | {'/floor wall':>11} | {'/floor CPU':>10} | {'no-op wall':>10} | "
              f"no-op engine events")
    print(header)
    print("-" * len(header))
    for r in rows:
        u, f, n = r["udeploy"], r["floor"], r["noop"]
        events = ", ".join(f"{k} {v}" for k, v in sorted(r["noopEvents"].items())) or "none"
        print(f"{r['size']:>5} | {r['parallelism']:>3} | {u['wall_s']:>12.2f} | {u['cpu_s']:>6.2f} | "
              f"{u['peak_mib']:>6.1f} | {f['wall_s']:>10.2f} | {f['cpu_s']:>6.2f} | {f['peak_mib']:>6.1f} | "
              f"{_ratio(r['ratioWall']):>11} | {_ratio(r['ratioCpu']):>10} | "
              f"{n['wall_s']:>10.2f} | {events}")
    for r in rows:
        calls = ", ".join(f"{n} {k}" for k, n in sorted(r["floorCalls"].items(), key=lambda kv: -kv[1]))
        print(f"floor calls at {r['size']}: {calls}")
        kinds = sorted(set(r["deployEvents"]) | set(r["floorEvents"]))
        print(f"engine events at {r['size']} (udeploy / floor): "
              + ", ".join(f"{k} {r['deployEvents'].get(k, 0)}/{r['floorEvents'].get(k, 0)}" for k in kinds))
        kinds = sorted(set(r["deployRequests"]) | set(r["floorRequests"]))
        print(f"API requests at {r['size']} (udeploy / floor; no-op apply): "
              + ", ".join(f"{k} {r['deployRequests'].get(k, 0)}/{r['floorRequests'].get(k, 0)}" for k in kinds)
              + f"; no-op: {', '.join(f'{k} {v}' for k, v in sorted(r['noopRequests'].items())) or 'none'}")


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"x{value:.2f}"


def goals(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = [{"goal": f"apply of {r['size']} <= {GOAL_RATIO}x the floor (wall)", "figure": f"x{r['ratioWall']:.2f}",
            "met": r["ratioWall"] <= GOAL_RATIO} for r in rows]
    for r in rows:
        bad = {k: v for k, v in r["noopEvents"].items() if any(k.endswith(w) for w in NOOP_KEYS)}
        out.append({"goal": f"no-op apply of {r['size']}: zero pulls, imports and recreates (engine events)",
                    "figure": ", ".join(f"{k} {v}" for k, v in bad.items()) or "0 events", "met": not bad})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 bench/apply_fleet.py", description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=parse_sizes, default=parse_sizes("6,30"), help="fleet sizes (default 6,30)")
    parser.add_argument("--parallelism", type=int, default=10, help="apply --parallelism and the floor's (default 10)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="paired deploy/floor runs per size; the table shows medians (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (repos, plans, logs)")
    args = parser.parse_args(argv)
    if args.parallelism < 1 or args.repeat < 1:
        parser.error("--parallelism and --repeat must be at least 1")
    problems = lab_problems(SAMPLE_CONFIG)
    if problems:
        print(f"{LAB_DOWN}\n  " + "\n  ".join(problems), file=sys.stderr)
        return 2
    token = uuid.uuid4().hex[:6]
    root = Path(tempfile.mkdtemp(prefix=f"udeploy-apply-bench-{token}-"))
    rows: list[dict[str, Any]] = []
    try:
        for size in args.sizes:
            rows.append(bench_size(size, root, args, token))
    except (BenchError, RegistryError) as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return getattr(exc, "status", 1)
    finally:
        if args.keep:
            print(f"bench: kept {root}", file=sys.stderr)
        else:
            shutil.rmtree(root, ignore_errors=True)
    found = goals(rows)
    print()
    print_table(rows)
    print()
    print("goals (issue 11; printed, never asserted):")
    for g in found:
        print(f"  [{'met' if g['met'] else 'NOT MET'}] {g['goal']}: {g['figure']}")
    print(json.dumps({"benchmark": "apply_fleet", "parallelism": args.parallelism, "cpus": os.cpu_count(),
                      "results": rows, "goals": found}, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
