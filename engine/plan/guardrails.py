"""Guardrails: a registry of named checks, each with the requirement ID it enforces (K4).

Each check reads the plan (and the k3s objects it selects) and returns diagnostics addressed to a
service. They run after the diff, where a failing service is demoted to `blocked`, and again
before apply mutates anything, where any failure refuses the apply. They are listed by
`udeploy guardrails`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from udeploy.engine.errors import Diagnostic, Severity
from udeploy.engine.load.catalog import GATING_MODES
from udeploy.engine.load.k8s_exposure import exposures
from udeploy.engine.load.k8s_manifest import K8sObject
from udeploy.engine.plan.model import Action, GuardrailResult, Plan
from udeploy.engine.plan.plan_item import DeploymentPath
from udeploy.engine.provider_api import StepKind


@attrs.frozen
class GuardContext:
    plan: Plan
    k3s_objects: Mapping[str, tuple[K8sObject, ...]]  # service id -> selected manifest objects
    hosts: Mapping[str, Mapping[str, Any]]  # config.json hosts


Check = Callable[[GuardContext], Iterable[Diagnostic]]


@attrs.frozen
class Guardrail:
    id: str
    name: str
    summary: str
    check: Check


REGISTRY: dict[str, Guardrail] = {}


def guardrail(id: str, name: str, summary: str) -> Callable[[Check], Check]:
    def register(fn: Check) -> Check:
        REGISTRY[name] = Guardrail(id=id, name=name, summary=summary, check=fn)
        return fn
    return register


def run_all(ctx: GuardContext) -> tuple[GuardrailResult, ...]:
    results = []
    for g in REGISTRY.values():
        findings = tuple(g.check(ctx))
        results.append(GuardrailResult(id=g.id, name=g.name, passed=not findings, findings=findings))
    return tuple(results)


def failing_services(results: Iterable[GuardrailResult]) -> dict[str, list[str]]:
    """service id -> the guardrail IDs it fails."""
    out: dict[str, list[str]] = {}
    for r in results:
        for f in r.findings:
            if f.address:
                out.setdefault(f.address, []).append(r.id)
    return out


def _finding(code: str, summary: str, address: str | None, detail: str = "") -> Diagnostic:
    return Diagnostic(Severity.ERROR, code, summary, detail, address)


def _nodes_by_service(plan: Plan) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for n in plan.nodes:
        if n.service:
            out.setdefault(n.service, []).append(n)
    return out


@guardrail("O7", "no-steps-unless-deploy", "Only services whose action is deploy have steps; unsupported, "
           "blocked and gated services never fall back to anything.")
def _no_steps_unless_deploy(ctx: GuardContext) -> Iterable[Diagnostic]:
    nodes = _nodes_by_service(ctx.plan)
    for s in ctx.plan.services:
        if s.action is not Action.DEPLOY and nodes.get(s.id):
            yield _finding("steps-for-non-deploy", f"{s.id} is {s.action.value} but has steps", s.id)


@guardrail("C4", "no-build-in-artifact-consumer", "CD never compiles or builds: artifact consumers have no "
           "export-source or build-image step.")
def _no_build(ctx: GuardContext) -> Iterable[Diagnostic]:
    paths = {s.id: s.item.deployment_path for s in ctx.plan.services}
    for n in ctx.plan.nodes:
        building = n.kind in (StepKind.BUILD_IMAGE, StepKind.EXPORT_SOURCE)
        if building and paths.get(n.service or "") is not DeploymentPath.TARGET_SIDE_BUILD:
            yield _finding("build-in-artifact-consumer", f"{n.id} would build during CD", n.service)


@guardrail("P8", "unsupported-is-not-executable", "An unsupported item exposes no executable target: "
           "consumerKind=unsupported, deployCommandShape=none, liveApply.allowed=false.")
def _unsupported_shape(ctx: GuardContext) -> Iterable[Diagnostic]:
    for s in ctx.plan.services:
        if s.item.deployment_path is not DeploymentPath.UNSUPPORTED:
            continue
        item = s.item
        if (item.artifact_consumer.consumer_kind != "unsupported" or item.target.deploy_command_shape != "none"
                or item.live_apply.allowed or s.action is not Action.UNSUPPORTED):
            yield _finding("unsupported-executable", f"{s.id} is unsupported but exposes an executable target", s.id)


@guardrail("P6", "blocked-keeps-dry-run-only", "Blocked and gated items keep structured dryRunOnly and "
           "blockedReason.")
def _blocked_shape(ctx: GuardContext) -> Iterable[Diagnostic]:
    for s in ctx.plan.services:
        if s.action not in (Action.BLOCKED, Action.GATED):
            continue
        if s.blocked is None:  # the plan model refuses this; the check stays for the record (O3)
            yield _finding("blocked-without-reason", f"{s.id} is {s.action.value} without blockedReason", s.id)
        elif s.item.live_apply.mode in GATING_MODES and s.item.dry_run_only is None:
            yield _finding("blocked-without-dry-run-only", f"{s.id} is {s.action.value} without dryRunOnly", s.id)


SECRET_KEY = re.compile(r"(SECRET|TOKEN|PASSWORD|CLIENT_ID|PRIVATE_KEY)", re.I)


@guardrail("P7", "no-secret-values", "Secrets appear only as key names, booleans and lengths: no step "
           "parameter or item carries a value for a secret-looking key.")
def _no_secret_values(ctx: GuardContext) -> Iterable[Diagnostic]:
    for s in ctx.plan.services:
        secrets = s.item.artifact_consumer.runtime_secrets or {}
        for k, v in secrets.items():
            if k not in ("secretSource", "secretFile", "recommendedAction") and isinstance(v, str):
                yield _finding("secret-value", f"{s.id}: runtimeSecrets.{k} holds a string", s.id)
    for n in ctx.plan.nodes:
        for key, value in _walk(n.params):
            if SECRET_KEY.search(key) and isinstance(value, str) and not key.endswith(("Keys", "Key")):
                yield _finding("secret-value", f"{n.id}: parameter {key} holds a value", n.service)


@guardrail("E2", "k3s-explicit-target-clusterip", "k3s steps use the configured kubeconfig and containerd "
           "socket (never a default context); selected Services are ClusterIP with no NodePort or hostPort.")
def _k3s_target(ctx: GuardContext) -> Iterable[Diagnostic]:
    for n in ctx.plan.nodes:
        if n.provider != "k3s-native":
            continue
        host = ctx.hosts.get(n.host or "", {})
        if not host.get("kubeconfig") or not host.get("containerdSocket"):
            yield _finding("implicit-k3s-target", f"{n.id}: host {n.host} lacks an explicit kubeconfig and "
                           "containerd socket", n.service)
    for sid, objects in ctx.k3s_objects.items():
        for o in objects:
            yield from (_finding("public-exposure", f"{sid}: {o.ref} {why}", sid) for why in exposures(o))


@guardrail("M5", "full-commit-shas", "Every service is planned at a full 40-character commit.")
def _full_shas(ctx: GuardContext) -> Iterable[Diagnostic]:
    for s in ctx.plan.services:
        if not re.fullmatch(r"[0-9a-f]{40}", s.resolved_commit):
            yield _finding("short-sha", f"{s.id} resolved to {s.resolved_commit!r}", s.id)


@guardrail("P4", "local-mode-no-reviewed-consumers", "Local-manifest mode never deploys reviewed pull-only "
           "consumers or k3s-managed workloads (P4, P5).")
def _local_mode(ctx: GuardContext) -> Iterable[Diagnostic]:
    if ctx.plan.mode != "file":
        return
    artifact_steps = (StepKind.VERIFY_ARTIFACT, StepKind.IMPORT_IMAGE, StepKind.APPLY_OBJECTS)
    for n in ctx.plan.nodes:
        if n.kind in artifact_steps:
            yield _finding("local-mode-artifact-step", f"{n.id} in local-manifest mode", n.service)


def _walk(value: Any, key: str = "") -> Iterable[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, str(k))
    elif isinstance(value, list | tuple):
        for v in value:
            yield from _walk(v, key)
    else:
        yield key, value
