"""The lab controller: what the deployment controller, kubelet and endpoints controller do, in small.

Every tick (and at once after a user write) it reads Deployments, Services and Pods through the
API with the official client, and:

- runs each Deployment's pod template (first container) as one container in the k3s containerd
  (`ctr run -d --net-host`), env from the template plus `PORT=<a free port>` and
  `LISTEN_ADDR=127.0.0.1` (the sample images bind loopback only); a changed template
  (image, env, annotations, ...) gets a new container, and the old one goes once the new one
  answers HTTP (RollingUpdate) or before it starts (Recreate); a deleted Deployment loses it;
- reports Deployment status the way `kubectl rollout status` reads it, and a Pod per container
  whose containerStatuses say Running, or waiting with ImagePullBackOff (image not in containerd),
  CreateContainerConfigError (missing ConfigMap/Secret key) or CrashLoopBackOff;
- keeps Endpoints (127.0.0.1:PORT of matching Pods) for Services with a selector: the service
  proxy reads them.

One container stands for all `spec.replicas` (the counts in status are scaled to match).
"""

import base64
import hashlib
import json
import logging
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from containerd import Ctr, CtrError
from kubeapi import now
from kubernetes import client
from kubernetes.client.rest import ApiException
from svcproxy import LOG_ANNOTATION

log = logging.getLogger("kubelab.controller")

PREFIX = "kubelab."  # containerd IDs: kubelab.<namespace>.<deployment>.<template hash>
MANAGED = "lab.udeploy/container"  # annotation on the Pods and Endpoints the controller owns
PORT_ANNOTATION = "lab.udeploy/port"
_no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class ConfigError(Exception):
    pass


@dataclass
class Replica:
    """One container run from one revision of a pod template (what a Pod is)."""

    pod: str
    revision: str
    container: str
    port: int
    image: str
    labels: dict[str, str]
    created: str = field(default_factory=now)
    started: str | None = None  # None: not running (see `waiting`)
    waiting: tuple[str, str] | None = None  # (reason, message)
    ready: bool = False
    restarts: int = 0
    retry_at: float = 0.0


class Controller:
    def __init__(self, api: client.ApiClient, ctr: Ctr, log_dir: Path, interval: float = 0.5) -> None:
        self.core, self.apps = client.CoreV1Api(api), client.AppsV1Api(api)
        self.ctr, self.log_dir, self.interval = ctr, log_dir, interval
        self.replicas: dict[tuple[str, str], dict[str, Replica]] = {}  # (ns, deployment) -> revision -> ...
        self.wake, self._stopping = threading.Event(), threading.Event()
        self._containerd_up: bool | None = None
        self._errors: dict[tuple[str, str], str] = {}

    # --- loop ---------------------------------------------------------------------------------

    def run(self) -> None:
        while not self._stopping.is_set():
            self.wake.clear()
            self._guarded(("*", "*"), self.tick)
            self.wake.wait(self.interval)
        for replicas in self.replicas.values():
            for replica in replicas.values():
                try:
                    self._remove(replica)
                except CtrError as exc:
                    log.warning("%s", exc)
        log.info("stopped")

    def stop(self) -> None:
        self._stopping.set()
        self.wake.set()

    def tick(self) -> None:
        try:
            images, tasks = self.ctr.images(), self.ctr.tasks()
        except CtrError as exc:
            if self._containerd_up is not False:
                log.warning("containerd unreachable, waiting for it: %s", exc)
            self._containerd_up = False
            return
        if self._containerd_up is None:  # first contact: containers of an earlier run are stale
            for container in self.ctr.containers():
                if container.startswith(PREFIX):
                    log.info("removing stale container %s", container)
                    self.ctr.remove(container)
            tasks = {}
        self._containerd_up = True

        # Order matters to clients: Endpoints leave a replaced container before it goes, and a
        # rollout reads complete only once Endpoints lead to the new container.
        deployments = _items(self.apps.list_deployment_for_all_namespaces)
        retired: list[Replica] = []
        for dep in deployments:
            key = (dep["metadata"]["namespace"], dep["metadata"]["name"])
            self._guarded(key, self._reconcile, dep, self.replicas.setdefault(key, {}), images, tasks, retired)
        live = {(d["metadata"]["namespace"], d["metadata"]["name"]) for d in deployments}
        for key in set(self.replicas) - live:
            log.info("deployment %s/%s is gone", *key)
            retired += self.replicas.pop(key).values()
        self._sync_endpoints()
        for replica in retired:
            self._remove(replica)
        self._sync_pods(deployments)
        for dep in deployments:
            key = (dep["metadata"]["namespace"], dep["metadata"]["name"])
            self._guarded(key, self._write_status, dep, self.replicas[key])

    def _guarded(self, key: tuple[str, str], step: Any, *args: Any) -> None:
        """Run a step for one Deployment (or "*/*"): an error must not stall the others, nor be
        logged again every tick while it lasts."""
        try:
            step(*args)
            self._errors.pop(key, None)
        except Exception as exc:
            if self._errors.get(key) != repr(exc):
                log.exception("%s/%s: %s failed", *key, step.__name__)
            self._errors[key] = repr(exc)

    # --- containers ---------------------------------------------------------------------------

    def _reconcile(self, dep: dict, replicas: dict[str, Replica], images: set[str], tasks: dict[str, str],
                   retired: list[Replica]) -> None:
        """Containers for one Deployment; replaced ones are moved to `retired` (removed by the caller)."""
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        spec, template = dep["spec"], dep["spec"]["template"]
        revision = _revision(template)

        for replica in replicas.values():  # a container that exited: kubelet restarts it, backing off
            if replica.started and tasks.get(replica.container) != "RUNNING":
                replica.restarts += 1
                replica.started, replica.ready = None, False
                replica.retry_at = time.monotonic() + min(2**replica.restarts, 30)
                replica.waiting = ("CrashLoopBackOff", f"back-off restarting failed container {replica.container}")
                log.warning("%s/%s: container %s exited", ns, name, replica.container)

        current = replicas.get(revision) if spec.get("replicas", 1) > 0 else None
        if spec.get("replicas", 1) > 0 and current is None:
            if spec.get("strategy", {}).get("type") == "Recreate":
                for old in list(replicas):  # first, not after: Recreate never runs two at once
                    self._remove(replicas.pop(old))
            container = template["spec"]["containers"][0]
            current = replicas[revision] = Replica(
                pod=f"{name}-{revision}-{secrets.token_hex(3)[:5]}", revision=revision,
                container=f"{PREFIX}{ns}.{name}.{revision}", port=_free_port(), image=container.get("image", ""),
                labels={**(template.get("metadata", {}).get("labels") or {}), "pod-template-hash": revision},
            )
        if current and current.started is None and time.monotonic() >= current.retry_at:
            self._start(dep, current, images)
        if current and current.started and not current.ready:
            current.ready = _answers(current.port, template["spec"]["containers"][0].get("readinessProbe"))
            if current.ready:
                log.info("%s/%s: %s ready on port %d", ns, name, current.container, current.port)
        # Replaced ones go once the new one is ready (scaled to zero: all go).
        for old in [r for r in replicas if current is None or (r != revision and current.ready)]:
            retired.append(replicas.pop(old))

    def _start(self, dep: dict, replica: Replica, images: set[str]) -> None:
        ns, name = dep["metadata"]["namespace"], dep["metadata"]["name"]
        container = dep["spec"]["template"]["spec"]["containers"][0]
        image = self.ctr.find_image(replica.image, images)
        if image is None:
            if not replica.waiting or replica.waiting[0] != "ImagePullBackOff":
                log.warning("%s/%s: image %s is not in containerd", ns, name, replica.image)
            replica.waiting = ("ImagePullBackOff", f'Back-off pulling image "{replica.image}": not present '
                               "in the k3s containerd (the lab cannot pull; `ctr images import` it)")
            return
        try:
            env = self._env(ns, replica, container)
        except ConfigError as exc:
            replica.waiting = ("CreateContainerConfigError", str(exc))
            return
        # `command` replaces the image's entrypoint; `args` alone would need the image config: ignored.
        args = [*container["command"], *container.get("args", [])] if container.get("command") else []
        try:
            self.ctr.remove(replica.container)  # a leftover of a crash
            self.ctr.run(image, replica.container, env, args, self._log(replica), container.get("workingDir"))
        except CtrError as exc:
            replica.waiting, replica.retry_at = ("RunContainerError", str(exc)), time.monotonic() + 2
            log.warning("%s/%s: %s", ns, name, exc)
            return
        replica.started, replica.waiting = now(), None
        log.info("%s/%s: started %s (%s) on port %d", ns, name, replica.container, image, replica.port)

    def _env(self, ns: str, replica: Replica, container: dict) -> dict[str, str]:
        env: dict[str, str] = {}
        for source in container.get("envFrom") or []:
            ref = source.get("configMapRef") or source.get("secretRef")
            data = self._data(ns, "secretRef" in source, ref["name"], ref.get("optional", False)) or {}
            env.update({source.get("prefix", "") + k: v for k, v in data.items()})
        for var in container.get("env") or []:
            value_from = var.get("valueFrom") or {}
            if "value" in var or not value_from:
                env[var["name"]] = str(var.get("value", ""))
            elif ref := value_from.get("configMapKeyRef") or value_from.get("secretKeyRef"):
                data = self._data(ns, "secretKeyRef" in value_from, ref["name"], ref.get("optional", False))
                if data is not None and ref["key"] in data:
                    env[var["name"]] = data[ref["key"]]
                elif not ref.get("optional"):
                    raise ConfigError(f'couldn\'t find key {ref["key"]} in {ref["name"]}')
            elif field_ref := value_from.get("fieldRef"):
                fields = {"metadata.name": replica.pod, "metadata.namespace": ns,
                          "status.podIP": "127.0.0.1", "status.hostIP": "127.0.0.1", "spec.nodeName": "udeploy-lab"}
                env[var["name"]] = fields.get(field_ref.get("fieldPath"), "")
        env["PORT"] = str(replica.port)  # the lab's port wins: that is where the proxy goes
        env["LISTEN_ADDR"] = "127.0.0.1"  # host network: the sample images bind loopback only when told
        return env

    def _data(self, ns: str, secret: bool, name: str, optional: bool) -> dict[str, str] | None:
        try:
            if secret:
                raw = self.core.read_namespaced_secret(name, ns).data or {}
                return {k: base64.b64decode(v).decode(errors="replace") for k, v in raw.items()}
            return self.core.read_namespaced_config_map(name, ns).data or {}
        except ApiException as exc:
            if exc.status == 404 and optional:
                return None
            if exc.status == 404:
                raise ConfigError(f'{"secret" if secret else "configmap"} "{name}" not found') from exc
            raise

    def _log(self, replica: Replica) -> Path:
        return self.log_dir / f"{replica.container}.log"

    def _remove(self, replica: Replica) -> None:
        log.info("removing container %s", replica.container)
        self.ctr.remove(replica.container)

    # --- what the API shows -------------------------------------------------------------------

    def _write_status(self, dep: dict, replicas: dict[str, Replica]) -> None:
        meta, spec, old = dep["metadata"], dep["spec"], dep.get("status") or {}
        scale = spec.get("replicas", 1)
        revision = _revision(spec["template"])
        current = replicas.get(revision)
        total, ready = scale * len(replicas), scale * sum(r.ready for r in replicas.values())
        rs = f'ReplicaSet "{meta["name"]}-{revision}"'
        problem = f" {current.waiting[0]}: {current.waiting[1]}" if current and current.waiting else ""
        available = ready > 0 or scale == 0
        done = (current is None and scale == 0) or (current is not None and current.ready and len(replicas) == 1)
        conditions = [
            ("Available", available, "MinimumReplicasAvailable" if available else "MinimumReplicasUnavailable",
             "Deployment has minimum availability." if available
             else f"Deployment does not have minimum availability.{problem}"),
            ("Progressing", True, "NewReplicaSetAvailable" if done else "ReplicaSetUpdated",
             f"{rs} has successfully progressed." if done else f"{rs} is progressing.{problem}"),
        ]
        status = {
            "observedGeneration": meta.get("generation"),
            "replicas": total,
            "updatedReplicas": scale if current else 0,
            "readyReplicas": ready,
            "availableReplicas": ready,
            "unavailableReplicas": total - ready,
            "conditions": [_condition(old, *c) for c in conditions],
        }
        status = {k: v for k, v in status.items() if v}  # the API omits zeros
        if status != old:  # the client validates bodies as whole Deployments; the server takes .status
            body = {**dep, "metadata": {k: v for k, v in meta.items() if k != "resourceVersion"}, "status": status}
            _ignore_404(self.apps.replace_namespaced_deployment_status, meta["name"], meta["namespace"], body)

    def _sync_pods(self, deployments: list[dict]) -> None:
        wanted = {}
        for dep in deployments:
            ns = dep["metadata"]["namespace"]
            for replica in self.replicas.get((ns, dep["metadata"]["name"]), {}).values():
                wanted[(ns, replica.pod)] = self._pod(dep, replica)
        existing = {(p["metadata"]["namespace"], p["metadata"]["name"]): p
                    for p in _items(self.core.list_pod_for_all_namespaces)
                    if MANAGED in (p["metadata"].get("annotations") or {})}
        for (ns, name), pod in wanted.items():
            if (ns, name) not in existing:
                _ignore_404(self.core.create_namespaced_pod, ns, pod)
            elif existing[(ns, name)].get("status") != pod["status"]:
                _ignore_404(self.core.replace_namespaced_pod_status, name, ns, pod)
        for ns, name in set(existing) - set(wanted):
            _ignore_404(self.core.delete_namespaced_pod, name, ns)

    def _pod(self, dep: dict, r: Replica) -> dict:
        template = dep["spec"]["template"]
        container = template["spec"]["containers"][0]
        waiting = {"reason": r.waiting[0], "message": r.waiting[1]} if r.waiting else {"reason": "ContainerCreating"}
        state = {"running": {"startedAt": r.started}} if r.started else {"waiting": waiting}
        ready = "True" if r.ready else "False"
        return {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": r.pod, "namespace": dep["metadata"]["namespace"], "labels": r.labels,
                "annotations": {**(template.get("metadata", {}).get("annotations") or {}),
                                MANAGED: r.container, PORT_ANNOTATION: str(r.port), LOG_ANNOTATION: str(self._log(r))},
            },
            "spec": {**template["spec"], "nodeName": "udeploy-lab"},
            "status": {
                "phase": "Running" if r.started else "Pending",
                "hostIP": "127.0.0.1", "podIP": "127.0.0.1", "podIPs": [{"ip": "127.0.0.1"}], "startTime": r.created,
                "conditions": [{"type": "Ready", "status": ready}, {"type": "ContainersReady", "status": ready}],
                "containerStatuses": [{
                    "name": container["name"], "image": r.image, "imageID": "", "ready": r.ready,
                    "restartCount": r.restarts, "started": bool(r.started), "state": state,
                }],
            },
        }

    def _sync_endpoints(self) -> None:
        existing = {(e["metadata"]["namespace"], e["metadata"]["name"]): e
                    for e in _items(self.core.list_endpoints_for_all_namespaces)}
        services = _items(self.core.list_service_for_all_namespaces)
        for svc in services:
            ns, name, selector = svc["metadata"]["namespace"], svc["metadata"]["name"], svc["spec"].get("selector")
            if not selector:
                continue  # Endpoints of selector-less Services belong to their user
            subsets = [{
                "addresses" if r.ready else "notReadyAddresses": [
                    {"ip": "127.0.0.1", "targetRef": {"kind": "Pod", "namespace": ns, "name": r.pod}}],
                "ports": [{"name": p["name"], "port": r.port, "protocol": "TCP"} if p.get("name")
                          else {"port": r.port, "protocol": "TCP"} for p in svc["spec"].get("ports") or []],
            } for (pod_ns, _), replicas in self.replicas.items() if pod_ns == ns
                for r in replicas.values() if all(r.labels.get(k) == v for k, v in selector.items())]
            body = {"apiVersion": "v1", "kind": "Endpoints",
                    "metadata": {"name": name, "namespace": ns, "annotations": {MANAGED: "endpoints"}},
                    **({"subsets": subsets} if subsets else {})}
            old = existing.get((ns, name))
            if old is None:
                _ignore_404(self.core.create_namespaced_endpoints, ns, body)
            elif old.get("subsets") != body.get("subsets"):
                _ignore_404(self.core.replace_namespaced_endpoints, name, ns, body)
        live = {(s["metadata"]["namespace"], s["metadata"]["name"]) for s in services}
        for key, endpoints in existing.items():
            if key not in live and MANAGED in (endpoints["metadata"].get("annotations") or {}):
                _ignore_404(self.core.delete_namespaced_endpoints, key[1], key[0])


def _revision(template: dict) -> str:
    """The pod-template-hash: any change to the template (image, env, annotations) is a new one."""
    return hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]


def _condition(old_status: dict, kind: str, ok: bool, reason: str, message: str) -> dict:
    """A condition that keeps its timestamps while it does not change."""
    old = next((c for c in old_status.get("conditions") or [] if c.get("type") == kind), {})
    status, stamp = ("True" if ok else "False"), now()
    same = old.get("status") == status and old.get("reason") == reason and old.get("message") == message
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastUpdateTime": old.get("lastUpdateTime", stamp) if same else stamp,
            "lastTransitionTime": old.get("lastTransitionTime", stamp) if old.get("status") == status else stamp}


def _items(list_call: Any) -> list[dict]:
    """Raw JSON items of a list call: plain dicts in API field names, not client models."""
    return json.loads(list_call(_preload_content=False).data)["items"]


def _ignore_404(call: Any, *args: Any) -> None:
    try:
        call(*args)
    except ApiException as exc:
        if exc.status != 404:  # deleted meanwhile
            raise


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(port: int, probe: dict | None) -> bool:
    """Ready: an httpGet readinessProbe passes, or (without one) the port answers HTTP at all."""
    path = ((probe or {}).get("httpGet") or {}).get("path")
    try:
        with _no_proxy.open(f"http://127.0.0.1:{port}{path or '/'}", timeout=1):
            return True
    except urllib.error.HTTPError as exc:
        return path is None or exc.code < 400
    except OSError:
        return False
