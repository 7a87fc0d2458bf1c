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

import json
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import attrs

from udeploy.engine.apply import lock as env_lock
from udeploy.engine.apply.jobs import Job, StateRecordCorrupt, check_state_folder, new_job_id, read_record
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
from udeploy.engine.provider_api import ObserveRequest, SourceReader, StepKind, StepRequest, source_reader


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


Progress = Callable[[str], None]


def _silent(message: str) -> None:
    pass


def plan_scope(plan: Plan) -> str:
    """The lock scope: one apply per environment (or per local manifest)."""
    return f"env-{plan.environment.name}" if plan.environment else "local-manifest"


class Resume:
    """What earlier jobs of the same plan already did: succeeded nodes and fingerprints after them."""

    def __init__(self, state_dir: Path, digest: str) -> None:
        self._lock = threading.Lock()  # nodes finish on several walk threads
        self.path = state_dir / "plans" / (digest.removeprefix("sha256:") + ".json")
        self.doc = self._read(self.path)

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        """The record, or an empty one. A corrupt record refuses the apply (issue 9): guessing
        which nodes are done could skip unverified work or redo work whose effect moved live state."""
        check_state_folder(path.parent.parent)
        check_state_folder(path.parent)
        try:
            doc = read_record(path)
        except FileNotFoundError:
            return {"nodes": {}, "runtime": {}}
        nodes, runtime = doc.get("nodes"), doc.get("runtime")
        if not _str_map(nodes) or not _str_map(runtime):
            raise StateRecordCorrupt(f"{path} is corrupt: nodes and runtime must map names to strings; "
                                     "remove it to re-apply every node, or make a new plan", path=str(path))
        return {"nodes": nodes, "runtime": runtime}

    @property
    def done(self) -> set[str]:
        return set(self.doc["nodes"])

    def runtime_fingerprint(self, service: str | None) -> str | None:
        found: str | None = self.doc["runtime"].get(service or "")
        return found

    def record(self, node: Node, runtime_fingerprint: str | None) -> None:
        with self._lock:
            self.doc["nodes"][node.id] = "succeeded"
            if node.service and runtime_fingerprint:
                self.doc["runtime"][node.service] = runtime_fingerprint
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.doc, indent=2))
            tmp.replace(self.path)


def _str_map(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def check_trust(plan: Plan, options: ApplyOptions, pool_for: Callable[[DesiredState], ProviderPool],
                resume: Resume, progress: Progress = _silent) -> tuple[DesiredState, ProviderPool, Observations]:
    """Refuse (exit 4, or 3 for policy) unless the plan still describes the world. Changes nothing."""
    git = source_reader()
    _check_manifest_unmoved(plan, git, options.checkout)
    progress("re-reading desired and live state")
    state = load_desired(request_of(plan.request, options.checkout), git)
    if isinstance(plan.manifest, EnvManifest) and state.source.commit != plan.manifest.commit:
        raise PlanStale(f"manifest moved: planned at {plan.manifest.commit}, now {state.source.commit}",
                        path=plan.manifest.ref)
    pool = pool_for(state)
    obs = observe(state, pool, parallelism=options.parallelism) if plan.refreshed else \
        Observations(artifacts={}, runtime={}, secrets={})
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


def _moved_nodes(plan: Plan, obs: Observations, resume: Resume) -> list[dict[str, Any]]:
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
               progress: Progress = _silent) -> dict[str, Any]:
    """Lock the environment, prove the plan still holds, then walk it. Nothing changes before
    the lock is held and every check passed."""
    pool_for = pool_for or (lambda state: ProviderPool(state.catalog.with_timeouts(options.timeouts)))
    digest = _digest(plan)
    job_id = options.job_id or new_job_id()
    held, taken_over = env_lock.acquire(options.state_dir, plan_scope(plan), job_id)
    pool: ProviderPool | None = None
    try:
        resume = Resume(options.state_dir, digest)
        _refuse_completed(plan, resume, options)
        state, pool, _ = check_trust(plan, options, pool_for, resume, progress)
        job = Job.create(options.state_dir, plan_digest=digest, plan_file=options.plan_file,
                         environment=plan.environment.name if plan.environment else None, dry_run=options.dry_run,
                         nodes=[n.id for n in plan.nodes], job_id=job_id)
        if taken_over:
            job.log(f"took over lock {taken_over.get('lockId')} abandoned by job {taken_over.get('jobId')} "
                    f"(pid {taken_over.get('pid')} is gone)")
        return _walk(plan, state, options, pool, job, resume, progress, taken_over, digest)
    finally:
        if pool is not None:
            pool.close()
        env_lock.release(options.state_dir, plan_scope(plan), held["lockId"], strict=False)


def _refuse_completed(plan: Plan, resume: Resume, options: ApplyOptions) -> None:
    """A plan whose every node was applied and verified is spent: its observations are history."""
    if options.dry_run or not plan.nodes or not {n.id for n in plan.nodes} <= resume.done:
        return
    raise PlanStale("this plan was already applied completely; make a new plan to compare with what runs now",
                    path=str(resume.path))


def _walk(plan: Plan, state: DesiredState, options: ApplyOptions, pool: ProviderPool, job: Job, resume: Resume,
          progress: Progress, taken_over: Mapping[str, Any] | None, digest: str) -> dict[str, Any]:
    by_id = {n.id: n for n in plan.nodes}
    done = set() if options.dry_run else resume.done & set(by_id)
    for n in sorted(done):
        job.node(n, "succeeded", message="already applied and verified by an earlier job of this plan")
    job.log(f"apply {'(dry run) ' if options.dry_run else ''}of plan {digest[:19]}: {len(by_id)} nodes, "
            f"{len(done)} already done")

    def run(node_id: str) -> None:
        node = by_id[node_id]
        where = f"{node.provider}@{node.host or '-'}"
        job.node(node_id, "running")
        job.log(f"start {node_id} ({where})")
        progress(f"{node_id}: running ({where})")
        provider = pool.executor(node.provider, node.host)
        request = StepRequest(node_id=node.id, kind=node.kind.value, service_id=node.service or "",
                              params=node.params, dry_run=options.dry_run)
        try:
            result = provider.execute(request)
            if result.ok and not options.dry_run:  # recorded before the node counts as done
                resume.record(node, _runtime_after(pool, state, node))
        except Exception as exc:  # a provider bug must still leave an honest job record
            message = exc.message if isinstance(exc, UdeployError) else f"{type(exc).__name__}: {exc}"
            job.node(node_id, "failed", message=message)
            job.log(f"failed {node_id}: {message}")
            progress(f"{node_id}: FAILED: {message}")
            raise
        if not result.ok:
            job.node(node_id, "failed", message=result.message)
            job.log(f"failed {node_id}: {result.message}" + _output_tail(result.facts))
            progress(f"{node_id}: FAILED: {result.message}")
            raise StepFailed(result.message, path=node_id)
        job.node(node_id, "succeeded", message=result.message)
        job.log(f"done {node_id}: {result.message}" + _output_tail(result.facts, lines=SUCCESS_LOG_LINES))
        progress(f"{node_id}: {'would do' if options.dry_run else 'done'}: {result.message}")

    result = graph_of(plan).walk(run, parallelism=options.parallelism, done=done)
    for node_id, outcome in result.outcomes.items():
        if outcome is NodeOutcome.SKIPPED:
            job.node(node_id, "skipped", message=result.errors.get(node_id, ""))
            job.log(f"skipped {node_id}: an upstream node did not succeed")
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
    return summary


SUCCESS_LOG_LINES = 60  # a succeeded step's evidence lines (B3's target_* lines) stay in the job log


def _output_tail(facts: Mapping[str, Any], lines: int = 8) -> str:
    """The end of a step's command output (`facts["log"]`), indented under its log line."""
    log = facts.get("log")
    if not log:
        return ""
    text = log if isinstance(log, str) else "\n".join(map(str, log))
    return "".join(f"\n    | {line}" for line in text.strip().splitlines()[-lines:])


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
