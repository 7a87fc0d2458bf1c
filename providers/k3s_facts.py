"""Readers of the Kubernetes API of native k3s (STYLE 5). Nothing here changes anything.

`Kube` is the official client built from the host's own kubeconfig file only (E2: never
`$KUBECONFIG`, never `~/.kube/config`), spoken as plain JSON REST; the containerd side is in
`k3s_containerd`. On top: what a Deployment says (image, stamp, rollout state, identity), health
through the API server's service proxy, and the `RuntimeState` of a service from its namespace's
Deployments and Pods, each listed once for a whole `observe` batch.

The stamp mapping (V2), one rule both ways: env `UNIDESK_DEPLOY_<KEY>` <-> pod-template annotation
`unidesk.ai/deploy-<key>` (lower case, `_` -> `-`), e.g. `UNIDESK_DEPLOY_REQUESTED_COMMIT` <->
`unidesk.ai/deploy-requested-commit`. The stamp step writes both; `deploy_env()` reads the env of the
Deployment's first container (what the process sees) and fills keys it lacks from the annotations.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

import attrs
import urllib3
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from udeploy.engine.load.catalog import K3sTarget
from udeploy.engine.load.timeouts import Timeout
from udeploy.engine.provider_api import HealthState, Presence, ProviderUnreachable, RuntimeState
from udeploy.providers.k3s_containerd import Ctr, image_facts
from udeploy.providers.kubeconfig import new_client
from udeploy.providers.net_cause import network_cause, unreachable

DEPLOY_ENV_PREFIX = "UNIDESK_DEPLOY_"
ANNOTATION_PREFIX = "unidesk.ai/deploy-"
# Pod waiting reasons that no amount of waiting fixes during a deploy: the lab and k3s never pull
# from the internet, so an image missing from containerd stays missing (E4's failure mode).
FATAL_WAITING = ("ImagePullBackOff", "ErrImagePull", "ErrImageNeverPull", "InvalidImageName",
                 "CreateContainerConfigError", "CreateContainerError", "CrashLoopBackOff")
# Cluster-scoped kinds: a namespace-bound deploy step never writes them (Namespace is handled apart).
CLUSTER_SCOPED = {"Namespace", "Node", "PersistentVolume", "StorageClass", "ClusterRole", "ClusterRoleBinding",
                  "CustomResourceDefinition", "PriorityClass", "IngressClass", "MutatingWebhookConfiguration",
                  "ValidatingWebhookConfiguration", "APIService"}
_PLURALS = {"Endpoints": "endpoints", "Ingress": "ingresses", "NetworkPolicy": "networkpolicies",
            "PodSecurityPolicy": "podsecuritypolicies", "StorageClass": "storageclasses",
            "PriorityClass": "priorityclasses", "IngressClass": "ingressclasses"}


def annotation_for(key: str) -> str:
    """`UNIDESK_DEPLOY_REQUESTED_COMMIT` -> `unidesk.ai/deploy-requested-commit`."""
    return ANNOTATION_PREFIX + key.removeprefix(DEPLOY_ENV_PREFIX).lower().replace("_", "-")


def key_for(annotation: str) -> str | None:
    """The inverse of `annotation_for`; None for other annotations."""
    if not annotation.startswith(ANNOTATION_PREFIX):
        return None
    return DEPLOY_ENV_PREFIX + annotation.removeprefix(ANNOTATION_PREFIX).upper().replace("-", "_")


def object_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    """The REST path of a kind (`apps/v1` Deployment in `ns` -> /apis/apps/v1/namespaces/ns/deployments)."""
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    plural = _PLURALS.get(kind) or (kind.lower() + ("es" if kind.endswith("s") else "s"))
    scope = f"/namespaces/{quote(namespace, safe='')}" if namespace and kind not in CLUSTER_SCOPED else ""
    return f"{root}{scope}/{plural}" + (f"/{quote(name, safe='')}" if name else "")


# -- the Kubernetes API


@attrs.define
class Kube:
    """JSON REST against the API server of one kubeconfig file (loaded on first use)."""

    kubeconfig: str
    context: str | None
    host_id: str
    timeout: float | tuple[float, float] = 10.0  # seconds, or (connect, read): config.json timeouts.kubernetes
    _api: ApiClient | None = attrs.field(default=None, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    @property
    def api(self) -> ApiClient:
        with self._lock:
            if self._api is None:
                if not Path(self.kubeconfig).is_file():
                    raise ProviderUnreachable(f"{self.host_id}: kubeconfig {self.kubeconfig} does not exist",
                                              path=self.kubeconfig)
                # Only this file, never $KUBECONFIG or ~/.kube (E2), and nothing in it is run.
                self._api = new_client(self.kubeconfig, self.context)
            return self._api

    @property
    def server(self) -> str:
        return str(self.api.configuration.host)

    def close(self) -> None:
        if self._api is not None:
            self._api.close()  # type: ignore[no-untyped-call]

    def request(self, method: str, path: str, *, query: Sequence[tuple[str, str]] = (), body: Any = None,
                content_type: str | None = None, timeout: float | None = None) -> Any:
        """Parsed JSON of a 2xx answer; `ApiException` for any other status; ProviderUnreachable when
        the API server does not answer."""
        return json.loads(self.raw(method, path, query=query, body=body, content_type=content_type,
                                   timeout=timeout) or b"null")

    def raw(self, method: str, path: str, *, query: Sequence[tuple[str, str]] = (), body: Any = None,
            content_type: str | None = None, timeout: float | None = None) -> bytes:
        headers = {"Accept": "application/json, */*"}
        if content_type:
            headers["Content-Type"] = content_type
        api = self.api
        method, url, headers, body, _ = api.param_serialize(method, path, query_params=list(query),
                                                            header_params=headers, body=body,
                                                            auth_settings=["BearerToken"])
        began = time.monotonic()
        wait = timeout or self.timeout
        try:
            response = api.call_api(method, url, header_params=headers, body=body, _request_timeout=wait)
            response.read()  # type: ignore[no-untyped-call]
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._unreachable(exc, wait, began) from exc
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        return bytes(response.data or b"")

    def _unreachable(self, exc: BaseException, wait: float | tuple[float, float], began: float) -> ProviderUnreachable:
        timeout = Timeout(*wait) if isinstance(wait, tuple) else Timeout(wait, wait)
        return unreachable(f"the Kubernetes API of {self.host_id}", "kubernetes", self.host_id, self.server,
                           network_cause(exc, timeout.connect, timeout.read), began, timeout)

    def get(self, path: str) -> Any:
        """The object at `path`, or None when it (or its namespace) does not exist."""
        try:
            return self.request("GET", path)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise


def api_error(exc: ApiException) -> str:
    """The `message` of a Kubernetes Status body, else the status line."""
    try:
        doc = json.loads(exc.body or "{}")
        if isinstance(doc, dict) and doc.get("message"):
            return f"HTTP {exc.status}: {doc['message']}"
    except ValueError:
        pass
    return f"HTTP {exc.status} {exc.reason or ''}".strip()


def read_deployment(kube: Kube, namespace: str, name: str) -> dict[str, Any] | None:
    found: dict[str, Any] | None = kube.get(object_path("apps/v1", "Deployment", namespace, name))
    return found


def selected_pods(kube: Kube, dep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Pods matching the Deployment's `spec.selector.matchLabels`."""
    labels = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not labels:
        return []
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    doc = kube.request("GET", object_path("v1", "Pod", dep["metadata"]["namespace"]),
                       query=[("labelSelector", selector)])
    return list((doc or {}).get("items") or [])


# -- what a Deployment says


def first_container(dep: Mapping[str, Any]) -> Mapping[str, Any]:
    containers = ((((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")) or [{}]
    return containers[0]  # type: ignore[no-any-return]


def template_annotations(dep: Mapping[str, Any]) -> dict[str, str]:
    return dict(((((dep.get("spec") or {}).get("template") or {}).get("metadata") or {}).get("annotations")) or {})


def stamp_env(dep: Mapping[str, Any]) -> dict[str, str]:
    """UNIDESK_DEPLOY_* with literal values in the first container's env."""
    return {e["name"]: str(e.get("value", "")) for e in first_container(dep).get("env") or []
            if str(e.get("name", "")).startswith(DEPLOY_ENV_PREFIX) and "valueFrom" not in e}


def stamp_annotations(dep: Mapping[str, Any]) -> dict[str, str]:
    """The stamp annotations of the pod template, keyed by their env names."""
    out = {}
    for annotation, value in template_annotations(dep).items():
        key = key_for(annotation)
        if key:
            out[key] = str(value)
    return out


def deploy_env(dep: Mapping[str, Any]) -> dict[str, str]:
    """V2 as RuntimeState reports it: the container env, completed from the annotations."""
    return {**stamp_annotations(dep), **stamp_env(dep)}


def template_identity(dep: Mapping[str, Any]) -> str:
    """What changes when the spec changes, and only then: the status writes of the controller bump
    resourceVersion but neither generation nor the pod template."""
    template = json.dumps((dep.get("spec") or {}).get("template") or {}, sort_keys=True, separators=(",", ":"))
    generation = (dep.get("metadata") or {}).get("generation")
    return f"generation={generation};template=sha256:{hashlib.sha256(template.encode()).hexdigest()[:16]}"


@attrs.frozen
class Rollout:
    """`kubectl rollout status` read of one Deployment, with why it is not there yet."""

    complete: bool
    ready: bool
    problems: tuple[str, ...] = ()
    fatal: str | None = None  # a pod waiting reason no wait fixes, e.g. "ImagePullBackOff: ..."


def rollout_status(dep: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> Rollout:
    meta, spec, status = dep.get("metadata") or {}, dep.get("spec") or {}, dep.get("status") or {}
    want = int(spec.get("replicas", 1))
    observed = int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0)
    updated, total = int(status.get("updatedReplicas") or 0), int(status.get("replicas") or 0)
    available, ready = int(status.get("availableReplicas") or 0), int(status.get("readyReplicas") or 0)
    complete = observed and updated >= want and total == updated and available >= updated
    problems: list[str] = []
    if not observed:
        problems.append(f"generation {meta.get('generation')} not yet observed "
                        f"(observedGeneration {status.get('observedGeneration')})")
    elif not complete:
        problems.append(f"{updated} of {want} replicas updated, {available} available, {total - updated} old")
    fatal = None
    conditions = {c.get("type"): c for c in status.get("conditions") or []}
    progressing = conditions.get("Progressing") or {}
    if progressing.get("reason") == "ProgressDeadlineExceeded":
        fatal = f"ProgressDeadlineExceeded: {progressing.get('message', '')}".strip()
    for pod in pods:
        if not is_current_pod(pod, dep):
            continue
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason and reason != "ContainerCreating":
                text = f"pod {pod['metadata']['name']}: {reason}: {waiting.get('message', '')}".rstrip(": ")
                problems.append(text)
                if reason in FATAL_WAITING and fatal is None:
                    fatal = text
    if not complete and not any(p.startswith("pod ") for p in problems):
        problems += [f"{kind}: {c.get('message')}" for kind, c in conditions.items()
                     if c.get("status") == "False" and c.get("message")]
    serving = complete and (want == 0 or ready >= want)
    return Rollout(complete=complete, ready=serving and want > 0, problems=tuple(problems), fatal=fatal)


def rollout_of(kube: Kube, dep: Mapping[str, Any], *, need_ready: bool) -> Rollout:
    """`rollout_status` of a Deployment, its Pods listed only when they can matter. `complete` and
    `ready` come from the Deployment's own status; Pods only explain why it is not there yet. So a
    Deployment already complete (`need_ready`: ready) is answered without listing them."""
    alone = rollout_status(dep, ())
    if alone.ready if need_ready else alone.complete:
        return alone
    return rollout_status(dep, selected_pods(kube, dep))


def is_current_pod(pod: Mapping[str, Any], dep: Mapping[str, Any]) -> bool:
    """A pod of the Deployment's current template: same first-container image, the template's annotations."""
    spec_containers = (pod.get("spec") or {}).get("containers") or [{}]
    if spec_containers[0].get("image") != first_container(dep).get("image"):
        return False
    pod_annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return all(pod_annotations.get(k) == v for k, v in template_annotations(dep).items())


# -- health through the API server's service proxy (C2, V4)


@attrs.frozen
class Health:
    state: HealthState
    document: Any = None  # the parsed JSON body, when there is one


def read_health(kube: Kube, namespace: str, service: str, port: int | str, path: str,
                timeout: float = 5.0) -> Health:
    """GET <path> of `service:port` through `/api/v1/namespaces/NS/services/NAME:PORT/proxy/...`."""
    # The same call as CoreV1Api.connect_get_namespaced_service_proxy_with_path(name=f"{svc}:{port}", ...),
    # through `raw` so that a body of any content type comes back as bytes.
    url = f"/api/v1/namespaces/{quote(namespace, safe='')}/services/{quote(f'{service}:{port}', safe='')}" \
          f"/proxy/{path.lstrip('/')}"
    try:
        body = kube.raw("GET", url, timeout=timeout)
    except ApiException as exc:
        raw = str(exc.body or "")
        doc = _json(raw)
        if isinstance(doc, dict) and doc.get("kind") == "Status":  # the API server's own answer
            return Health(HealthState(reachable=False, status=exc.status,
                                      error=f"service proxy {service}:{port}: {doc.get('message') or exc.reason}"))
        return parse_health(int(exc.status or 0), raw.encode())
    return parse_health(200, body)


def parse_health(status: int, body: bytes) -> Health:
    """`{"deploy": {"repo", "commit", "requestedCommit"}, "auth": {flag: bool}}` into HealthState."""
    doc = _json(body)
    if not isinstance(doc, dict):
        return Health(HealthState(reachable=True, status=status,
                                  error=f"health body is not a JSON object: {body[:80]!r}"), doc)
    deploy: dict[str, Any] = doc["deploy"] if isinstance(doc.get("deploy"), dict) else {}
    auth = doc.get("auth")
    flags = {k: v for k, v in auth.items() if isinstance(v, bool)} if isinstance(auth, dict) else None
    return Health(HealthState(
        reachable=True, status=status,
        deploy_repo=deploy.get("repo") or None, deploy_commit=deploy.get("commit") or None,
        deploy_requested_commit=deploy.get("requestedCommit") or None, auth=flags,
        error=None if 200 <= status < 300 else f"health answered HTTP {status}"), doc)


def _json(body: Any) -> Any:
    try:
        return json.loads(body)
    except (ValueError, TypeError):
        return None


# -- the RuntimeState of a service, from its namespace listed once


@attrs.frozen
class Workloads:
    """What one namespace holds for `observe`: its Deployments by name, listed in one call, and its
    Pods, listed in one more only when a Deployment asked for exists and is not ready by its own
    status (Pods only explain why a rollout is not there yet: a ready one reads the same without)."""

    deployments: Mapping[str, Mapping[str, Any]]
    pods: Sequence[Mapping[str, Any]]


def list_workloads(kube: Kube, namespace: str, wanted: Collection[str]) -> Workloads:
    """The namespace's Deployments, and its Pods when one of `wanted` is among them and not ready;
    a namespace that does not exist holds nothing."""
    deployments = {str(d["metadata"]["name"]): d for d in _list(kube, object_path("apps/v1", "Deployment", namespace))}
    unsettled = any(n in deployments and not rollout_status(deployments[n], ()).ready for n in wanted)
    pods = _list(kube, object_path("v1", "Pod", namespace)) if unsettled else []
    return Workloads(deployments, pods)


def own_workloads(kube: Kube, namespace: str, name: str) -> Workloads:
    """What `list_workloads` holds for one Deployment, read on its own: a GET of it and, when it
    exists and is not ready, its Pods by its label selector (`matching_pods` of them picks the same ones)."""
    dep = read_deployment(kube, namespace, name)
    if dep is None:
        return Workloads({}, [])
    return Workloads({name: dep}, pods_if_unready(kube, dep))


def pods_if_unready(kube: Kube, dep: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The Deployment's Pods when its rollout state needs them (it is not ready by its own status)."""
    return [] if rollout_status(dep, ()).ready else selected_pods(kube, dep)


def _list(kube: Kube, path: str) -> list[dict[str, Any]]:
    doc = kube.get(path)
    return list((doc or {}).get("items") or [])


def matching_pods(dep: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """What `selected_pods` asks the API server for, picked from pods already listed: those whose
    labels hold every `spec.selector.matchLabels` pair (none when the selector is empty)."""
    wanted = ((dep.get("spec") or {}).get("selector") or {}).get("matchLabels") or {}
    if not wanted:
        return []
    return [pod for pod in pods
            if all(((pod.get("metadata") or {}).get("labels") or {}).get(k) == v for k, v in wanted.items())]


def runtime_state(ctr: Ctr, host_id: str, target: K3sTarget, listed: Workloads) -> RuntimeState:
    """The primary Deployment (first of `stamp_deployments`), from its namespace's `listed` workloads."""
    name = target.stamp_deployments[0]
    dep = listed.deployments.get(name)
    return deployment_state(ctr, f"{host_id}:{target.namespace}/Deployment/{name}", dep,
                            matching_pods(dep, listed.pods) if dep is not None else [])


def deployment_state(ctr: Ctr, where: str, dep: Mapping[str, Any] | None,
                     pods: Sequence[Mapping[str, Any]]) -> RuntimeState:
    """A Deployment (None: ABSENT) and its pods: image, labels, stamp, rollout."""
    if dep is None:
        return RuntimeState(target=where, presence=Presence.ABSENT)
    image = first_container(dep).get("image")
    image_id, labels = image_facts(ctr, image) if image else (None, {})
    rollout = rollout_status(dep, pods)
    presence = Presence.RUNNING if rollout.ready else Presence.NOT_READY
    detail = None if rollout.ready else ("; ".join(rollout.problems) or "scaled to 0 replicas")
    return RuntimeState(target=where, presence=presence, image=image, image_id=image_id, labels=labels,
                        deploy_env=deploy_env(dep), detail=detail, identity=template_identity(dep))
