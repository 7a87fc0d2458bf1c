#!/usr/bin/env python3
"""The I/O floor of a refreshed plan: only the reads such a plan must make, with udeploy's client libraries.

`bench/plan_fleet.py` runs this as its own process beside each refreshed `udeploy plan` and times it
the same way (wall, CPU and peak RSS from wait4, interpreter start and imports included), so the
ratio udeploy/floor says how much udeploy adds on top of the round trips themselves.

The reads, given by a JSON spec (`--spec FILE`, written by plan_fleet.py; see `main`):

- registry: one manifest HEAD per artifact (requests, one keep-alive Session whose pool is as large
  as the reads in flight); the plan records only existence and digest (`Docker-Content-Digest`);
- Docker: one container list per engine and Compose project (the docker SDK, over the local socket
  or over SSH with the SDK's paramiko transport given the configured key), API version pinned so no
  version round trip is made;
- Kubernetes: one Deployment list per namespace, and one Pod list per namespace where a Deployment
  the plan asks for exists (the kubernetes client built from the kubeconfig file, JSON not models);
- per service that exists, what udeploy needs to judge it: Compose, an inspect of its newest
  container, an inspect of its image (labels) and one GET of its health port made on the host (a
  local GET, or `curl` in one exec channel of the same SSH connection); k3s, its image's config in
  containerd (`ctr images ls` once per host, then `ctr content get` of manifest and config) and one
  GET of its health through the API server's service proxy.

Nothing here imports udeploy. At most `parallelism` reads are in flight. Prints one JSON line: the
read counts by kind, how many answered, and the in-process wall time.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import docker
import paramiko
import requests
import yaml
from docker.transport import SSHHTTPAdapter
from kubernetes import client as kube_client
from kubernetes.config import kube_config
from requests.adapters import HTTPAdapter

ACCEPT = ", ".join(("application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.docker.distribution.manifest.v2+json"))
DOCKER_API = "1.41"
PROJECT_LABEL, SERVICE_LABEL = "com.docker.compose.project", "com.docker.compose.service"


class Reads:
    """Counts of reads by kind (thread-safe), and of those that got an answer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.made: Counter[str] = Counter()
        self.answered: Counter[str] = Counter()

    def count(self, kind: str, answered: bool = True) -> None:
        with self._lock:
            self.made[kind] += 1
            if answered:
                self.answered[kind] += 1


# -- registry


def registry_session(parallelism: int) -> requests.Session:
    session = requests.Session()
    adapter = HTTPAdapter(pool_connections=parallelism, pool_maxsize=parallelism)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def head_manifest(session: requests.Session, image: str, reads: Reads) -> str | None:
    """HEAD of the image's manifest: its digest, or None when absent. `image` is host/repo:tag."""
    registry, _, rest = image.partition("/")
    repository, _, tag = rest.rpartition(":")
    scheme = "http" if registry.startswith(("127.", "localhost")) else "https"
    response = session.head(f"{scheme}://{registry}/v2/{repository}/manifests/{tag}",
                            headers={"Accept": ACCEPT, "Accept-Encoding": "identity"}, timeout=10)
    reads.count("registry manifest HEAD")
    return response.headers.get("Docker-Content-Digest") if response.status_code == 200 else None


# -- Docker engines


class KeyedSSHAdapter(SSHHTTPAdapter):  # type: ignore[misc]
    """The SDK's paramiko transport with an explicit key and known_hosts (as udeploy's docker_ssh)."""

    def __init__(self, base_url: str, key_file: str | None, known_hosts: str | None) -> None:
        self._key_file, self._known_hosts = key_file, known_hosts
        super().__init__(base_url, timeout=120, max_pool_size=4, shell_out=False)

    def _create_paramiko_client(self, base_url: str) -> None:
        url = urllib.parse.urlparse(base_url)
        self.ssh_client = paramiko.SSHClient()
        self.ssh_params = {"hostname": url.hostname, "port": url.port or 22, "username": url.username,
                           "look_for_keys": self._key_file is None, "allow_agent": False, "timeout": 10}
        if self._key_file:
            self.ssh_params["key_filename"] = self._key_file
        if self._known_hosts:
            self.ssh_client.load_host_keys(self._known_hosts)
        else:
            self.ssh_client.load_system_host_keys()
        self.ssh_client.set_missing_host_key_policy(paramiko.RejectPolicy())

    def get_connection(self, url: str, proxies: Any = None) -> Any:
        pool = super().get_connection("http+docker://ssh", proxies)  # one pool per engine, not per URL
        pool.block = True
        return pool


class Engine:
    """One Docker engine: a local socket or SSH; `http_get` runs on that host."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.ssh = spec.get("ssh")
        if self.ssh:
            url = f"ssh://{self.ssh['user']}@{self.ssh['host']}:{self.ssh['port']}"
            self.api = docker.APIClient(base_url=url, use_ssh_client=True, version=DOCKER_API, timeout=120)
            self.adapter = KeyedSSHAdapter(url, self.ssh.get("keyFile"), self.ssh.get("knownHosts"))
            self.api._custom_adapter = self.adapter
            self.api.mount("http+docker://ssh", self.adapter)
        else:
            self.api = docker.APIClient(base_url=spec["socket"], version=DOCKER_API, timeout=120)

    def http_get(self, url: str) -> int | None:
        """The status of a GET made on the host (over SSH: curl in one exec channel), None: no answer."""
        if not self.ssh:
            try:
                with urllib.request.urlopen(url, timeout=3) as answer:
                    answer.read()
                    return int(answer.status)
            except urllib.error.HTTPError as exc:
                return exc.code
            except OSError:
                return None
        transport = self.adapter.ssh_client.get_transport()  # opened by the container list before this
        channel = transport.open_session()
        try:
            channel.exec_command(f"curl -sS -m 3 -o /dev/null -w '%{{http_code}}' {shlex.quote(url)}")
            out = channel.makefile("rb").read().decode().strip()
        finally:
            channel.close()
        return int(out) if out.isdigit() and out != "000" else None


def list_project(engine: Engine, project: str, reads: Reads) -> dict[str, list[dict[str, Any]]]:
    found = engine.api.containers(all=True, filters={"label": [f"{PROJECT_LABEL}={project}"]})
    reads.count("container list")
    by_service: dict[str, list[dict[str, Any]]] = {}
    for summary in found:
        by_service.setdefault((summary.get("Labels") or {}).get(SERVICE_LABEL, ""), []).append(summary)
    return by_service


def read_container(engine: Engine, summaries: list[dict[str, Any]], port: int, path: str, reads: Reads) -> None:
    newest = max(summaries, key=lambda c: (c.get("State") == "running", c.get("Created", 0)))
    inspected = engine.api.inspect_container(newest["Id"])
    reads.count("container inspect")
    engine.api.inspect_image(inspected["Image"])
    reads.count("image inspect")
    if (inspected.get("State") or {}).get("Status") == "running":
        status = engine.http_get(f"http://127.0.0.1:{port}{path}")
        reads.count("health GET (on the host)", answered=status is not None)


# -- Kubernetes


def kube_api(kubeconfig: str, context: str | None) -> kube_client.ApiClient:
    with open(kubeconfig, encoding="utf-8") as f:
        doc = yaml.safe_load(f)
    configuration = kube_client.Configuration()
    kube_config.load_kube_config_from_dict(doc, context=context, client_configuration=configuration,  # type: ignore[no-untyped-call]
                                           persist_config=False)
    return kube_client.ApiClient(configuration=configuration)


def kube_get(api: kube_client.ApiClient, path: str, *, timeout: float) -> Any:
    """One GET through the client's REST layer (auth from the kubeconfig), the body read."""
    method, url, headers, body, _ = api.param_serialize("GET", path, header_params={"Accept": "application/json, */*"},
                                                        auth_settings=["BearerToken"])
    response = api.call_api(method, url, header_params=headers, body=body, _request_timeout=timeout)
    response.read()  # type: ignore[no-untyped-call]
    return response


def list_json(api: kube_client.ApiClient, path: str, reads: Reads, kind: str) -> list[dict[str, Any]]:
    """GET of a list path, parsed as plain JSON (udeploy reads JSON, not the client's models)."""
    response = kube_get(api, path, timeout=10)
    reads.count(kind)
    if response.status == 404:
        return []
    return list((json.loads(response.data or b"null") or {}).get("items") or [])


def service_health(api: kube_client.ApiClient, namespace: str, service: str, port: int, path: str,
                   reads: Reads) -> None:
    url = f"/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy/{path.lstrip('/')}"
    response = kube_get(api, url, timeout=5)
    reads.count("health GET (service proxy)", answered=response.status < 500)


def ctr(socket: str, *args: str) -> str:
    done = subprocess.run(["ctr", "--address", socket, "-n", "k8s.io", *args], capture_output=True, text=True,
                          timeout=60, check=False)
    return done.stdout if done.returncode == 0 else ""


def image_config(socket: str, stored: dict[str, str], image: str, reads: Reads) -> None:
    """containerd's manifest then config of a Deployment's image (its labels), when stored."""
    digest = stored.get(image) or stored.get(f"docker.io/library/{image}")
    if digest is None:
        return
    manifest = json.loads(ctr(socket, "content", "get", digest) or "{}")
    reads.count("ctr content get")
    if "manifests" in manifest and manifest["manifests"]:
        manifest = json.loads(ctr(socket, "content", "get", manifest["manifests"][0]["digest"]) or "{}")
        reads.count("ctr content get")
    if "config" in manifest:
        ctr(socket, "content", "get", manifest["config"]["digest"])
        reads.count("ctr content get")


# -- the run


def run(spec: dict[str, Any]) -> dict[str, Any]:
    parallelism = max(1, int(spec.get("parallelism", 10)))
    health_path = spec.get("healthPath", "/health")
    reads = Reads()
    pool = ThreadPoolExecutor(max_workers=parallelism)
    later: list[Future[Any]] = []

    def submit(fn: Callable[..., Any], *args: Any) -> Future[Any]:
        later.append(pool.submit(fn, *args))
        return later[-1]

    def engine_reads(engine_spec: dict[str, Any]) -> None:
        engine = Engine(engine_spec)
        for project, services in engine_spec["projects"].items():
            listed = list_project(engine, project, reads)
            for service, port in services.items():
                if listed.get(service):
                    submit(read_container, engine, listed[service], port, health_path, reads)

    def cluster_reads(cluster: dict[str, Any]) -> None:
        api = kube_api(cluster["kubeconfig"], cluster.get("context"))
        socket = cluster.get("containerdSocket")
        stored: dict[str, str] | None = None
        for namespace, wanted in cluster["namespaces"].items():
            listed = list_json(api, f"/apis/apps/v1/namespaces/{namespace}/deployments", reads, "Deployment list")
            deployments = {d["metadata"]["name"]: d for d in listed}
            present = [w for w in wanted if w["deployment"] in deployments]
            if not present:
                continue
            list_json(api, f"/api/v1/namespaces/{namespace}/pods", reads, "Pod list")
            if socket and stored is None:
                lines = ctr(socket, "images", "ls").splitlines()[1:]
                reads.count("ctr images ls")
                stored = {cols[0]: cols[2] for cols in (line.split() for line in lines) if len(cols) >= 3}
            for w in present:
                containers = deployments[w["deployment"]]["spec"]["template"]["spec"]["containers"]
                if socket and stored is not None:
                    submit(image_config, socket, stored, containers[0]["image"], reads)
                submit(service_health, api, namespace, w["healthService"], w["port"], health_path, reads)

    start = time.perf_counter()
    session = registry_session(parallelism)
    heads: dict[str, Future[Any]] = {}
    with pool, session:
        # the slow few first (an SSH handshake, a namespace list), then the many HEADs
        for engine_spec in spec.get("docker", []):
            submit(engine_reads, engine_spec)
        for cluster in spec.get("kubernetes", []):
            submit(cluster_reads, cluster)
        for image in spec.get("registry", {}).get("images", []):
            heads[image] = submit(head_manifest, session, image, reads)
        done = 0
        while done < len(later):  # per-service reads are submitted by the lists as they answer
            later[done].result()
            done += 1
    return {"floor": "io_floor", "parallelism": parallelism, "seconds": round(time.perf_counter() - start, 3),
            "reads": dict(reads.made), "answered": dict(reads.answered), "totalReads": sum(reads.made.values()),
            "artifactsFound": sum(1 for f in heads.values() if f.result() is not None)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 bench/io_floor.py", description=__doc__.split("\n")[0])
    parser.add_argument("--spec", required=True, help="JSON: parallelism, healthPath, registry.images, "
                        "docker[{socket|ssh, projects{project: {service: healthPort}}}], "
                        "kubernetes[{kubeconfig, context, containerdSocket, namespaces{ns: "
                        "[{deployment, healthService, port}]}}]")
    args = parser.parse_args(argv)
    with open(args.spec, encoding="utf-8") as f:
        spec = json.load(f)
    print(json.dumps(run(spec), separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
