"""What the engines themselves saw during a window: Docker events, containerd events, Deployment versions.

Used to count the pulls, tags, imports and recreates of an apply from the engines' side, never from
udeploy's own log. `EngineWatch` is started before the command and stopped after it:

- Docker: `GET /events?since&until` on each engine after the window (the engine keeps a buffer),
  kept when the event concerns the watched images (by name) or containers (by Compose project);
- containerd: `ctr events` streams during the window; `/images/create|update` are imports and tags,
  `/containers/create` and `/tasks/start` are (re)started pod containers, for the watched images;
- Kubernetes: each Deployment's generation and resourceVersion and each Pod's uid, before and after.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import docker
import yaml
from kubernetes import client as kube_client
from kubernetes import config as kube_config

DOCKER_ACTIONS = ("pull", "tag", "untag", "create", "destroy", "start", "die")


class EngineWatch:
    def __init__(self, engines: Mapping[str, str], *, containerd_socket: str | None, kubeconfig: str | None,
                 namespace: str | None, image_match: Callable[[str], bool], project_match: Callable[[str], bool],
                 ) -> None:
        self.engines, self.containerd_socket = dict(engines), containerd_socket
        self.kubeconfig, self.namespace = kubeconfig, namespace
        self.image_match, self.project_match = image_match, project_match
        self._since = 0.0
        self._ctr: subprocess.Popen[str] | None = None
        self._before: dict[str, Any] = {}

    def start(self) -> None:
        self._before = self._kube_snapshot()
        if self.containerd_socket:
            self._ctr = subprocess.Popen(["ctr", "--address", self.containerd_socket, "events"],
                                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            time.sleep(0.3)  # subscribed before the window opens
        self._since = time.time()

    def stop(self) -> dict[str, Any]:
        """Counts by engine and kind, and the events themselves (short form)."""
        until = time.time() + 0.5
        time.sleep(0.6)
        counts: Counter[str] = Counter()
        seen: list[str] = []
        for host, url in self.engines.items():
            api = docker.APIClient(base_url=url, version="1.41", timeout=60)
            try:
                for e in api.events(since=int(self._since), until=int(until) + 1, decode=True):
                    if e.get("timeNano", e.get("time", 0) * 1e9) / 1e9 < self._since:
                        continue  # `since` is whole seconds: what came just before the window is dropped
                    key = self._docker_key(e)
                    if key:
                        counts[f"{host} {key}"] += 1
                        seen.append(f"{host} {key} {(e.get('Actor') or {}).get('Attributes', {}).get('name', '')}")
            finally:
                api.close()
        if self._ctr is not None:
            self._ctr.terminate()
            out, _ = self._ctr.communicate(timeout=10)
            for line in out.splitlines():
                key = self._containerd_key(line)
                if key:
                    counts[f"containerd {key}"] += 1
                    seen.append(f"containerd {line[:200]}")
        after = self._kube_snapshot()
        for name, (gen, rv) in after.get("deployments", {}).items():
            was = self._before.get("deployments", {}).get(name)
            if was is None:
                counts["k8s Deployment created"] += 1
            elif was[1] != rv:
                counts["k8s Deployment changed"] += 1
                if was[0] != gen:
                    counts["k8s Deployment generation bumped"] += 1
        new_pods = set(after.get("pods", ())) - set(self._before.get("pods", ()))
        if new_pods:
            counts["k8s Pod created"] += len(new_pods)
        return {"counts": dict(counts), "events": seen}

    def _docker_key(self, e: Mapping[str, Any]) -> str | None:
        kind, action = e.get("Type"), str(e.get("Action", "")).split(":")[0]
        attrs = (e.get("Actor") or {}).get("Attributes") or {}
        if action not in DOCKER_ACTIONS:
            return None
        if kind == "image" and (self.image_match(str(e.get("id", ""))) or self.image_match(attrs.get("name", ""))):
            return f"image {action}"
        if kind == "container" and self.project_match(attrs.get("com.docker.compose.project", "")):
            return f"container {action}"
        return None

    def _containerd_key(self, line: str) -> str | None:
        topic = next((t for t in ("/images/create", "/images/update", "/images/delete", "/containers/create",
                                  "/tasks/start") if f" {t} " in f" {line} "), None)
        if topic is None:
            return None
        return topic if self.image_match(line) else None

    def _kube_snapshot(self) -> dict[str, Any]:
        if not (self.kubeconfig and self.namespace):
            return {}
        with open(self.kubeconfig, encoding="utf-8") as f:
            api = kube_config.new_client_from_config_dict(yaml.safe_load(f))
        try:
            apps, core = kube_client.AppsV1Api(api), kube_client.CoreV1Api(api)
            try:
                deployments = apps.list_namespaced_deployment(self.namespace).items
                pods = core.list_namespaced_pod(self.namespace).items
            except kube_client.ApiException as exc:
                if exc.status == 404:
                    return {"deployments": {}, "pods": []}
                raise
            return {"deployments": {d.metadata.name: (d.metadata.generation, d.metadata.resource_version)
                                    for d in deployments},
                    "pods": [p.metadata.uid for p in pods]}
        finally:
            api.close()


def summary(counts: Mapping[str, int], keys: Iterable[str]) -> str:
    return ", ".join(f"{k} {counts.get(k, 0)}" for k in keys)


def dump(doc: Any) -> str:
    return json.dumps(doc, separators=(",", ":"))


class AccessLog:
    """Requests an HTTP server logged during a window (the lab's Kubernetes API emulator and registry
    write access logs): counted by method and resource, for the lines `keep` accepts."""

    REQUEST = re.compile(r'"(GET|HEAD|PATCH|POST|PUT|DELETE) (\S+) HTTP/')

    def __init__(self, path: str, keep: Callable[[str], bool], resource: Callable[[str], str]) -> None:
        self.path, self.keep, self.resource = path, keep, resource
        self._offset = 0

    def start(self) -> None:
        self._offset = os.path.getsize(self.path) if os.path.exists(self.path) else 0

    def stop(self) -> dict[str, int]:
        if not os.path.exists(self.path):
            return {}
        with open(self.path, "rb") as f:
            f.seek(self._offset)
            text = f.read().decode(errors="replace")
        counts: Counter[str] = Counter()
        for line in text.splitlines():
            m = self.REQUEST.search(line)
            if m and self.keep(m.group(2)):
                counts[f"{m.group(1)} {self.resource(m.group(2).split('?')[0])}"] += 1
        return dict(counts)


def kube_resource(path: str) -> str:
    """`/apis/apps/v1/namespaces/ns/deployments/x` -> `deployments`; service proxy -> `service proxy`."""
    if "/proxy/" in path or path.endswith("/proxy"):
        return "service proxy"
    parts = path.strip("/").split("/")
    if "namespaces" in parts:
        i = parts.index("namespaces")
        return parts[i + 2] if len(parts) > i + 2 else "namespace"
    return parts[-1]


def registry_resource(path: str) -> str:
    """`/v2/unidesk/svc-0001/manifests/tag` -> `manifests`."""
    parts = path.strip("/").split("/")
    return next((p for p in ("manifests", "blobs", "uploads") if p in parts[::-1]), parts[-1])
