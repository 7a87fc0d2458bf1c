#!/usr/bin/env python3
"""The engine-call floor of an apply: deploy a fleet with only the calls a deploy must make, nothing of udeploy.

`bench/apply_fleet.py` runs this as its own process, from the same empty state udeploy's apply
started from, and times it the same way (wall, CPU, peak RSS from wait4; interpreter start and
imports included). At most `parallelism` services are in flight, as with `udeploy apply
--parallelism`. The spec (`--spec FILE`, written by apply_fleet.py) names the fleet.

Per Compose service (docker SDK: the local socket, or SSH with the SDK's paramiko transport):
  pull the registry artifact, tag it `<local>:latest` and `<local>:<commit>`; write its env file
  (the project's compose file is written once per project, and every service's env file touched
  empty, before any service: Compose v1 loads them all to start one); `docker-compose
  -p P -f F up -d --no-build --no-deps --force-recreate <service>` run on the host (over SSH: an
  exec channel of the same connection), one at a time per project as Compose v1 needs (two `up`s
  of one project race to create its network); then poll its health on the host every 0.3 s (20 s at
  most) until it reports the commit, and inspect the container and its image (labels).
Per k3s service (kubernetes client REST layer, `ctr` against the k3s containerd):
  the namespace is applied once first; manifest HEAD in the registry (the digest to check),
  `ctr images pull --plain-http`, `ctr images tag --force` to the local name; server-side apply
  of the Service and of the Deployment already carrying the stamped image, env and annotations
  (one PATCH each); poll the Deployment every 0.3 s until its rollout is complete (observed
  generation, updated and available replicas); poll its health through the service proxy until
  it reports the commit; `ctr content get` of the image's config (labels).

Prints one JSON line: calls made by kind, services verified, failures.
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from io_floor import Engine, Reads, kube_api  # noqa: E402

POLL, HEALTH_TIMEOUT, ROLLOUT_TIMEOUT = 0.3, 20.0, 60.0
APPLY = "application/apply-patch+yaml"
MANIFEST_TYPES = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"


class Failed(Exception):
    pass


def until(read: Callable[[], Any], ok: Callable[[Any], bool], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if ok(value):
            return value
        if time.monotonic() >= deadline:
            raise Failed(f"{what}: not settled after {timeout:g} s (last: {str(value)[:200]})")
        time.sleep(POLL)


# -- Compose hosts


class ComposeHost:
    def __init__(self, spec: dict[str, Any], calls: Reads) -> None:
        self.spec, self.calls = spec, calls
        self.engine = Engine({"ssh": spec["ssh"]} if spec.get("ssh") else {"socket": spec["socket"]})
        self.project_lock = threading.Lock()
        self.project_dir = spec["projectDir"]
        self.compose_path = posixpath.join(self.project_dir, spec["file"])

    def run(self, command: str, stdin: bytes | None = None) -> tuple[int, str]:
        """A shell command on the host: a local process, or one exec channel of the SSH connection."""
        if not self.engine.ssh:
            done = subprocess.run(["sh", "-c", command], input=stdin, capture_output=True, check=False, timeout=300,
                                  env={**os.environ, "DOCKER_HOST": self.spec["socket"]})
            return done.returncode, (done.stdout + done.stderr).decode(errors="replace")
        channel = self.engine.adapter.ssh_client.get_transport().open_session()
        try:
            channel.exec_command(command)
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            out = channel.makefile("rb").read() + channel.makefile_stderr("rb").read()
            return channel.recv_exit_status(), out.decode(errors="replace")
        finally:
            channel.close()

    def write(self, path: str, data: bytes) -> None:
        if not self.engine.ssh:
            os.makedirs(posixpath.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(data)
        else:
            code, out = self.run(f"mkdir -p {shlex.quote(posixpath.dirname(path))} && cat > {shlex.quote(path)}",
                                 data)
            if code != 0:
                raise Failed(f"write {path}: {out}")
        self.calls.count("file write")

    def prepare(self) -> None:
        self.engine.api.version()  # opens the SSH connection before the exec channels use it
        self.calls.count("docker version")
        self.write(self.compose_path, self.spec["composeYaml"].encode())
        # Compose v1 loads every service's env_file even to start one: all exist (empty) before any `up`
        env_dir = posixpath.join(self.project_dir, "env")
        paths = [posixpath.join(env_dir, f"{s['service']}.env") for s in self.spec["services"]]
        code, out = self.run(f"mkdir -p {shlex.quote(env_dir)} && touch {shlex.join(paths)}")
        self.calls.count("touch env files")
        if code != 0:
            raise Failed(f"touch env files: {out}")

    def deploy(self, svc: dict[str, Any], health_path: str) -> None:
        api, image = self.engine.api, svc["image"]
        repository, _, tag = image.rpartition(":")
        api.pull(repository, tag=tag)
        self.calls.count("docker pull")
        for t in svc["tags"]:
            api.tag(image, svc["localImage"], t, force=True)
            self.calls.count("docker tag")
        body = "".join(f"{k}={v}\n" for k, v in svc["env"].items()).encode()
        self.write(posixpath.join(self.project_dir, "env", f"{svc['service']}.env"), body)
        up = ["docker-compose", "-p", self.spec["project"], "-f", self.compose_path, "up", "-d", "--no-build",
              "--no-deps", "--force-recreate", svc["service"]]
        with self.project_lock:
            code, out = self.run(f"cd {shlex.quote(self.project_dir)} && {shlex.join(up)}")
        self.calls.count("compose up")
        if code != 0:
            raise Failed(f"{svc['service']}: compose up exited {code}: {out[-500:]}")
        url = f"http://127.0.0.1:{svc['healthPort']}{health_path}"
        until(lambda: self.health(url), lambda doc: (doc or {}).get("deploy", {}).get("commit") == svc["commit"],
              HEALTH_TIMEOUT, f"{svc['service']} health")
        found = api.containers(filters={"label": [f"com.docker.compose.project={self.spec['project']}",
                                                  f"com.docker.compose.service={svc['service']}"]})
        self.calls.count("container list")
        inspected = api.inspect_container(found[0]["Id"])
        self.calls.count("container inspect")
        labels = (api.inspect_image(inspected["Image"]).get("Config") or {}).get("Labels") or {}
        self.calls.count("image inspect")
        if labels.get("unidesk.ai/source-commit") != svc["commit"]:
            raise Failed(f"{svc['service']}: image labels {labels}")

    def health(self, url: str) -> dict[str, Any] | None:
        self.calls.count("health GET")
        code, out = self.run(f"curl -sS -m 3 {shlex.quote(url)}") if self.engine.ssh else _local_get(url)
        try:
            return json.loads(out) if code == 0 else None
        except ValueError:
            return None


def _local_get(url: str) -> tuple[int, str]:
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return 0, r.read().decode(errors="replace")
    except OSError:
        return 1, ""


# -- k3s


class Cluster:
    def __init__(self, spec: dict[str, Any], registry: str, calls: Reads, parallelism: int) -> None:
        import requests
        from requests.adapters import HTTPAdapter

        self.spec, self.registry, self.calls = spec, registry, calls
        self.api = kube_api(spec["kubeconfig"], spec.get("context"))
        self.api.configuration.connection_pool_maxsize = max(4, parallelism)
        self.socket, self.namespace = spec["containerdSocket"], spec["namespace"]
        self.session = requests.Session()
        self.session.mount("http://", HTTPAdapter(pool_maxsize=max(4, parallelism)))

    def request(self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None,
                content_type: str = "application/json") -> tuple[int, Any]:
        headers = {"Accept": "application/json", "Content-Type": content_type}
        m, url, headers, data, _ = self.api.param_serialize(method, path, query_params=query or [],
                                                            header_params=headers, body=body,
                                                            auth_settings=["BearerToken"])
        response = self.api.call_api(m, url, header_params=headers, body=data, _request_timeout=10)
        raw = response.read()
        try:
            return response.status, json.loads(raw or b"null")
        except ValueError:
            return response.status, raw

    def server_side_apply(self, body: dict[str, Any]) -> None:
        kind, name = body["kind"], body["metadata"]["name"]
        group = "api/v1" if body["apiVersion"] == "v1" else f"apis/{body['apiVersion']}"
        plural = {"Namespace": "namespaces", "Service": "services", "Deployment": "deployments"}[kind]
        path = f"/{group}/{plural}/{name}" if kind == "Namespace" else \
            f"/{group}/namespaces/{self.namespace}/{plural}/{name}"
        status, answer = self.request("PATCH", path, body=body, content_type=APPLY,
                                      query=[("fieldManager", "floor"), ("force", "true")])
        self.calls.count(f"apply {kind}")
        if status >= 300:
            raise Failed(f"apply {kind}/{name}: HTTP {status} {str(answer)[:300]}")

    def ctr(self, *args: str) -> str:
        done = subprocess.run(["ctr", "--address", self.socket, "-n", "k8s.io", *args], capture_output=True,
                              text=True, timeout=600, check=False)
        self.calls.count(f"ctr {' '.join(a for a in args[:2] if not a.startswith('-'))}")
        if done.returncode != 0:
            raise Failed(f"ctr {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def prepare(self) -> None:
        for body in self.spec["foundation"]:
            self.server_side_apply(body)

    def deploy(self, svc: dict[str, Any], health_path: str) -> None:
        image = svc["image"]
        registry, _, rest = image.partition("/")
        repository, _, tag = rest.rpartition(":")
        head = self.session.head(f"http://{registry}/v2/{repository}/manifests/{tag}", timeout=10,
                                 headers={"Accept": MANIFEST_TYPES})
        self.calls.count("registry manifest HEAD")
        if head.status_code != 200:
            raise Failed(f"{image}: HTTP {head.status_code}")
        self.ctr("images", "pull", "--plain-http", image)
        local = svc["localImage"]
        stored = local if "/" in local.split(":")[0] else f"docker.io/library/{local}"
        self.ctr("images", "tag", "--force", image, stored)
        for body in svc["objects"]:
            body = json.loads(json.dumps(body))
            body["metadata"]["namespace"] = self.namespace
            if body["kind"] == "Deployment":
                template = body["spec"]["template"]
                container = template["spec"]["containers"][0]
                container["image"] = local
                stamped = svc["env"]
                container["env"] = [e for e in container.get("env", []) if e["name"] not in stamped] + [
                    {"name": k, "value": v} for k, v in stamped.items()]
                template.setdefault("metadata", {}).setdefault("annotations", {}).update(
                    {f"unidesk.ai/deploy-{k.removeprefix('UNIDESK_DEPLOY_').lower().replace('_', '-')}": v
                     for k, v in stamped.items()})
            self.server_side_apply(body)
        path = f"/apis/apps/v1/namespaces/{self.namespace}/deployments/{svc['deployment']}"

        def rolled_out(dep: Any) -> bool:
            meta, status = dep.get("metadata") or {}, dep.get("status") or {}
            want = int((dep.get("spec") or {}).get("replicas", 1))
            return (int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
                    and int(status.get("updatedReplicas") or 0) >= want
                    and int(status.get("replicas") or 0) == int(status.get("updatedReplicas") or 0)
                    and int(status.get("availableReplicas") or 0) >= want)

        until(lambda: self._get(path, "Deployment GET"), rolled_out, ROLLOUT_TIMEOUT, f"{svc['deployment']} rollout")
        proxy = f"/api/v1/namespaces/{self.namespace}/services/{svc['healthService']}:{svc['port']}/proxy/" \
                f"{health_path.lstrip('/')}"
        until(lambda: self._get(proxy, "health GET (service proxy)"),
              lambda doc: isinstance(doc, dict) and (doc.get("deploy") or {}).get("commit") == svc["commit"],
              HEALTH_TIMEOUT, f"{svc['service']} health")
        manifest_digest = next((line.split()[2] for line in self.ctr("images", "ls").splitlines()[1:]
                                if line.split()[0] == stored), None)
        manifest = json.loads(self.ctr("content", "get", manifest_digest or ""))
        config = json.loads(self.ctr("content", "get", manifest["config"]["digest"]))
        if (config.get("config") or {}).get("Labels", {}).get("unidesk.ai/source-commit") != svc["commit"]:
            raise Failed(f"{svc['service']}: image labels in containerd do not name {svc['commit']}")

    def _get(self, path: str, kind: str) -> Any:
        status, doc = self.request("GET", path)
        self.calls.count(kind)
        return doc if status == 200 else None


# -- the run


def run(spec: dict[str, Any]) -> dict[str, Any]:
    parallelism = max(1, int(spec.get("parallelism", 10)))
    health_path = spec.get("healthPath", "/health")
    calls = Reads()
    start = time.perf_counter()
    hosts = [ComposeHost(h, calls) for h in spec.get("compose", []) if h["services"]]
    kube = spec.get("kubernetes") or {}
    cluster = Cluster(kube, spec["registry"], calls, parallelism) if kube.get("services") else None
    failures: list[str] = []
    verified = 0
    lock = threading.Lock()

    def one(deploy: Callable[[dict[str, Any], str], None], svc: dict[str, Any]) -> None:
        nonlocal verified
        try:
            deploy(svc, health_path)
        except Exception as exc:  # noqa: BLE001 - reported, the run goes on as apply's walk would
            with lock:
                failures.append(f"{svc['service']}: {exc}")
            return
        with lock:
            verified += 1

    with ThreadPoolExecutor(max_workers=parallelism) as pool:
        for prepared in pool.map(lambda t: t.prepare(), [*hosts, *([cluster] if cluster else [])]):
            del prepared
        work = [(h.deploy, s) for h in hosts for s in h.spec["services"]]
        work += [(cluster.deploy, s) for s in kube["services"]] if cluster else []
        work.sort(key=lambda w: w[1]["service"])  # interleaved over targets, as the plan's order is
        list(pool.map(lambda w: one(*w), work))
    return {"floor": "apply_floor", "parallelism": parallelism, "seconds": round(time.perf_counter() - start, 3),
            "calls": dict(calls.made), "totalCalls": sum(calls.made.values()), "verified": verified,
            "failures": failures}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 bench/apply_floor.py", description=__doc__.split("\n")[0])
    parser.add_argument("--spec", required=True, help="JSON written by bench/apply_fleet.py (floor_spec)")
    args = parser.parse_args(argv)
    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    answer = run(spec)
    print(json.dumps(answer, separators=(",", ":")))
    return 0 if not answer["failures"] else 1


if __name__ == "__main__":
    sys.exit(main())
