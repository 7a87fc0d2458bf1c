"""Apply a saved plan: exactly its nodes, after proving it can still be trusted (K1, O6, V4).

Before anything changes: the digest and format were checked by `read_plan`; here the environment
lock is taken first (so nothing can move between the checks and the walk), then the manifest ref
must not have moved, every node's observed fingerprint must still hold (else `stale`, naming what
moved), and every guardrail must pass again. Then the walk runs the nodes in dependency order, in
parallel, each through its provider; a failed node skips its dependents. Each succeeded node is
recorded under the plan's digest, so re-running the same plan after a failure or a killed process
resumes instead of redoing verified work; a plan whose every node is done is spent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from udeploy.engine.apply.jobs import new_job_id
from udeploy.engine.apply.lease import Lease
from udeploy.engine.apply.progress import NodeState, Progress, ProgressEvent, phase, silent
from udeploy.engine.apply.state import DEFAULT_LEASE_SECONDS, LocalResume, LocalState
from udeploy.engine.errors import PolicyRefused, UdeployError
from udeploy.engine.load.desired import DesiredState, load_desired
from udeploy.engine.load.repo_url import redact_url
from udeploy.engine.load.source import open_file_source, origin_url
from udeploy.engine.load.timeouts import Timeouts
from udeploy.engine.plan.graph import Graph, NodeOutcome
from udeploy.engine.plan.guardrails import run_all
from udeploy.engine.plan.model import Action, Node, Plan
from udeploy.engine.plan.observe import Observations, ProviderPool, observe, runtime_target
from udeploy.engine.plan.planfile import PlanStale, to_document
from udeploy.engine.plan.planner import guard_context, request_of
from udeploy.engine.plan.records import EnvManifest
from udeploy.engine.provider_api import (
    ObserveRequest,
    SourceReader,
    StepKind,
    StepRequest,
    StepResult,
    source_reader,
)
from udeploy.engine.state_api import JobRecord, LeaseLost, ResumeRecord, StateBackend, StateUnavailable


class StepFailed(UdeployError, RuntimeError):
    code = "step-failed"


@attrs.frozen
class ApplyOptions:
    state_dir: Path
    checkout: Path
    parallelism: int = 10
    dry_run: bool = False
    plan_file: str | None = None
    job_id: str | None = None  # set by a detached parent that already printed it
    timeouts: Timeouts = attrs.field(factory=Timeouts)  # --timeout, over config.json's
    state: StateBackend | None = None  # a shared backend (--state-url); None: the directory state_dir
    lease_seconds: float = DEFAULT_LEASE_SECONDS  # how long a dead holder keeps a shared lock

    def backend(self) -> StateBackend:
        return self.state if self.state is not None else LocalState(self.state_dir)


def plan_scope(plan: Plan) -> str:
    """The lock scope: one apply per environment (or per local manifest)."""
    return f"env-{plan.environment.name}" if plan.environment else "local-manifest"


Resume = LocalResume  # the local record's old name


def check_trust(plan: Plan, options: ApplyOptions, pool_for: Callable[[DesiredState], ProviderPool],
                resume: ResumeRecord, progress: Progress = silent) -> tuple[DesiredState, ProviderPool, Observations]:
    """Refuse (exit 4, or 3 for policy) unless the plan still describes the world. Changes nothing."""
    git = source_reader()
    _check_manifest_unmoved(plan, git, options.checkout)
    progress(phase("re-reading desired and live state"))
    state = load_desired(request_of(plan.request, options.checkout), git)
    if isinstance(plan.manifest, EnvManifest) and state.source.commit != plan.manifest.commit:
        raise PlanStale(f"manifest moved: planned at {plan.manifest.commit}, now {state.source.commit}",
                        path=plan.manifest.ref)
    pool = pool_for(state)
    obs = observe(_deploying(plan, state), pool, parallelism=options.parallelism, read_health=False) \
        if plan.refreshed else Observations(artifacts={}, runtime={}, secrets={})
    moved = _moved_nodes(plan, obs, resume)
    if moved:
        raise PlanStale(f"the plan is stale: {len(moved)} node(s) were planned against state that has since changed "
                        f"({'; '.join(m['why'] for m in moved[:5])}); make a new plan",
                        path=moved[0]["node"], details={"moved": moved})
    failed = [f"{g.id} {g.name}: {f.summary}" for g in run_all(guard_context(plan, state)) if not g.passed
              for f in g.findings]
    if failed:
        raise PolicyRefused("guardrails fail at apply time: " + "; ".join(failed), rule="K4",
                            details={"findings": failed})
    for s in plan.services:
        secrets = obs.secrets.get(s.id)
        if s.action is Action.DEPLOY and secrets and secrets.get("requiredSecretsPresent") is False:
            missing = ", ".join(secrets["missingSecretKeys"])
            raise PolicyRefused(f"{s.id}: required runtime secrets are missing ({missing}); nothing was changed",
                                rule="P7", path=s.id)
    return state, pool, obs


def _deploying(plan: Plan, state: DesiredState) -> DesiredState:
    """The services the trust check needs read: those the plan deploys. Only their nodes carry
    fingerprints to compare and only they are held to P7; a no-op service has no node, so reading
    it (or any service's health, which no fingerprint covers) could never refuse anything."""
    deploying = {s.id for s in plan.services if s.action is Action.DEPLOY}
    return attrs.evolve(state, services=tuple(d for d in state.services if d.id in deploying))


def _check_manifest_unmoved(plan: Plan, git: SourceReader, checkout: Path) -> None:
    m = plan.manifest
    if isinstance(m, EnvManifest):
        remote = m.remote
        real = origin_url(checkout)  # the plan records the remote redacted; fetch with the checkout's own
        now_at = git.ref_commit(real if redact_url(real) == remote else remote, m.ref)
        if now_at != m.commit:
            raise PlanStale(f"manifest ref {m.ref} moved from {m.commit[:12]} to {now_at[:12]} since "
                            "the plan was made; make a new plan", path=m.ref,
                            details={"planned": m.commit, "now": now_at})
        return
    _, _, source = open_file_source(Path(m.file), checkout)
    for name, planned, now in (("deploy manifest", m.sha256, source.file_sha256),
                               ("config.json", m.config_sha256, source.config_blob),
                               ("CI.json", m.ci_sha256, source.ci_blob)):
        if planned != now:
            raise PlanStale(f"{name} changed in the working tree since the plan was made; make a new plan",
                            path=m.file if name == "deploy manifest" else name)


def _moved_nodes(plan: Plan, obs: Observations, resume: ResumeRecord) -> list[dict[str, Any]]:
    live = {s.id: s.live for s in plan.services}
    moved: dict[str, dict[str, Any]] = {}  # one entry per service is enough to explain it
    for n in plan.nodes:
        if n.observed is None or n.id in resume.done or (n.service or n.id) in moved:
            continue
        if n.kind is StepKind.VERIFY_ARTIFACT:
            art = obs.artifacts.get(n.service or "")
            now_fp = art.fingerprint if art else None
            what = f"artifact {n.params.get('image')}"
        else:
            rt = obs.runtime.get(n.service or "")
            now_fp = rt.fingerprint if rt else None
            before = live.get(n.service or "")
            was = (before.presence.value, before.commit) if before else (None, None)
            what = (f"{n.service} on {rt.target if rt else n.host}: was {was[0]} at "
                    f"{str(was[1])[:12]}, now {rt.presence.value if rt else 'unreadable'} at "
                    f"{str(rt.live_commit if rt else None)[:12]}")
        expected = resume.runtime_fingerprint(n.service) if n.kind is not StepKind.VERIFY_ARTIFACT else None
        expected = expected or n.observed
        if now_fp != expected:
            moved[n.service or n.id] = {"node": n.id, "planned": n.observed, "now": now_fp, "why": f"{n.id}: {what}"}
    return list(moved.values())


def graph_of(plan: Plan) -> Graph:
    g = Graph()
    for n in plan.nodes:
        g.add(n.id)
    for a, b in plan.edges:
        g.connect(a, b)
    g.validate()
    return g


def apply_plan(plan: Plan, options: ApplyOptions, *, pool_for: Callable[[DesiredState], ProviderPool] | None = None,
               progress: Progress = silent) -> dict[str, Any]:
    """Lock the environment, prove the plan still holds, then walk it. Nothing changes before
    the lock is held and every check passed; no step starts unless the lease still holds."""
    pool_for = pool_for or (lambda state: ProviderPool(state.catalog.with_timeouts(options.timeouts)))
    digest = _digest(plan)
    job_id = options.job_id or new_job_id()
    backend = options.backend()
    grant = backend.acquire_lock(plan_scope(plan), job_id, options.lease_seconds)
    taken_over = grant.taken_over
    pool: ProviderPool | None = None
    try:
        with Lease(backend, grant, options.lease_seconds) as lease:
            resume = backend.resume(digest)
            _refuse_completed(plan, resume, options)
            state, pool, _ = check_trust(plan, options, pool_for, resume, progress)
            lease.fence()
            job = backend.create_job(plan_digest=digest, plan_file=options.plan_file,
                                     environment=plan.environment.name if plan.environment else None,
                                     dry_run=options.dry_run, nodes=[n.id for n in plan.nodes], job_id=job_id,
                                     lock=grant)
            if taken_over:
                job.log(f"took over lock {taken_over.get('lockId')} abandoned by job {taken_over.get('jobId')} "
                        f"({_why_abandoned(taken_over)})")
            return _walk(plan, state, options, pool, job, resume, progress, taken_over, digest, lease)
    finally:
        if pool is not None:
            pool.close()
        try:
            backend.release_lock(plan_scope(plan), grant.lock_id, strict=False)
        except StateUnavailable:
            pass  # the lease runs out on its own; the error that got us here is the one to report


def _why_abandoned(lock: Mapping[str, Any]) -> str:
    if lock.get("expiresAt"):
        return f"its lease expired at {lock['expiresAt']}"
    return f"pid {lock.get('pid')} is gone"


def _refuse_completed(plan: Plan, resume: ResumeRecord, options: ApplyOptions) -> None:
    """A plan whose every node was applied and verified is spent: its observations are history."""
    if options.dry_run or not plan.nodes or not {n.id for n in plan.nodes} <= resume.done:
        return
    raise PlanStale("this plan was already applied completely; make a new plan to compare with what runs now",
                    path=resume.location)


def _walk(plan: Plan, state: DesiredState, options: ApplyOptions, pool: ProviderPool, job: JobRecord,
          resume: ResumeRecord, progress: Progress, taken_over: Mapping[str, Any] | None, digest: str,
          lease: Lease) -> dict[str, Any]:
    by_id = {n.id: n for n in plan.nodes}
    done = set() if options.dry_run else resume.done & set(by_id)
    closing = _closing_nodes(plan)
    for n in sorted(done):
        job.node(n, "succeeded", message="already applied and verified by an earlier job of this plan")
    for each in plan.nodes:  # the watcher's starting picture: every node and where it runs
        resumed = each.id in done
        progress(ProgressEvent(node=each.id, where=_where(each),
                               state=NodeState.SUCCEEDED if resumed else NodeState.PENDING,
                               message="already applied and verified by an earlier job" if resumed else ""))
    job.log(f"apply {'(dry run) ' if options.dry_run else ''}of plan {digest[:19]}: {len(by_id)} nodes, "
            f"{len(done)} already done")
    progress(phase(f"job {job.id}: {len(by_id)} nodes, {len(done)} already done"))

    unavailable: list[tuple[str, StateUnavailable]] = []  # fences that could not reach the backend

    def run_node(node_id: str) -> None:
        node = by_id[node_id]
        where = _where(node)

        def tell(state: NodeState, message: str = "") -> None:
            progress(ProgressEvent(node=node_id, state=state, message=message, where=where))
        if not options.dry_run:
            _fence(lease, job, node_id, tell)
        job.node(node_id, "running")
        job.log(f"start {node_id} ({where})")
        tell(NodeState.RUNNING)
        provider = pool.executor(node.provider, node.host)
        request = StepRequest(node_id=node.id, kind=node.kind.value, service_id=node.service or "",
                              params=node.params, dry_run=options.dry_run)
        try:
            result = provider.execute(request)
            if result.ok and not options.dry_run:  # recorded before the node counts as done
                resume.record(node.id, node.service, _fingerprint_after(pool, state, node, result, closing))
        except Exception as exc:  # a provider bug must still leave an honest job record
            message = exc.message if isinstance(exc, UdeployError) else f"{type(exc).__name__}: {exc}"
            job.node(node_id, "failed", message=message)
            job.log(f"failed {node_id}: {message}")
            tell(NodeState.FAILED, message)
            raise
        if not result.ok:
            job.node(node_id, "failed", message=result.message)
            job.log(f"failed {node_id}: {result.message}" + _output_tail(result.facts))
            tell(NodeState.FAILED, result.message)
            raise StepFailed(result.message, path=node_id)
        job.node(node_id, "succeeded", message=result.message)
        job.log(f"done {node_id}: {result.message}" + _output_tail(result.facts, lines=SUCCESS_LOG_LINES))
        tell(NodeState.SUCCEEDED, f"would do: {result.message}" if options.dry_run else result.message)

    def run(node_id: str) -> None:
        try:
            if unavailable:  # even if the backend is back: this walk's records have a gap, stop
                raise unavailable[0][1]
            run_node(node_id)
        except StateUnavailable as exc:  # the backend went away: the walk starts nothing more
            unavailable.append((node_id, exc))
            raise

    result = graph_of(plan).walk(run, parallelism=options.parallelism, done=done)
    if unavailable:
        _stopped_by_outage(unavailable, result.outcomes, job)
    for node_id, outcome in result.outcomes.items():
        if outcome is NodeOutcome.SKIPPED:
            job.node(node_id, "skipped", message=result.errors.get(node_id, ""))
            job.log(f"skipped {node_id}: an upstream node did not succeed")
            progress(ProgressEvent(node=node_id, state=NodeState.SKIPPED, where=_where(by_id[node_id]),
                                   message="an upstream node did not succeed"))
    services = _service_outcomes(plan, result.outcomes)
    job_state = "succeeded" if result.ok else "failed"
    summary = {
        "jobId": job.id, "state": job_state, "dryRun": options.dry_run, "planDigest": digest,
        "tookOverLock": dict(taken_over) if taken_over else None,
        "nodes": {n: o.value for n, o in result.outcomes.items()},
        "resumed": sorted(done),
        "failed": [{"node": n, "error": result.errors.get(n, "")} for n, o in result.outcomes.items()
                   if o is NodeOutcome.FAILED],
        "skipped": [n for n, o in result.outcomes.items() if o is NodeOutcome.SKIPPED],
        "services": services,
        "untouched": [{"id": s.id, "action": s.action.value, "reason": s.reason} for s in plan.services
                      if s.action is not Action.DEPLOY],
    }
    job.finish(job_state, summary)
    job.log(f"job {job_state}")
    progress(phase(f"job {job.id} {job_state}"))
    return summary


def _stopped_by_outage(unavailable: list[tuple[str, StateUnavailable]], outcomes: Mapping[str, NodeOutcome],
                       job: JobRecord) -> None:
    """The state backend stopped answering: the walk started nothing after that. Say so, and leave
    what the backend can still take (it may be back already); what it cannot take, the lease
    expiry tells `job status` (the job shows as died)."""
    first, exc = unavailable[0]
    succeeded = sorted(n for n, o in outcomes.items() if o is NodeOutcome.SUCCEEDED)
    message = (f"the state backend stopped answering mid-apply ({exc.message}); stopped at {first}; "
               f"{len(succeeded)} node(s) had succeeded and are recorded for resume: re-run the same plan "
               "when the backend is back")
    try:
        job.log(f"stopped: state-unavailable: {message}")
        job.finish("failed", {"error": {"code": exc.code, "message": message}})
    except StateUnavailable:
        pass
    raise StateUnavailable(message, path=first, details={"stoppedBefore": first, "succeeded": succeeded})


def _fence(lease: Lease, job: JobRecord, node_id: str, tell: Callable[[NodeState, str], None]) -> None:
    """Before a mutating step: stop unless this apply still holds its lease. A lost lease is
    written to the job (the backend answers); an unreachable backend cannot take the record."""
    try:
        lease.fence()
    except LeaseLost as exc:
        job.node(node_id, "failed", message=f"not started: {exc.message}")
        job.log(f"stopped before {node_id}: {exc.code}: {exc.message}")
        tell(NodeState.FAILED, f"not started: {exc.message}")
        raise
    except StateUnavailable as exc:
        tell(NodeState.FAILED, f"not started: {exc.message}")
        raise


def _where(node: Node) -> str:
    return f"{node.provider}@{node.host or '-'}"


SUCCESS_LOG_LINES = 60  # a succeeded step's evidence lines (B3's target_* lines) stay in the job log


def _output_tail(facts: Mapping[str, Any], lines: int = 8) -> str:
    """The end of a step's command output (`facts["log"]`), indented under its log line."""
    log = facts.get("log")
    if not log:
        return ""
    text = log if isinstance(log, str) else "\n".join(map(str, log))
    return "".join(f"\n    | {line}" for line in text.strip().splitlines()[-lines:])


def _closing_nodes(plan: Plan) -> set[str]:
    """The nodes whose success leaves every node of their service done: all the others are upstream
    of it, and the walk runs a node only after its upstream succeeded. A resume skips done nodes,
    so the runtime fingerprint recorded after a closing node is never compared: apply does not
    read the service for it."""
    service = {n.id: n.service for n in plan.nodes}
    upstream: dict[str, list[str]] = {n.id: [] for n in plan.nodes}
    feeds_own_service: set[str] = set()
    for a, b in plan.edges:
        upstream[b].append(a)
        if service[a] and service[a] == service[b]:
            feeds_own_service.add(a)
    by_service: dict[str, set[str]] = {}
    for n in plan.nodes:
        if n.service:
            by_service.setdefault(n.service, set()).add(n.id)

    def closes(node_id: str, own: str) -> bool:
        missing, seen, todo = by_service[own] - {node_id}, {node_id}, [node_id]
        while todo and missing:
            for u in upstream[todo.pop()]:
                if u not in seen:
                    seen.add(u)
                    missing.discard(u)
                    todo.append(u)
        return not missing

    return {n.id for n in plan.nodes if n.service and n.id not in feeds_own_service and closes(n.id, n.service)}


def _fingerprint_after(pool: ProviderPool, state: DesiredState, node: Node, result: StepResult,
                       closing: set[str]) -> str | None:
    """What the resume record keeps after a succeeded step: the runtime fingerprint the step
    reported, else a fresh read, unless it could never be compared (a closing node) or the step left
    the runtime untouched (None: the record keeps the fingerprint it holds, else the plan's)."""
    if node.id in closing or result.runtime_untouched:
        return None
    if result.runtime is not None:
        return result.runtime.fingerprint
    return _runtime_after(pool, state, node)


def _runtime_after(pool: ProviderPool, state: DesiredState, node: Node) -> str | None:
    """The service's runtime fingerprint after a mutating step, for the resume staleness check."""
    if node.kind in (StepKind.VERIFY_ARTIFACT, StepKind.APPLY_PREREQUISITE) or not node.service:
        return None
    d = next((d for d in state.services if d.id == node.service), None)
    where = runtime_target(d) if d else None
    if d is None or where is None:
        return None
    host, target = where
    found = pool.runtime(host).observe(
        [ObserveRequest(service_id=d.id, target=target, health_path=d.microservice.health_path, read_health=False)])
    return found[d.id].fingerprint


def _service_outcomes(plan: Plan, outcomes: Mapping[str, NodeOutcome]) -> list[dict[str, Any]]:
    out = []
    for s in plan.services:
        if s.action is not Action.DEPLOY:
            continue
        mine = {n: o for n, o in outcomes.items() if n.startswith(s.id + "/")}
        verified = bool(mine) and all(o is NodeOutcome.SUCCEEDED for o in mine.values())
        out.append({"id": s.id, "commit": s.resolved_commit, "verified": verified,
                    "outcome": "deployed" if verified else
                    ("skipped" if any(o is NodeOutcome.SKIPPED for o in mine.values()) and
                     not any(o is NodeOutcome.FAILED for o in mine.values()) else "failed")})
    return out


def _digest(plan: Plan) -> str:
    return str(to_document(plan)["digest"])
