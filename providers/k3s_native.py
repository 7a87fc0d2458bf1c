"""The k3s-native provider: one config.json host running native k3s (C2, E2-E5, V2, V4).

The host names both transports explicitly (E2): `kubeconfig` (the official client is built from
that file only: never `load_kube_config()`'s defaults, `$KUBECONFIG` or `~/.kube/config`) and
`containerdSocket` (`ctr --address <socket> -n k8s.io`). A host missing either is refused when the
provider is built.

Readers live in `k3s_facts`, executors in `k3s_ops`, the E3-E5 checks in `k3s_checks`; this module
plans a service's steps, routes them and owns verification (V4): the Deployments carry the requested commit in their
stamp annotations and env, and /health read through the Kubernetes API service proxy reports it as
`deploy.commit` (and `deploy.requestedCommit`). A healthy service at another commit fails.

Import (C2): the commit-pinned artifact is pulled from the registry by containerd itself
(`ctr images pull`, `--plain-http` for a loopback registry), checked against the registry's
manifest digest and tagged as the containerd-local name the pod template references
(`unidesk-<id>:<commit>`, stored as `docker.io/library/...` as kubelet resolves it). That is what
`docker save | ctr images import` would achieve, without a Docker engine or a tarball; nothing is
built and nothing comes from the internet.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from udeploy.engine.errors import GitError, UsageError
from udeploy.engine.load.catalog import Catalog, Host, K3sTarget, Target
from udeploy.engine.load.desired import DesiredService
from udeploy.engine.load.source_guard import check_code_queue_source, guard_json
from udeploy.engine.load.timeouts import DEFAULTS, TimeoutKind
from udeploy.engine.provider_api import (
    DeployRequest,
    HealthState,
    ObserveRequest,
    PlannedStep,
    Presence,
    ProviderUnreachable,
    RuntimeState,
    StepKind,
    StepRequest,
    StepResult,
)
from udeploy.providers.git import GitProvider
from udeploy.providers.k3s_containerd import Ctr
from udeploy.providers.lazy import lazy_module, load
from udeploy.providers.polling import poll

if TYPE_CHECKING:
    from udeploy.providers.registry import RegistryProvider

# The Kubernetes client and the registry's loads when a provider is built (`load` in `build`):
# planning needs none of them.
kubernetes = lazy_module("kubernetes")
checks = lazy_module("udeploy.providers.k3s_checks")
facts = lazy_module("udeploy.providers.k3s_facts")
ops = lazy_module("udeploy.providers.k3s_ops")
registry_module = lazy_module("udeploy.providers.registry")

HEALTH_TIMEOUT = 20.0  # a just-rolled-out pod may need a moment before its health answers
DEFAULT_REGISTRY = "127.0.0.1:5000"
# A batch asking for this many Deployments of one namespace or fewer (apply's one-service read after
# each step) GETs each and lists its Pods by selector: two requests per Deployment, each answered
# with that Deployment's objects alone, where the namespace lists carry every Deployment and Pod of
# the fleet and made apply quadratic in fleet size. Past a few, the two namespace lists are fewer
# requests for an answer that is needed anyway.
OWN_READS_UP_TO = 4


@attrs.define
class K3sNativeProvider:
    host: Host
    kube: facts.Kube
    ctr: Ctr
    registry: RegistryProvider
    git: GitProvider = attrs.field(factory=GitProvider)  # locks each mirror itself

    name: ClassVar[str] = "k3s-native"

    @classmethod
    def build(cls, host: Host | None, catalog: Catalog | None, *, git: GitProvider | None = None
              ) -> K3sNativeProvider:
        if host is None:
            raise UsageError("the k3s-native provider needs a config.json host")
        load(kubernetes, checks, facts, ops, registry_module)
        kubeconfig, socket = host.settings.get("kubeconfig"), host.settings.get("containerdSocket")
        if not kubeconfig:
            raise UsageError(f"host {host.id} has no explicit kubeconfig in config.json; k3s-native never uses "
                             "the default context, $KUBECONFIG or ~/.kube/config (E2)",
                             path=f"hosts.{host.id}.kubeconfig")
        if not socket:
            raise UsageError(f"host {host.id} has no explicit containerdSocket in config.json; k3s-native never "
                             "uses a default containerd (E2)", path=f"hosts.{host.id}.containerdSocket")
        registry = str(host.settings.get("registry") or (catalog.registry if catalog else DEFAULT_REGISTRY))
        kube_timeout = host.timeouts.get(TimeoutKind.KUBERNETES)
        return cls(host=host, kube=facts.Kube(str(kubeconfig), host.settings.get("kubeContext"), host.id,
                                              timeout=(kube_timeout.connect, kube_timeout.read)),
                   ctr=Ctr(str(socket), host.id, timeout=host.timeouts.get(TimeoutKind.CONTAINERD)),
                   registry=registry_module.RegistryProvider(registry=registry, timeout=catalog.registry_timeouts.get(
                       TimeoutKind.REGISTRY) if catalog else DEFAULTS[TimeoutKind.REGISTRY]),
                   git=git or GitProvider())

    def close(self) -> None:
        self.kube.close()

    # -- readers

    def observe(self, requests: Sequence[ObserveRequest], *, parallelism: int = 10) -> dict[str, RuntimeState]:
        """Lists the Deployments (and Pods) of each namespace once, then reads containerd and health
        per service, at most `parallelism` at a time. A namespace asked for at most `OWN_READS_UP_TO`
        Deployments reads only those (a GET each, their Pods by selector), not the whole namespace."""
        targets = {r.service_id: self._k3s_target(r) for r in requests}
        wanted: dict[str, set[str]] = {}
        for t in targets.values():
            wanted.setdefault(t.namespace, set()).add(t.stamp_deployments[0])
        to_list = {ns: names for ns, names in wanted.items() if len(names) > OWN_READS_UP_TO}
        with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(requests)))) as pool:
            listed = dict(zip(to_list, pool.map(self._list_workloads, to_list.items()), strict=True))

            def read(request: ObserveRequest) -> RuntimeState:
                t = targets[request.service_id]
                workloads = listed[t.namespace] if t.namespace in listed else \
                    self._own_workloads(t.namespace, t.stamp_deployments[0])
                state = facts.runtime_state(self.ctr, self.host.id, t, workloads)
                if request.read_health and state.presence is not Presence.ABSENT:
                    health = facts.read_health(self.kube, t.namespace, t.health_service, t.health_port,
                                               request.health_path)
                    state = attrs.evolve(state, health=health.state)
                return state

            states = list(pool.map(read, requests))
        return {r.service_id: state for r, state in zip(requests, states, strict=True)}

    def _list_workloads(self, namespace_names: tuple[str, set[str]]) -> facts.Workloads:
        namespace, names = namespace_names
        try:
            return facts.list_workloads(self.kube, namespace, names)
        except kubernetes.client.exceptions.ApiException as exc:
            raise ProviderUnreachable(f"{self.host.id}: listing the Deployments and Pods of namespace {namespace}: "
                                      f"{facts.api_error(exc)}", path=self.host.id) from exc

    def _own_workloads(self, namespace: str, name: str) -> facts.Workloads:
        try:
            return facts.own_workloads(self.kube, namespace, name)
        except kubernetes.client.exceptions.ApiException as exc:
            raise ProviderUnreachable(f"{self.host.id}: reading Deployment {namespace}/{name} and its Pods: "
                                      f"{facts.api_error(exc)}", path=self.host.id) from exc

    def _k3s_target(self, request: ObserveRequest) -> K3sTarget:
        target: Target = request.target
        if target.k3s is None:
            raise UsageError(f"{request.service_id}: its target on {target.host} has no k3s section for the "
                             "k3s-native provider", path=request.service_id)
        return target.k3s

    def pause_image_check(self, image: str | None = None) -> dict[str, Any]:
        """E3: the sandbox image (default: the host's `sandboxImage`) is present and genuine."""
        return checks.pause_image_check(self.ctr, image or str(self.host.settings.get("sandboxImage")
                                                              or checks.PAUSE_IMAGE))

    def code_queue_image_gate(self, image: str | None = None, namespace: str | None = None,
                              deployments: Sequence[str] | None = None) -> dict[str, Any]:
        """E4: the Code Queue tag is in containerd and every listed Deployment references exactly it
        (defaults: `k3s_checks`' Code Queue image, namespace and Deployments)."""
        return checks.code_queue_image_gate(self.kube, self.ctr, image or checks.CODE_QUEUE_IMAGE,
                                            namespace or checks.CODE_QUEUE_NAMESPACE,
                                            checks.CODE_QUEUE_DEPLOYMENTS if deployments is None else deployments)

    def code_queue_diagnostics(self, namespace: str | None = None, deployments: Sequence[str] | None = None,
                               scheduler_service: str | None = None, scheduler_port: int | str | None = None,
                               health_path: str = "/health") -> dict[str, Any]:
        """E5: degraded/failing with a specific `degradedReason` (see providers.k3s_checks; the
        defaults are its Code Queue namespace, dependencies and scheduler)."""
        return checks.code_queue_diagnostics(
            self.kube, namespace or checks.CODE_QUEUE_NAMESPACE,
            checks.CODE_QUEUE_DEPENDENCIES if deployments is None else deployments,
            scheduler_service or checks.CODE_QUEUE_SCHEDULER, scheduler_port, health_path)

    # -- steps

    @classmethod
    def plan_steps(cls, request: DeployRequest) -> list[PlannedStep]:
        """import-image -> [guard-source] -> apply-objects -> stamp -> rollout -> verify-live."""
        d: DesiredService = request.service
        target: Target = request.target
        k, artifact = target.k3s, request.artifact
        if k is None or artifact is None:
            raise UsageError(f"{d.id}: the k3s-native provider deploys an artifact to a target with a k3s section; "
                             f"{target.host}'s has none" if k is None else
                             f"{d.id}: the k3s-native provider never builds from source (C4)", path=d.entry_path)
        local_image = k.import_image.replace("{commit}", d.resolved_commit)
        base = {"namespace": k.namespace, "deployments": list(k.stamp_deployments)}
        return [
            PlannedStep(StepKind.IMPORT_IMAGE, {"image": artifact.image, "localImage": local_image}),
            *_host_path_guard(d, k),
            PlannedStep(StepKind.APPLY_OBJECTS, {**base, "manifest": k.manifest, "objects": list(k.objects),
                                                 "manifestCommit": request.manifest_commit,
                                                 "manifestRemote": request.manifest_remote}),
            PlannedStep(StepKind.STAMP, {**base, "image": local_image, "annotations": d.deploy_stamp()}),
            PlannedStep(StepKind.ROLLOUT, base),
            PlannedStep(StepKind.VERIFY_LIVE, {**base, "healthService": k.health_service, "healthPort": k.health_port,
                                               "healthPath": d.microservice.health_path,
                                               "expectedCommit": d.resolved_commit,
                                               "expectedRequestedCommit": d.requested_commit}),
        ]

    def execute(self, request: StepRequest) -> StepResult:
        p, dry = request.params, request.dry_run
        try:
            match request.kind:
                case StepKind.IMPORT_IMAGE:
                    return ops.import_image(self.ctr, self.registry, p, dry)
                case StepKind.APPLY_OBJECTS:
                    manifest = self._manifest(p)
                    return manifest if isinstance(manifest, StepResult) else \
                        self._reporting_runtime(p, dry, lambda seen: ops.apply_objects(self.kube, manifest, p, dry,
                                                                                       seen))
                case StepKind.APPLY_PREREQUISITE:
                    manifest = self._manifest(p)
                    return manifest if isinstance(manifest, StepResult) else \
                        ops.apply_prerequisite(self.kube, manifest, p, dry)
                case StepKind.STAMP:
                    return self._reporting_runtime(p, dry, lambda seen: ops.stamp(self.kube, p, dry, seen))
                case StepKind.ROLLOUT:
                    return self._reporting_runtime(p, dry, lambda seen: ops.rollout(self.kube, p, dry, seen))
                case StepKind.VERIFY_LIVE:
                    return self._verify_live(request, wait=not dry)
                case StepKind.GUARD_SOURCE:
                    return self._guard_source(p, dry)
        except ProviderUnreachable as exc:
            return StepResult(False, f"{request.kind.value} on {self.host.id}: {exc.message}",
                              {"kind": request.kind.value})
        except kubernetes.client.exceptions.ApiException as exc:
            return StepResult(False, f"{request.kind.value} on {self.host.id}: Kubernetes API error "
                              f"{facts.api_error(exc)}", {"kind": request.kind.value})
        return StepResult(False, f"the k3s-native provider does not execute {request.kind.value!r} steps",
                          {"kind": request.kind.value})

    def _guard_source(self, p: Mapping[str, Any], dry_run: bool) -> StepResult:
        """G1 then E4, before any rollout that touches the hostPath source (read-only: dry run is the same)."""
        guard = check_code_queue_source(Path(str(p["root"])))
        facts_out: dict[str, Any] = {"guard": guard_json(guard)}
        if guard.degraded_reason is not None:
            detail = "; ".join([f"{u.path} is unreadable ({u.cause})" for u in guard.unreadable[:5]]
                               + [f"{m.importer} imports {m.specifier} (missing {m.target})"
                                  for m in guard.missing[:5]])
            return StepResult(False, f"code-queue source guard: degradedReason={guard.degraded_reason.value}"
                              + (f": {detail}" if detail else f" ({p['root']})") + "; rollout stopped", facts_out)
        if p.get("gateImage"):
            gate = self.code_queue_image_gate(str(p["gateImage"]), str(p["namespace"]), list(p["gateDeployments"]))
            facts_out["imageGate"] = gate
            if gate.get("failures"):
                return StepResult(False, f"code-queue image gate: {gate.get('degradedReason')}: "
                                  + "; ".join(map(str, gate["failures"])) + "; rollout stopped", facts_out)
        verb = "would pass" if dry_run else "passed"
        return StepResult(True, f"source guard {verb}: {guard.scanned} files, {guard.relative_imports} relative "
                          "imports resolve" + (", image gate holds" if p.get("gateImage") else ""), facts_out)

    # -- internals

    def _reporting_runtime(self, p: Mapping[str, Any], dry_run: bool,
                           step: Callable[[dict[str, Mapping[str, Any]]], StepResult]) -> StepResult:
        """`step`, and the service's runtime from the primary Deployment it wrote or polled last, for
        apply's resume record: the API server's answer to the write is the object a GET would return,
        and with its image in containerd it is everything the fingerprint covers. Its Pods are not
        listed: they only explain a rollout that is not ready (`detail`), never decide presence."""
        seen: dict[str, Mapping[str, Any]] = {}
        result = step(seen)
        name = str((p.get("deployments") or [""])[0])
        dep = seen.get(name)
        if dry_run or not result.ok or dep is None:
            return result
        where = f"{self.host.id}:{p['namespace']}/Deployment/{name}"
        return attrs.evolve(result, runtime=facts.deployment_state(self.ctr, where, dep, ()))

    def _manifest(self, p: Mapping[str, Any]) -> bytes | StepResult:
        """The manifest at the plan's manifest commit, read from git objects (never a working tree)."""
        try:
            return self.git.read(str(p["manifestRemote"]), str(p["manifestCommit"]), str(p["manifest"])).data
        except GitError as exc:
            return StepResult(False, f"cannot read {p['manifest']} at the manifest commit: {exc.message}",
                              {"manifest": p["manifest"], "manifestCommit": p.get("manifestCommit")})

    def _verify_live(self, request: StepRequest, *, wait: bool) -> StepResult:
        p = request.params
        namespace = str(p["namespace"])
        names = [str(n) for n in p.get("deployments") or []]
        expected = str(p["expectedCommit"])
        want = {"UNIDESK_DEPLOY_COMMIT": expected}
        if p.get("expectedRequestedCommit"):
            want["UNIDESK_DEPLOY_REQUESTED_COMMIT"] = str(p["expectedRequestedCommit"])
        timeout = float(p.get("healthTimeoutSeconds") or HEALTH_TIMEOUT) if wait else 0.0
        seen = poll(lambda: self._rollout_seen(namespace, names, want, p), _rollout_settled, timeout)
        problems = seen.static + seen.transient
        info = {"namespace": namespace, "deployments": seen.deployments, "expectedCommit": expected,
                "mismatches": problems, "health": seen.health.facts()}
        where = f"{self.host.id}:{namespace}/{','.join(names)}"
        if request.dry_run:
            now = "converged" if not problems else "; ".join(problems)
            return StepResult(True, f"would verify {where} reports {expected[:12]} (now: {now})",
                              {**info, "currentlyConverged": not problems})
        if problems:
            return StepResult(False, f"{where} does not run {expected[:12]}: " + "; ".join(problems), info)
        return StepResult(True, f"{where} runs {expected[:12]} (annotations, env and service-proxy health agree)",
                          info)

    def _rollout_seen(self, namespace: str, names: list[str], want: Mapping[str, str],
                      p: Mapping[str, Any]) -> RolloutSeen:
        """One look at the Deployments' stamps and rollout, and the service's health through the proxy."""
        expected = want["UNIDESK_DEPLOY_COMMIT"]
        static: list[str] = []
        transient: list[str] = []
        rolling = fatal = False
        deps: dict[str, Any] = {}
        for name in names:
            dep = facts.read_deployment(self.kube, namespace, name)
            if dep is None:
                static.append(f"Deployment {namespace}/{name} does not exist")
                continue
            deps[name] = {"image": facts.first_container(dep).get("image"), "deployEnv": facts.deploy_env(dep),
                          "identity": facts.template_identity(dep)}
            static += ops.stamp_mismatches(dep, None, want)
            status = facts.rollout_of(self.kube, dep, need_ready=True)
            if not status.ready:
                rolling, fatal = rolling or not status.fatal, fatal or bool(status.fatal)
                transient.append(f"{name} is not rolled out and ready: {'; '.join(status.problems)}")
        h = facts.read_health(self.kube, namespace, str(p["healthService"]), p["healthPort"],
                              str(p.get("healthPath") or "/health")).state
        answered = h.reachable and h.error is None
        if not answered:
            transient.append(f"health {p['healthService']}:{p['healthPort']}{p.get('healthPath') or '/health'} "
                             f"through the service proxy: {h.error or 'unreachable'}")
        else:
            if h.deploy_commit != expected:
                transient.append(f"health deploy.commit: expected {expected!r}, got {h.deploy_commit!r}")
            requested = want.get("UNIDESK_DEPLOY_REQUESTED_COMMIT")
            if requested and h.deploy_requested_commit != requested:
                transient.append(f"health deploy.requestedCommit: expected {requested!r}, "
                                 f"got {h.deploy_requested_commit!r}")
        return RolloutSeen(static, transient, rolling, fatal, deps, h)


@attrs.frozen
class RolloutSeen:
    """One look during verify-live: what can never settle (static), what may (transient), and why."""

    static: list[str]
    transient: list[str]
    rolling: bool  # a rollout is still progressing
    fatal: bool  # a rollout failed for good (e.g. an image that cannot be pulled)
    deployments: dict[str, Any]
    health: HealthState


def _rollout_settled(seen: RolloutSeen) -> bool:
    """Converged, or never will: an answer from a settled rollout is final, so a healthy old
    service fails now, not at the deadline."""
    answered = seen.health.reachable and seen.health.error is None
    return not (seen.static + seen.transient) or bool(seen.static) or seen.fatal or (answered and not seen.rolling)


def _host_path_guard(d: DesiredService, k: K3sTarget) -> list[PlannedStep]:
    """G1, E4: a rollout of a manifest that mounts the hostPath source first proves that source
    resolves and that the gate image is in containerd and referenced by every gated Deployment;
    the guard sits before any step that could restart a pod."""
    source = d.microservice.host_path_source
    if not source or source.get("manifest") != k.manifest:
        return []
    return [PlannedStep(StepKind.GUARD_SOURCE, {"root": source["root"], "gateImage": source.get("gateImage"),
                                                "gateDeployments": list(source.get("gateDeployments", ())),
                                                "namespace": k.namespace})]
