"""`udeploy job show JOB`: the job's record joined with the plan it applied, for the plan page
painted by node state (succeeded, failed, skipped, running, not reached).

The job record keeps the plan's digest, not the plan. The plan is looked for, in order: `--plan`,
the spool a detached apply leaves in the local state directory (`jobs/<id>.plan.json`), and the
plan file the job was started with (`planFile`). A candidate counts only when `read_plan` accepts
it and its digest is the job's: a plan file rewritten since is not this job's plan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from udeploy.engine.apply.jobs import JobRecordCorrupt, check_job_id
from udeploy.engine.errors import UdeployError, UsageError
from udeploy.engine.plan.model import Plan
from udeploy.engine.plan.page import JOB_STATES, JobView, NodeRun
from udeploy.engine.plan.planfile import read_plan, to_document
from udeploy.engine.state_api import StateBackend

# The job record's node states as the page shows them: pending was not reached.
STATE_SHOWN = {"succeeded": "succeeded", "failed": "failed", "skipped": "skipped", "running": "running",
               "pending": "not-reached"}


class JobPlanNotFound(UdeployError, LookupError):
    """No plan whose digest is the job's could be found."""

    code = "job-plan-not-found"


def job_with_plan(backend: StateBackend, state_dir: Path, job_id: str, plan_file: Path | None) -> tuple[Plan, JobView]:
    """The plan `job_id` applied and the job as the page shows it."""
    doc = backend.open_job(check_job_id(job_id, "JOB")).status()
    digest = doc.get("planDigest")
    if not isinstance(digest, str):
        raise JobRecordCorrupt(f"job {job_id}: the record names no plan digest", path=job_id)
    plan, source = _find_plan(doc, digest, state_dir, job_id, plan_file)
    return plan, job_view(doc, source)


def job_view(doc: dict[str, Any], plan_source: str) -> JobView:
    """A job document (`JobRecord.status()`) read for the page; unknown node states read as not reached."""
    nodes: dict[str, NodeRun] = {}
    for node_id, record in (doc.get("nodes") or {}).items():
        if not isinstance(record, dict):
            continue
        state = STATE_SHOWN.get(str(record.get("state")), "not-reached")
        assert state in JOB_STATES
        message, at = record.get("message"), record.get("at")
        nodes[str(node_id)] = NodeRun(state=state, message=str(message) if message is not None else None,
                                      at=str(at) if at is not None else None)
    finished = doc.get("finishedAt")
    return JobView(job_id=str(doc["jobId"]), state=str(doc["state"]), dry_run=doc.get("dryRun") is True,
                   started_at=str(doc.get("startedAt")), finished_at=str(finished) if finished else None,
                   nodes=nodes, plan_source=plan_source)


def _find_plan(doc: dict[str, Any], digest: str, state_dir: Path, job_id: str,
               plan_file: Path | None) -> tuple[Plan, str]:
    if plan_file is not None:  # asked for by name: any refusal is the answer
        plan = read_plan(plan_file)
        if _digest(plan) != digest:
            raise UsageError(f"--plan {plan_file} is not job {job_id}'s plan: its digest is {_digest(plan)}, "
                             f"the job applied {digest}", path="--plan")
        return plan, str(plan_file)
    candidates = [state_dir / "jobs" / f"{job_id}.plan.json"]
    if isinstance(doc.get("planFile"), str):
        candidates.append(Path(doc["planFile"]))
    tried = []
    for path in candidates:
        if not path.is_file():
            tried.append(f"{path} (absent)")
            continue
        try:
            plan = read_plan(path)
        except UdeployError as exc:
            tried.append(f"{path} ({exc.code})")
            continue
        if _digest(plan) == digest:
            return plan, str(path)
        tried.append(f"{path} (another plan: digest {_digest(plan)[:19]})")
    raise JobPlanNotFound(f"job {job_id} applied plan {digest}, which was not found: tried {'; '.join(tried)}; "
                          "give the plan file with --plan", path="--plan", details={"tried": tried})


def _digest(plan: Plan) -> str:
    return str(to_document(plan)["digest"])
