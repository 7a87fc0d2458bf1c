"""Static rules over parsed Kubernetes manifests: object shapes, D1-D4 (dev manifests), E2 (exposure).

Pure: every rule reads `K8sObject`s and returns `Diagnostic`s whose `code` is the rule ID and whose
`address` is "<manifest path>#<Kind/name>" (`split_address` takes it apart). Which rules apply to
a file is data: a `RULE_SETS` entry applies when the file holds one of its objects (by kind and
name, or by the service-id label in the dev namespace), whatever the file is called; D2 applies to
any dev manifest and K8S-SCHEMA/E2 to all. A file no rule set claims gets a warning saying only
the generic rules ran. D5 (running the db guard) is not pure; its data lives here; `engine.checks.validate`
runs it through the `db-guard` capability.

Manifests are pull-request content: every rule copes with any JSON shape where the Kubernetes
schema expects another (`ports: 5`, a list for a name), and kind/apiVersion are checked against
the Kubernetes grammar before kubernetes-validate turns them into a schema file name.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from pathlib import PurePath
from typing import Any

import attrs
import kubernetes_validate
from kubernetes.utils import parse_quantity

from udeploy.engine.errors import Diagnostic, Severity
from udeploy.engine.load.k8s_exposure import containers, exposures, get_path, items_at, objects_at, pod_spec
from udeploy.engine.load.k8s_manifest import K8sObject, api_version_problem, kind_problem
from udeploy.engine.provider_api import DbGuardRequest

DEV_NAMESPACE = "unidesk-dev"
PROD_NAMESPACE = "unidesk"
# Schemas are the ones kubernetes-validate ships for this minor version: the lab's API server
# reports v1.26.4+k3s1.
KUBERNETES_VERSION = "1.26"
SCHEMA = "K8S-SCHEMA"
NO_RULE_SET = "RULE-SETS"  # the warning: no named rule set claims the file
DEV_RUNTIME_CONFIG = "unidesk-dev-runtime-config"
DEV_RUNTIME_SECRET = "unidesk-dev-runtime-secrets"
DB_GUARD = ("ConfigMap/unidesk-dev-db-guard", "db-guard.sh")  # D5: the object and its data key
CORE_INTERNAL_URL = "http://backend-core-dev.unidesk-dev.svc.cluster.local:8080"
# D2: what a dev object must never reach: production Service DNS names and the production hostPath repo.
PROD_SERVICE_DNS = re.compile(rf"\b[a-z0-9-]+\.{PROD_NAMESPACE}\.svc\b")
PROD_HOST_PATHS = ("/home/ubuntu/cq-deploy",)
SERVICE_ID_LABEL = "unidesk.ai/service-id"


@attrs.frozen
class RuleSet:
    """The rules a manifest gets when it holds these objects, and the objects it may (and must) create."""

    rules: tuple[str, ...]  # the first one checks the object set
    objects: tuple[str, ...]  # "Kind/name": all required, nothing else allowed
    any_name: tuple[str, ...] = ()  # kinds required at least once, whatever their name
    service_ids: tuple[str, ...] = ()  # dev-namespace objects labelled with one of these belong here too

    def claims(self, o: K8sObject) -> bool:
        """Selection follows the objects, not the file name: by kind and name, or by label in the dev namespace."""
        labelled = get_path(o.body, "metadata", "labels", SERVICE_ID_LABEL)
        return o.ref in self.objects or (o.namespace == DEV_NAMESPACE and isinstance(labelled, str)
                                         and labelled in self.service_ids)


RULE_SETS: Mapping[str, RuleSet] = {
    "dev-foundation": RuleSet(
        rules=("D1", "D5"), any_name=("ResourceQuota", "LimitRange"),
        objects=("Namespace/unidesk-dev", f"Secret/{DEV_RUNTIME_SECRET}", f"ConfigMap/{DEV_RUNTIME_CONFIG}",
                 DB_GUARD[0], "StatefulSet/postgres-dev", "Service/postgres-dev", "Job/unidesk-dev-db-migrate")),
    "dev-core": RuleSet(
        rules=("D3",), service_ids=("backend-core", "frontend"),
        objects=("Deployment/backend-core-dev", "Service/backend-core-dev", "Deployment/frontend-dev",
                 "Service/frontend-dev")),
    "dev-code-queue": RuleSet(
        rules=("D4",), service_ids=("code-queue",), objects=tuple(f"{kind}/{name}" for name in (
            "code-queue-scheduler-dev", "code-queue-read-dev", "code-queue-write-dev",
            "d601-dev-provider-egress-proxy") for kind in ("Deployment", "Service"))),
}

Finding = Callable[[str, str], Diagnostic]  # (object ref, summary) -> a Diagnostic for one rule and file


def address(path: str, ref: str) -> str:
    return f"{path}#{ref}"


def split_address(addr: str | None) -> tuple[str, str | None]:
    """(manifest path, "Kind/name" or None); object names never contain '#', paths might."""
    path, sep, ref = (addr or "").rpartition("#")
    return (path, ref or None) if sep else (addr or "", None)


def _finder(rule: str, path: str) -> Finding:
    return lambda ref, summary: Diagnostic(Severity.ERROR, rule, summary, address=address(path, ref))


def rule_sets_for(objects: Iterable[K8sObject]) -> tuple[str, ...]:
    """The named rule sets claiming any of these objects, in `RULE_SETS` order."""
    objects = tuple(objects)
    return tuple(name for name, ruleset in RULE_SETS.items() if any(ruleset.claims(o) for o in objects))


def is_dev_manifest(path: str, objects: Iterable[K8sObject]) -> bool:
    """Under a `dev/` directory, claimed by a dev rule set, or meant for the dev namespace (D2's scope)."""
    objects = tuple(objects)
    return ("dev" in PurePath(path).parts[:-1] or bool(rule_sets_for(objects))
            or any(o.namespace == DEV_NAMESPACE or o.ref == f"Namespace/{DEV_NAMESPACE}" for o in objects))


def rules_for(path: str, objects: tuple[K8sObject, ...]) -> tuple[str, ...]:
    named = tuple(rule for name in rule_sets_for(objects) for rule in RULE_SETS[name].rules)
    dev = ("D2",) if is_dev_manifest(path, objects) else ()
    return (SCHEMA, "E2", *dev, *named)


def check_manifest(path: str, objects: tuple[K8sObject, ...]) -> tuple[Diagnostic, ...]:
    """Every pure rule that applies to this file (D5 runs elsewhere), and a warning when no rule set claims it."""
    out: list[Diagnostic] = []
    rules = rules_for(path, objects)
    for rule in rules:
        if rule in CHECKS:
            out.extend(CHECKS[rule](path, objects))
    if objects and not rule_sets_for(objects):
        out.append(Diagnostic(Severity.WARNING, NO_RULE_SET, f"{path} holds no object of a known rule set "
                              f"({', '.join(RULE_SETS)}): only the generic rules ({', '.join(rules)}) ran",
                              address=path))
    return tuple(out)


# --- object helpers ---------------------------------------------------------------------------

def _scalars(values: Iterable[Any]) -> set[Hashable]:
    """The hashable values (a list where a port number belongs is simply not that port)."""
    return {v for v in values if isinstance(v, str | int | float | bool) or v is None}


def _env_value(obj: K8sObject, name: str) -> Any:
    return next((e.get("value") for c in containers(obj) for e in objects_at(c, "env") if e.get("name") == name),
                None)


def _refs(obj: K8sObject, kind: str) -> set[str]:
    """Names of the ConfigMaps (kind="configMap") or Secrets ("secret") a pod template reads."""
    names = [get_path(src, f"{kind}Ref", "name") for c in containers(obj) for src in items_at(c, "envFrom")]
    names += [get_path(e, "valueFrom", f"{kind}KeyRef", "name") for c in containers(obj) for e in items_at(c, "env")]
    name_key = "secretName" if kind == "secret" else "name"
    names += [get_path(v, kind, name_key) for v in items_at(pod_spec(obj), "volumes")]
    return {n for n in names if isinstance(n, str)}


def _quantity_is(value: Any, expected: str) -> bool:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return False
    try:
        return bool(parse_quantity(value) == parse_quantity(expected))  # type: ignore[no-untyped-call]
    except (ValueError, ArithmeticError):  # decimal.InvalidOperation is an ArithmeticError
        return False


def _strings(body: Any) -> Iterator[str]:
    if isinstance(body, str):
        yield body
    elif isinstance(body, Mapping):
        for v in body.values():
            yield from _strings(v)
    elif isinstance(body, list):
        for v in body:
            yield from _strings(v)


# --- K8S-SCHEMA and E2: every manifest ---------------------------------------------------------

def check_schema(path: str, objects: tuple[K8sObject, ...]) -> Iterator[Diagnostic]:
    """Field names and types against the Kubernetes OpenAPI schemas (strict: unknown fields fail)."""
    finding = _finder(SCHEMA, path)
    for o in objects:
        # As JSON, the form the API server receives (YAML timestamps become strings), and a cache key.
        if problem := _schema_problem(json.dumps(o.body, sort_keys=True, default=str)):
            yield finding(o.ref, f"{o.ref} {problem}")


@functools.lru_cache(maxsize=1024)  # kubernetes-validate rereads its 1 MB of schemas on every call
def _schema_problem(body: str) -> str | None:
    doc = json.loads(body)
    # kubernetes-validate builds a schema file name from both: only the Kubernetes grammar gets that far.
    if problem := kind_problem(doc.get("kind")) or api_version_problem(doc.get("apiVersion")):
        return problem
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path) or "(top level)"
        return f"breaks the Kubernetes {KUBERNETES_VERSION} schema at {where}: {exc.message}"
    except kubernetes_validate.SchemaNotFoundError as exc:
        return f"has no Kubernetes {KUBERNETES_VERSION} schema: {exc.message}"
    except kubernetes_validate.InvalidSchemaError as exc:
        return f"has no readable Kubernetes {KUBERNETES_VERSION} schema: {exc.message}"
    return None


def check_exposure(path: str, objects: tuple[K8sObject, ...]) -> Iterator[Diagnostic]:
    """E2: ClusterIP Services only; no NodePort, externalIPs, hostPort or hostNetwork."""
    finding = _finder("E2", path)
    for o in objects:
        yield from (finding(o.ref, f"{o.ref} {why}") for why in exposures(o))


# --- D2: dev manifests never touch production ----------------------------------------------------

def check_dev_isolation(path: str, objects: tuple[K8sObject, ...]) -> Iterator[Diagnostic]:
    finding = _finder("D2", path)
    for o in objects:
        if o.kind == "Namespace":
            if o.name != DEV_NAMESPACE:
                yield finding(o.ref, f"dev manifest touches namespace {o.name} (only {DEV_NAMESPACE} is allowed)")
        elif o.namespace != DEV_NAMESPACE:
            where = f"namespace {o.namespace}" if o.namespace else "no namespace (the context's default)"
            yield finding(o.ref, f"dev manifest writes {o.ref} into {where}, outside {DEV_NAMESPACE}")
        for text in set(_strings(o.body)):
            if m := PROD_SERVICE_DNS.search(text):
                yield finding(o.ref, f"{o.ref} reaches production Service {m.group(0)}")
            for prod_path in PROD_HOST_PATHS:
                if text.rstrip("/") == prod_path or text.startswith(prod_path + "/"):
                    yield finding(o.ref, f"{o.ref} mounts the production hostPath {prod_path}")


# --- D1, D3, D4: the named dev manifests --------------------------------------------------------

def _ruleset_of(rule: str) -> tuple[str, RuleSet]:
    return next((name, rs) for name, rs in RULE_SETS.items() if rs.rules[0] == rule)


def _in_scope(rule: str, objects: tuple[K8sObject, ...]) -> tuple[K8sObject, ...]:
    """The objects a rule set's own checks read: all of them, but those another matched rule set claims."""
    name, ruleset = _ruleset_of(rule)
    others = [RULE_SETS[n] for n in rule_sets_for(objects) if n != name]
    return tuple(o for o in objects if ruleset.claims(o) or not any(other.claims(o) for other in others))


def check_object_set(rule: str, path: str, objects: tuple[K8sObject, ...]) -> Iterator[Diagnostic]:
    """Exactly the objects the matched rule sets name, all in the dev namespace."""
    finding, (name, ruleset) = _finder(rule, path), _ruleset_of(rule)
    matched = [RULE_SETS[n] for n in rule_sets_for(objects)]
    refs = {o.ref for o in objects}
    for o in _in_scope(rule, objects):
        if not any(o.ref in rs.objects or o.kind in rs.any_name for rs in matched):
            yield finding(o.ref, f"{o.ref} is not one of the objects the {name} rule set allows")
        elif o.kind != "Namespace" and o.namespace != DEV_NAMESPACE:
            yield finding(o.ref, f"{o.ref} must be in namespace {DEV_NAMESPACE}, not {o.namespace}")
    for ref in ruleset.objects:
        if ref not in refs:
            yield finding(ref, f"{ref} is missing ({name} rule set, claimed by the file's other objects)")
    for kind in ruleset.any_name:
        if not any(o.kind == kind for o in objects):
            yield finding(f"{kind}/*", f"no {kind} ({name} rule set)")


def _uses_dev_runtime(o: K8sObject, finding: Finding) -> Iterator[Diagnostic]:
    if DEV_RUNTIME_CONFIG not in _refs(o, "configMap") or DEV_RUNTIME_SECRET not in _refs(o, "secret"):
        yield finding(o.ref, f"{o.ref} must read ConfigMap {DEV_RUNTIME_CONFIG} and Secret {DEV_RUNTIME_SECRET}")


def check_foundation(path: str, objects: tuple[K8sObject, ...]) -> Iterator[Diagnostic]:
    finding = _finder("D1", path)
    yield from check_object_set("D1", path, objects)
    for o in _in_scope("D1", objects):
        if o.kind == "ResourceQuota" and not get_path(o.body, "spec", "hard"):
            yield finding(o.ref, f"{o.ref} sets no spec.hard quota")
        defaults = [get_path(limit, "default") for limit in items_at(o.body, "spec", "limits")
                    if get_path(limit, "type") == "Container"]
        if o.kind == "LimitRange" and not any(get_path(d, "cpu") and get_path(d, "memory") for d in defaults):
            yield finding(o.ref, f"{o.ref} sets no default cpu and memory limits for containers")
        if o.ref == "StatefulSet/postgres-dev":
            claims = items_at(o.body, "spec", "volumeClaimTemplates")
            if not any(_quantity_is(get_path(c, "spec", "resources", "requests", "storage"), "5Gi") for c in claims):
                yield finding(o.ref, f"{o.ref} must claim a 5Gi persistent volume")
            for c in containers(o):
                bounds = [f"{kind}.{res}" for kind in ("requests", "limits") for res in ("cpu", "memory")
                          if get_path(c, "resources", kind, res) is None]
                if bounds:
                    yield finding(o.ref, f"{o.ref} container {c.get('name')} has no {', '.join(bounds)}")
        if o.ref == "Job/unidesk-dev-db-migrate" and (
                DB_GUARD[0].split("/")[1] not in _refs(o, "configMap")
                or not any(DB_GUARD[1] in text for c in containers(o) for text in _strings(c.get("command")))):
            yield finding(o.ref, f"{o.ref} must mount {DB_GUARD[0]} and run {DB_GUARD[1]} before migrating")


def check_core(path: str, objects: tuple[K8sObject, ...]) -> Iterator[Diagnostic]:
    finding = _finder("D3", path)
    yield from check_object_set("D3", path, objects)
    by_ref = {o.ref: o for o in objects}
    for o in _in_scope("D3", objects):
        if o.kind == "Deployment":
            yield from _uses_dev_runtime(o, finding)
    for ref in ("Deployment/backend-core-dev", "Service/backend-core-dev"):
        if backend := by_ref.get(ref):
            ports = (_scalars(get_path(p, "containerPort") for c in containers(backend) for p in items_at(c, "ports"))
                     if backend.kind == "Deployment"
                     else _scalars(get_path(p, "port") for p in items_at(backend.body, "spec", "ports")))
            if not {8080, 8081} <= ports:
                yield finding(ref, f"{ref} must expose 8080 (HTTP) and 8081 (provider ingress)")
    frontend = by_ref.get("Deployment/frontend-dev")
    if frontend and _env_value(frontend, "CORE_INTERNAL_URL") != CORE_INTERNAL_URL:
        yield finding(frontend.ref, f"{frontend.ref} must set CORE_INTERNAL_URL={CORE_INTERNAL_URL}")


def check_code_queue(path: str, objects: tuple[K8sObject, ...]) -> Iterator[Diagnostic]:
    finding = _finder("D4", path)
    yield from check_object_set("D4", path, objects)
    for o in _in_scope("D4", objects):
        if o.kind == "Deployment":
            yield from _uses_dev_runtime(o, finding)
            for c in containers(o):
                if get_path(c, "resources", "limits", "cpu") is None:
                    yield finding(o.ref, f"{o.ref} container {c.get('name')} sets no CPU limit")
        if o.ref == "Deployment/code-queue-scheduler-dev":
            if get_path(o.body, "spec", "strategy", "type") != "Recreate":
                yield finding(o.ref, f"{o.ref} must use the Recreate strategy")
            if not any(_quantity_is(get_path(c, "resources", "limits", "memory"), "5Gi") for c in containers(o)):
                yield finding(o.ref, f"{o.ref} must set a 5Gi memory limit")
        if o.kind == "Service":
            ports = [get_path(p, "port") for p in items_at(o.body, "spec", "ports")]
            if (get_path(o.body, "spec", "type") or "ClusterIP") != "ClusterIP" or not ports \
                    or any(port != 4222 for port in ports):
                yield finding(o.ref, f"{o.ref} must be a ClusterIP Service on port 4222 only (ports: {ports})")


CHECKS: Mapping[str, Callable[[str, tuple[K8sObject, ...]], Iterable[Diagnostic]]] = {
    SCHEMA: check_schema, "E2": check_exposure, "D2": check_dev_isolation,
    "D1": check_foundation, "D3": check_core, "D4": check_code_queue,
}


def db_guard_request(path: str, objects: Iterable[K8sObject]) -> DbGuardRequest:
    """D5's inputs from one manifest, for the db-guard capability."""
    objects = tuple(objects)
    return DbGuardRequest(manifest=path, config_map=DB_GUARD[0], key=DB_GUARD[1], script=db_guard_script(objects),
                          dev_database_url=dev_database_url(objects), address=address(path, DB_GUARD[0]))


def db_guard_script(objects: Iterable[K8sObject]) -> str | None:
    """D5: the guard script the foundation ships in its ConfigMap, or None."""
    o = next((o for o in objects if o.ref == DB_GUARD[0]), None)
    script = get_path(o.body, "data", DB_GUARD[1]) if o else None
    return script if isinstance(script, str) else None


def dev_database_url(objects: Iterable[K8sObject]) -> str | None:
    """The dev DATABASE_URL from the runtime Secret template's stringData, if it has one."""
    o = next((o for o in objects if o.ref == f"Secret/{DEV_RUNTIME_SECRET}"), None)
    url = get_path(o.body, "stringData", "DATABASE_URL") if o else None
    return url if isinstance(url, str) else None
