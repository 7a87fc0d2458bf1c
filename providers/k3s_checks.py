"""Read-only checks of a k3s host for `udeploy check` (E3, E4, E5): each returns a plain dict.

- E3 `pause_image_check`: the sandbox image is in the k3s containerd and genuine, i.e. its image
  config declares `Entrypoint ["/pause"]` (read with `ctr content get`); a `sleep` wrapper or any
  other entrypoint is rejected with the reason.
- E4 `code_queue_image_gate`: the Code Queue tag is in the k3s containerd and every listed
  Deployment references exactly that image (every container); else it fails, listing which.
- E5 `code_queue_diagnostics`: degraded when a dependency Deployment is unavailable or its
  Endpoints have no ready address, or when the scheduler's /health (read through the service proxy)
  reports one of the failures below. The scheduler health shape read here:

      {"status": "ok",
       "storage": {"lastError": "<text or null>",
                   "postgresRoute": {"target": "d601-tcp-egress-gateway.unidesk.svc.cluster.local:15432",
                                     "ok": false, "error": "<text>"}},
       "reconcile": {"recoverableActiveTasks": <int | list>, "localRuns": <int | list>}}

  Reasons (`degradedReasons`, the first is `degradedReason`): `dependency-unavailable`,
  `dependency-endpoints-not-ready`, `scheduler-health-unreachable` (then `status=failing`),
  `storage-last-error`, `postgres-route-failure`, `recoverable-active-without-local-run`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException

from udeploy.providers import k3s_facts as facts
from udeploy.providers.k3s_containerd import Ctr, normalize_image

PAUSE_IMAGE = "rancher/mirrored-pause:3.6"
PAUSE_ENTRYPOINT = ["/pause"]
CODE_QUEUE_IMAGE = "unidesk-code-queue:d601"
CODE_QUEUE_NAMESPACE = "unidesk"
CODE_QUEUE_DEPLOYMENTS = ("code-queue", "code-queue-read", "code-queue-write", "d601-provider-egress-proxy",
                          "d601-tcp-egress-gateway")
CODE_QUEUE_DEPENDENCIES = ("d601-provider-egress-proxy", "d601-tcp-egress-gateway")
CODE_QUEUE_SCHEDULER = "code-queue"


def pause_image_check(ctr: Ctr, image: str = PAUSE_IMAGE) -> dict[str, Any]:
    """E3: present in the k3s containerd, and its declared entrypoint is `/pause`."""
    out: dict[str, Any] = {"requirement": "E3", "image": image, "storedAs": normalize_image(image),
                           "present": False, "entrypoint": None, "cmd": None, "digest": None}
    stored = ctr.find(image)
    if stored is None:
        return {**out, "ok": False, "reason": f"{image} is not in the {ctr.host_id} containerd ({ctr.address}); "
                                              "preload the genuine sandbox image"}
    config = ctr.image_config(stored)
    entrypoint, cmd = config.get("Entrypoint"), config.get("Cmd")
    out.update(present=True, storedAs=stored.ref, digest=stored.digest, entrypoint=entrypoint, cmd=cmd)
    words = " ".join(str(w) for w in (entrypoint or []) + (cmd or []))
    if entrypoint != PAUSE_ENTRYPOINT:
        return {**out, "ok": False, "reason": f"{image} is not the genuine pause image: its entrypoint is "
                                              f"{entrypoint!r}, not {PAUSE_ENTRYPOINT!r}"
                                              + (" (a sleep-based replacement)" if "sleep" in words else "")}
    if "sleep" in words:
        return {**out, "ok": False, "reason": f"{image} runs {words!r}: a sleep-based replacement"}
    return {**out, "ok": True, "reason": None}


def code_queue_image_gate(kube: facts.Kube, ctr: Ctr, image: str = CODE_QUEUE_IMAGE,
                          namespace: str = CODE_QUEUE_NAMESPACE,
                          deployments: Sequence[str] = CODE_QUEUE_DEPLOYMENTS) -> dict[str, Any]:
    """E4: `image` is in the k3s containerd, and every Deployment references exactly it."""
    stored = ctr.find(image)
    failures: list[str] = []
    if stored is None:
        failures.append(f"{image} is not in the {ctr.host_id} containerd (`ctr images ls` has no "
                        f"{normalize_image(image)})")
    checked: dict[str, Any] = {}
    for name in deployments:
        dep = facts.read_deployment(kube, namespace, name)
        if dep is None:
            checked[name] = {"exists": False, "images": [], "ok": False}
            failures.append(f"Deployment {namespace}/{name} does not exist")
            continue
        containers = ((dep["spec"].get("template") or {}).get("spec") or {}).get("containers") or []
        images = [c.get("image") for c in containers]
        wrong = [i for i in images if i != image]
        ok = bool(images) and not wrong
        checked[name] = {"exists": True, "images": images, "ok": ok}
        if not ok:
            failures.append(f"Deployment {namespace}/{name} references {', '.join(map(str, wrong or ['no image']))}, "
                            f"not exactly {image}")
    reason = None
    if stored is None:
        reason = "image-missing-in-containerd"
    elif failures:
        reason = "deployment-image-mismatch"
    return {"requirement": "E4", "ok": not failures, "image": image, "namespace": namespace,
            "present": stored is not None, "storedAs": stored.ref if stored else None,
            "digest": stored.digest if stored else None, "deployments": checked, "failures": failures,
            "degradedReason": reason}


def code_queue_diagnostics(kube: facts.Kube, namespace: str = CODE_QUEUE_NAMESPACE,
                           deployments: Sequence[str] = CODE_QUEUE_DEPENDENCIES,
                           scheduler_service: str = CODE_QUEUE_SCHEDULER, scheduler_port: int | str | None = None,
                           health_path: str = "/health") -> dict[str, Any]:
    """E5: dependency availability and endpoints, then what the scheduler's health reports."""
    reasons: list[dict[str, Any]] = []
    dependencies: dict[str, Any] = {}
    for name in deployments:
        dep_state = _dependency(kube, namespace, name)
        dependencies[name] = dep_state
        if not dep_state["available"]:
            reasons.append({"reason": "dependency-unavailable", "target": f"Deployment/{name}",
                            "detail": dep_state["detail"]})
        if not dep_state["readyEndpoints"]:
            reasons.append({"reason": "dependency-endpoints-not-ready", "target": f"Endpoints/{name}",
                            "detail": dep_state["endpointsDetail"]})
    port = scheduler_port if scheduler_port is not None else _first_port(kube, namespace, scheduler_service)
    scheduler: dict[str, Any] = {"service": scheduler_service, "port": port, "path": health_path}
    failing = False
    if port is None:
        failing = True
        reasons.append({"reason": "scheduler-health-unreachable", "target": f"Service/{scheduler_service}",
                        "detail": f"Service {namespace}/{scheduler_service} does not exist or has no port"})
    else:
        health = facts.read_health(kube, namespace, scheduler_service, port, health_path)
        scheduler.update(reachable=health.state.reachable, status=health.state.status, error=health.state.error)
        if not health.state.reachable or health.state.error or not isinstance(health.document, dict):
            failing = True
            reasons.append({"reason": "scheduler-health-unreachable", "target": f"Service/{scheduler_service}",
                            "detail": health.state.error or "no JSON health document"})
        else:
            reasons += scheduler_reasons(health.document, scheduler_service)
    status = "failing" if failing else ("degraded" if reasons else "ok")
    return {"requirement": "E5", "status": status, "ok": not reasons, "namespace": namespace,
            "degradedReason": reasons[0]["reason"] if reasons else None, "degradedReasons": reasons,
            "dependencies": dependencies, "scheduler": scheduler}


def scheduler_reasons(doc: Mapping[str, Any], service: str) -> list[dict[str, Any]]:
    """The E5 failures a scheduler /health document reports (shape in the module docstring)."""
    out: list[dict[str, Any]] = []
    target = f"Service/{service}"
    storage: Mapping[str, Any] = doc["storage"] if isinstance(doc.get("storage"), Mapping) else {}
    if storage.get("lastError"):
        out.append({"reason": "storage-last-error", "target": target, "detail": str(storage["lastError"])})
    route: Mapping[str, Any] | None = storage["postgresRoute"] if isinstance(storage.get("postgresRoute"),
                                                                              Mapping) else None
    if route is not None and route.get("ok") is False:
        out.append({"reason": "postgres-route-failure", "target": target,
                    "detail": f"PostgreSQL route {route.get('target', '?')}: {route.get('error') or 'failing'}"})
    reconcile: Mapping[str, Any] = doc["reconcile"] if isinstance(doc.get("reconcile"), Mapping) else {}
    recoverable, local = _count(reconcile.get("recoverableActiveTasks")), _count(reconcile.get("localRuns"))
    if recoverable > 0 and local == 0:
        out.append({"reason": "recoverable-active-without-local-run", "target": target,
                    "detail": f"reconcile reports {recoverable} recoverable active task(s) and no local run"})
    return out


def _count(value: Any) -> int:
    if isinstance(value, bool) or value is None:
        return int(bool(value))
    if isinstance(value, int):
        return value
    if isinstance(value, (list, tuple, dict)):
        return len(value)
    return 0


def _dependency(kube: facts.Kube, namespace: str, name: str) -> dict[str, Any]:
    dep = facts.read_deployment(kube, namespace, name)
    state: dict[str, Any] = {"exists": dep is not None, "available": False, "readyEndpoints": 0}
    if dep is None:
        state["detail"] = f"Deployment {namespace}/{name} does not exist"
    else:
        want = int(dep["spec"].get("replicas", 1))
        status = dep.get("status") or {}
        available = int(status.get("availableReplicas") or 0)
        conditions = status.get("conditions") or []
        condition: dict[str, Any] = next((c for c in conditions if c.get("type") == "Available"), {})
        state["available"] = want > 0 and available >= 1 and condition.get("status") == "True"
        state["detail"] = None if state["available"] else (
            f"{available} of {want} replicas available" + (f": {condition['message']}" if condition.get("message")
                                                           else ""))
    endpoints = kube.get(facts.object_path("v1", "Endpoints", namespace, name))
    ready = sum(len(s.get("addresses") or []) for s in (endpoints or {}).get("subsets") or [])
    not_ready = sum(len(s.get("notReadyAddresses") or []) for s in (endpoints or {}).get("subsets") or [])
    state["readyEndpoints"] = ready
    state["endpointsDetail"] = None if ready else (
        f"Endpoints {namespace}/{name} do not exist" if endpoints is None
        else f"Endpoints {namespace}/{name} have no ready address ({not_ready} not ready)")
    return state


def _first_port(kube: facts.Kube, namespace: str, service: str) -> int | None:
    try:
        svc = kube.get(facts.object_path("v1", "Service", namespace, service))
    except ApiException:
        return None
    ports = ((svc or {}).get("spec") or {}).get("ports") or []
    return int(ports[0]["port"]) if ports else None
