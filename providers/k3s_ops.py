"""Executors of native k3s (STYLE 5): the code that changes things, one step kind each.

Each takes the API (`Kube`) and/or the containerd (`Ctr`) of the host and the node's recorded
`params`, and returns a `StepResult`. With `dry_run` it reads and checks everything (the manifest
parses and holds the objects, the artifact is in the registry, the server accepts the objects with
`?dryRun=All`) and changes nothing, saying what it would do.

Objects are written with server-side apply (`application/apply-patch+yaml`, field manager
`udeploy`): creating or updating is one idempotent call, and an unchanged object keeps its
resourceVersion and generation. A Deployment that the stamp step owns keeps its live image and
stamp when apply-objects re-applies the manifest (which holds placeholders), so applying never rolls
the service to a placeholder image between apply-objects and stamp.

The steps that write or poll Deployments leave the last object they got back for each in `seen`
(name -> Deployment, when given), so the provider can report the service's runtime from it.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping, Sequence
from typing import Any

from kubernetes.client.exceptions import ApiException

from udeploy.engine.errors import ManifestInvalid
from udeploy.engine.load.k8s_exposure import exposures
from udeploy.engine.load.k8s_manifest import K8sObject, parse_manifest, select
from udeploy.engine.provider_api import StepResult
from udeploy.providers import k3s_facts as facts
from udeploy.providers.k3s_containerd import Ctr, normalize_image
from udeploy.providers.registry import ImageRef, RegistryProvider, base_url

FIELD_MANAGER = "udeploy"
APPLY = "application/apply-patch+yaml"
STRATEGIC = "application/strategic-merge-patch+json"
ROLLOUT_TIMEOUT = 60.0
POLL = 0.3


# -- import-image (C2): the registry artifact into the k3s containerd, tagged for the pod template


def import_image(ctr: Ctr, registry: RegistryProvider, params: Mapping[str, Any], dry_run: bool) -> StepResult:
    """Pull the commit-pinned artifact with containerd's own client (`ctr images pull`), check it is the
    registry's digest, tag it as the containerd-local name the Deployment references, confirm with
    `ctr images ls`. Nothing is built, nothing comes from the internet (the registry is local)."""
    image, local = str(params["image"]), str(params["localImage"])
    stored_as = normalize_image(local)
    artifact = registry.head(image)
    info: dict[str, Any] = {"image": image, "localImage": local, "storedAs": stored_as, "digest": artifact.digest}
    if not artifact.reachable:
        return StepResult(False, f"registry unreachable for {image}: {artifact.error}", info)
    if not artifact.exists:
        return StepResult(False, f"artifact {image} does not exist in the registry", info)
    current = ctr.find(local)
    info["alreadyPresent"] = current is not None and current.digest == artifact.digest
    if dry_run:
        what = "already holds it" if info["alreadyPresent"] else f"would pull {image} ({artifact.digest}) and tag"
        return StepResult(True, f"{ctr.host_id} containerd {what} {stored_as}", info)
    if not info["alreadyPresent"]:
        pull = ["images", "pull"] + (["--plain-http"] if _plain_http(image, registry) else []) + [image]
        done = ctr.run(*pull)
        if done.returncode != 0:
            return StepResult(False, f"ctr images pull {image} failed: {(done.stderr or done.stdout).strip()}", info)
        pulled = ctr.find(image)
        if pulled is None or (artifact.digest and pulled.digest != artifact.digest):
            return StepResult(False, f"ctr pulled {image} as {pulled.digest if pulled else 'nothing'}, "
                                     f"the registry says {artifact.digest}", info)
        tag = ctr.run("images", "tag", "--force", pulled.ref, stored_as)
        if tag.returncode != 0:
            return StepResult(False, f"ctr images tag {stored_as} failed: {(tag.stderr or tag.stdout).strip()}", info)
    listed = current if info["alreadyPresent"] else ctr.find(local)  # confirm the tag with `ctr images ls`
    if listed is None or (artifact.digest and listed.digest != artifact.digest):
        return StepResult(False, f"{stored_as} is not listed by `ctr images ls` at {artifact.digest}", info)
    verb = "already held" if info["alreadyPresent"] else "imported"
    return StepResult(True, f"{verb} {image} into the {ctr.host_id} containerd as {stored_as} ({listed.digest})",
                      {**info, "listed": listed.ref})


def _plain_http(image: str, registry: RegistryProvider) -> bool:
    return base_url(ImageRef.parse(image, registry.registry).registry).startswith("http://")


# -- apply-objects and apply-prerequisite: manifest objects into one namespace (E2)


def apply_objects(kube: facts.Kube, manifest: bytes, params: Mapping[str, Any], dry_run: bool,
                  seen: dict[str, Mapping[str, Any]] | None = None) -> StepResult:
    """Only the objects `params.objects` names ("Kind/name"), into `params.namespace`."""
    path, namespace = str(params["manifest"]), str(params["namespace"])
    try:
        chosen = select(parse_manifest(manifest, path), tuple(params.get("objects") or ()), path)
    except ManifestInvalid as exc:
        return StepResult(False, exc.message, {"manifest": path})
    refused = refusals(chosen, namespace, allow_namespace=False)
    if refused:
        return StepResult(False, f"refused to apply {path}: " + "; ".join(refused), {"refused": refused})
    return _apply_all(kube, chosen, namespace, path, dry_run, stamped=set(params.get("deployments") or ()),
                      seen=seen)


def apply_prerequisite(kube: facts.Kube, manifest: bytes, params: Mapping[str, Any], dry_run: bool) -> StepResult:
    """Every object of the prerequisite manifest, which must all live in `params.namespace` (the
    Namespace object itself included, first)."""
    path, namespace = str(params["manifest"]), str(params["namespace"])
    try:
        objects = parse_manifest(manifest, path)
    except ManifestInvalid as exc:
        return StepResult(False, exc.message, {"manifest": path})
    refused = refusals(objects, namespace, allow_namespace=True)
    if refused:
        return StepResult(False, f"refused to apply {path}: " + "; ".join(refused), {"refused": refused})
    ordered = sorted(objects, key=lambda o: o.kind != "Namespace")
    return _apply_all(kube, ordered, namespace, path, dry_run, stamped=set())


def refusals(objects: Sequence[K8sObject], namespace: str, *, allow_namespace: bool) -> list[str]:
    """Why these objects may not be applied into `namespace`: another namespace, a cluster-scoped
    kind, a Service that is not ClusterIP, a hostPort or hostNetwork (E2)."""
    out: list[str] = []
    for o in objects:
        if o.kind == "Namespace":
            if not allow_namespace or o.name != namespace:
                out.append(f"{o.ref} is not the target namespace {namespace}")
        elif o.kind in facts.CLUSTER_SCOPED:
            out.append(f"{o.ref} is cluster-scoped; only objects in namespace {namespace} are applied")
        elif o.namespace not in (None, namespace):
            out.append(f"{o.ref} is in namespace {o.namespace}, not {namespace}")
    out += [f"E2: {o.ref} {why}" for o in objects for why in exposures(o)]
    return out


# Applied only when absent. A Secret in a manifest is a template with placeholder values: the real
# values are synced into it later, so re-applying the template would reset them. Jobs and claims
# are immutable once created.
CREATE_ONLY_KINDS = frozenset({"Secret", "Job", "PersistentVolumeClaim"})


def _apply_all(kube: facts.Kube, objects: Sequence[K8sObject], namespace: str, path: str, dry_run: bool,
               stamped: set[str], seen: dict[str, Mapping[str, Any]] | None = None) -> StepResult:
    # Only a dry run needs to know the namespace exists (it cannot ask the server about objects of a
    # namespace not created yet); for a real apply, an object's GET in a missing namespace is a 404 too.
    ns_exists = not dry_run or kube.get(facts.object_path("v1", "Namespace", None, namespace)) is not None
    applied: list[dict[str, Any]] = []
    for o in objects:
        body = _body(o, namespace)
        where = facts.object_path(str(body.get("apiVersion", "v1")), o.kind, namespace, o.name)
        live = kube.get(where) if ns_exists else None
        if o.kind in CREATE_ONLY_KINDS and live is not None:
            applied.append({"ref": o.ref, "action": "kept (create-only: never overwritten by its template)"})
            continue
        if o.kind == "Deployment" and o.name in stamped and live is not None:
            body = keep_live_stamp(body, live)
        if dry_run and not ns_exists and o.kind != "Namespace":
            applied.append({"ref": o.ref, "action": "would create",
                            "note": f"namespace {namespace} does not exist yet"})
            continue
        query = [("fieldManager", FIELD_MANAGER), ("force", "true")] + ([("dryRun", "All")] if dry_run else [])
        try:
            result = kube.request("PATCH", where, query=query, body=body, content_type=APPLY)
        except ApiException as exc:
            done = ", ".join(f"{a['ref']} {a['action']}" for a in applied) or "nothing"
            return StepResult(False, f"apply of {o.ref} from {path} into {namespace} failed: {facts.api_error(exc)} "
                                     f"(before it: {done})", {"applied": applied, "failed": o.ref})
        if seen is not None and o.kind == "Deployment" and not dry_run:
            seen[o.name] = result
        applied.append({"ref": o.ref, "action": _action(live, result, dry_run),
                        "generation": (result.get("metadata") or {}).get("generation"),
                        "resourceVersion": (result.get("metadata") or {}).get("resourceVersion")})
    summary = ", ".join(f"{a['ref']} {a['action']}" for a in applied)
    prefix = "would apply" if dry_run else "applied"
    return StepResult(True, f"{prefix} {path} into {namespace}: {summary}", {"applied": applied, "manifest": path})


def _body(o: K8sObject, namespace: str) -> dict[str, Any]:
    body = copy.deepcopy(dict(o.body))
    meta = body.setdefault("metadata", {})
    if o.kind != "Namespace":
        meta["namespace"] = namespace
    return body


def _action(live: Mapping[str, Any] | None, result: Mapping[str, Any], dry_run: bool) -> str:
    if live is None:
        return "would create" if dry_run else "created"
    if dry_run:
        return "would configure"
    same = (live.get("metadata") or {}).get("resourceVersion") == (result.get("metadata") or {}).get("resourceVersion")
    return "unchanged" if same else "configured"


def keep_live_stamp(body: dict[str, Any], live: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest Deployment with the live first-container image and stamp (env and annotations)."""
    body = copy.deepcopy(body)
    template = body.setdefault("spec", {}).setdefault("template", {})
    containers = template.setdefault("spec", {}).get("containers") or []
    live_container = facts.first_container(live)
    if not containers or containers[0].get("name") != live_container.get("name"):
        return body
    if live_container.get("image"):
        containers[0]["image"] = live_container["image"]
    live_env = facts.stamp_env(live)
    env = [e for e in containers[0].get("env") or [] if e.get("name") not in live_env]
    containers[0]["env"] = env + [{"name": k, "value": v} for k, v in live_env.items()]
    annotations = template.setdefault("metadata", {}).setdefault("annotations", {})
    annotations.update({k: v for k, v in facts.template_annotations(live).items() if facts.key_for(k)})
    return body


# -- stamp (V2): image + UNIDESK_DEPLOY_* as pod-template annotations and container env


def stamp(kube: facts.Kube, params: Mapping[str, Any], dry_run: bool,
          seen: dict[str, Mapping[str, Any]] | None = None) -> StepResult:
    namespace, image = str(params["namespace"]), str(params["image"])
    env: Mapping[str, str] = params.get("annotations") or {}
    results: list[dict[str, Any]] = []
    for name in params.get("deployments") or []:
        where = facts.object_path("apps/v1", "Deployment", namespace, name)
        dep = kube.get(where)
        if dep is None:
            if dry_run:
                results.append({"deployment": name, "action": "would stamp once apply-objects created it"})
                continue
            return StepResult(False, f"Deployment {namespace}/{name} does not exist (apply-objects first)",
                              {"stamped": results})
        container = facts.first_container(dep)
        if not container.get("name"):
            return StepResult(False, f"Deployment {namespace}/{name} has no container to stamp", {"stamped": results})
        if dry_run:
            results.append({"deployment": name, "action": "would stamp", "image": container.get("image"),
                            "commit": facts.deploy_env(dep).get("UNIDESK_DEPLOY_COMMIT")})
            continue
        env_patch = [{"name": k, "value": str(v), "valueFrom": None} for k, v in env.items()]
        patch = {"spec": {"template": {
            "metadata": {"annotations": {facts.annotation_for(k): str(v) for k, v in env.items()}},
            "spec": {"containers": [{"name": container["name"], "image": image, "env": env_patch}]},
        }}}
        try:
            after = kube.request("PATCH", where, query=[("fieldManager", FIELD_MANAGER)], body=patch,
                                 content_type=STRATEGIC)
        except ApiException as exc:
            return StepResult(False, f"stamp of Deployment {namespace}/{name} failed: {facts.api_error(exc)}",
                              {"stamped": results})
        if seen is not None:
            seen[name] = after
        results.append({"deployment": name, "action": "stamped", "image": image,
                        "generation": after["metadata"].get("generation")})
    commit = env.get("UNIDESK_DEPLOY_COMMIT", "")
    names = ", ".join(r["deployment"] for r in results)
    verb = "would stamp" if dry_run else "stamped"
    return StepResult(True, f"{verb} {names} in {namespace} with {image} at {str(commit)[:12]}",
                      {"stamped": results, "image": image, "annotations": {facts.annotation_for(k): v
                                                                            for k, v in env.items()}})


def stamp_mismatches(dep: Mapping[str, Any], image: str | None, env: Mapping[str, str]) -> list[str]:
    """How a Deployment differs from a stamp: image, annotation and env, each named."""
    name = dep["metadata"]["name"]
    problems = []
    if image is not None and facts.first_container(dep).get("image") != image:
        problems.append(f"{name} image is {facts.first_container(dep).get('image')!r}, expected {image!r}")
    annotations, container_env = facts.stamp_annotations(dep), facts.stamp_env(dep)
    for key, want in env.items():
        if annotations.get(key) != want:
            problems.append(f"{name} annotation {facts.annotation_for(key)} is {annotations.get(key)!r}, "
                            f"expected {want!r}")
        if container_env.get(key) != want:
            problems.append(f"{name} env {key} is {container_env.get(key)!r}, expected {want!r}")
    return problems


# -- rollout: wait until every Deployment converged, or fail naming why


def rollout(kube: facts.Kube, params: Mapping[str, Any], dry_run: bool,
            seen: dict[str, Mapping[str, Any]] | None = None) -> StepResult:
    namespace = str(params["namespace"])
    names = [str(n) for n in params.get("deployments") or []]
    if dry_run:
        return StepResult(True, f"would wait for the rollout of {', '.join(names)} in {namespace}", {})
    deadline = time.monotonic() + float(params.get("timeoutSeconds") or ROLLOUT_TIMEOUT)
    pending = dict.fromkeys(names, "not read yet")
    while True:
        for name in list(pending):
            dep = facts.read_deployment(kube, namespace, name)
            if dep is None:
                return StepResult(False, f"rollout of {namespace}/{name}: the Deployment does not exist",
                                  {"deployment": name})
            status = facts.rollout_of(kube, dep, need_ready=False)
            if status.complete:
                del pending[name]
                if seen is not None:
                    seen[name] = dep
            elif status.fatal:
                return StepResult(False, f"rollout of {namespace}/{name} failed: {status.fatal}",
                                  {"deployment": name, "problems": list(status.problems)})
            else:
                pending[name] = "; ".join(status.problems) or "progressing"
        if not pending:
            return StepResult(True, f"rolled out {', '.join(names)} in {namespace}", {"deployments": names})
        if time.monotonic() >= deadline:
            why = "; ".join(f"{n}: {p}" for n, p in pending.items())
            return StepResult(False, f"rollout in {namespace} did not complete in time: {why}",
                              {"pending": dict(pending)})
        time.sleep(POLL)
