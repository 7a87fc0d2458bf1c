"""Reading Kubernetes objects of any shape, and E2: the ways one object exposes a port publicly.

A manifest is pull-request content, so every accessor here copes with any JSON shape: a missing
field, or one of the wrong type (`ports: 5`), reads as absent. `exposures` is the E2 rule as data;
`validate` (`engine.checks.manifest_rules`), the E2 guardrail (`engine.plan.guardrails`) and the
k3s provider's apply-objects step all ask it, so the rule is written once.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from udeploy.engine.load.k8s_manifest import K8sObject

WORKLOADS = {"Pod", "Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob"}


def get_path(body: Any, *keys: str | int) -> Any:
    """The value at `keys` (mapping keys or list indexes), or None where the path does not exist."""
    for k in keys:
        if isinstance(k, int):
            body = body[k] if isinstance(body, list) and len(body) > k else None
        else:
            body = body.get(k) if isinstance(body, Mapping) else None
    return body


def items_at(body: Any, *keys: str | int) -> list[Any]:
    """The list at `keys`, or [] when it is missing or not a list (`ports: 5` is a schema finding, not a crash)."""
    found = get_path(body, *keys)
    return found if isinstance(found, list) else []


def objects_at(body: Any, *keys: str | int) -> list[Mapping[str, Any]]:
    return [item for item in items_at(body, *keys) if isinstance(item, Mapping)]


def pod_spec(obj: K8sObject) -> Mapping[str, Any]:
    if obj.kind not in WORKLOADS:
        return {}
    spec = obj.body.get("spec")
    if obj.kind == "CronJob":
        spec = get_path(spec, "jobTemplate", "spec")
    found = spec if obj.kind == "Pod" else get_path(spec, "template", "spec")
    return found if isinstance(found, Mapping) else {}


def containers(obj: K8sObject) -> list[Mapping[str, Any]]:
    spec = pod_spec(obj)
    return [c for key in ("initContainers", "containers", "ephemeralContainers") for c in objects_at(spec, key)]


def exposures(o: K8sObject) -> Iterator[str]:
    """E2: why this object would expose a business port beyond the cluster (nothing when it does not)."""
    if o.kind == "Service":
        kind = get_path(o.body, "spec", "type") or "ClusterIP"
        if kind != "ClusterIP":
            yield f"is type {kind}; Services must be ClusterIP"
        for port in objects_at(o.body, "spec", "ports"):
            if port.get("nodePort") is not None:
                yield f"sets nodePort {port['nodePort']}"
        if get_path(o.body, "spec", "externalIPs"):
            yield "sets externalIPs (a public business port)"
    if pod_spec(o).get("hostNetwork"):
        yield "sets hostNetwork: true"
    for c in containers(o):
        for port in objects_at(c, "ports"):
            if port.get("hostPort") is not None:
                yield f"container {c.get('name')} sets hostPort {port['hostPort']}"
