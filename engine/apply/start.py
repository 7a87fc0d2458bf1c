"""`udeploy apply`, as one engine call: a saved plan, or plan-then-apply in one step (K1, O6).

A saved plan is applied exactly. The one-step shape plans with the same code as `udeploy plan`,
refuses what policy stops for the services asked by name, then applies that plan. `detach`
returns the launch document at once and leaves the work to a child process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from udeploy.engine.apply.detach import detach
from udeploy.engine.apply.progress import Progress, phase
from udeploy.engine.apply.refusal import record_refusal, refuse_policy
from udeploy.engine.apply.run import ApplyOptions, apply_plan, plan_scope
from udeploy.engine.apply.state import lease_seconds, open_state
from udeploy.engine.errors import UdeployError
from udeploy.engine.load.desired import Request
from udeploy.engine.load.timeouts import Timeouts
from udeploy.engine.plan.planfile import read_plan
from udeploy.engine.plan.planner import PlanOptions, make_plan


@attrs.frozen
class StartApply:
    source: Path | Request  # a saved plan file, or the request to plan first
    state_dir: Path
    checkout: Path
    force: bool = False  # one-step only: deploy even where the live commit matches
    parallelism: int = 10
    dry_run: bool = False
    detach: bool = False
    job_id: str | None = None  # set by a detached parent that already printed it
    timeouts: Timeouts = attrs.field(factory=Timeouts)  # --timeout, over config.json's
    state_url: str | None = None  # --state-url: a shared state backend instead of state_dir


def start_apply(cmd: StartApply, progress: Progress) -> dict[str, Any]:
    """The job result (or, detached, the launch document); a refusal is raised, and a detached
    child also records it in its job."""
    if isinstance(cmd.source, Request):
        progress(phase("planning"))
        plan = make_plan(cmd.source, PlanOptions(force=cmd.force, parallelism=cmd.parallelism,
                                                     timeouts=cmd.timeouts)).plan
        refuse_policy(plan, cmd.source.services, cmd.dry_run)
        path = None
    else:
        plan, path = read_plan(cmd.source), cmd.source
    if cmd.detach:
        return detach(plan, path, cmd.state_dir, cmd.checkout, cmd.dry_run, cmd.parallelism,
                      cmd.timeouts.cli_args(), state_url=cmd.state_url)
    state = open_state(cmd.state_dir, cmd.state_url)
    try:
        options = ApplyOptions(state_dir=cmd.state_dir, checkout=cmd.checkout, parallelism=cmd.parallelism,
                               dry_run=cmd.dry_run, plan_file=str(path) if path else None, job_id=cmd.job_id,
                               timeouts=cmd.timeouts, state=state, lease_seconds=lease_seconds())
        progress(phase(f"applying {len(plan.nodes)} nodes in {plan_scope(plan)}{' (dry run)' if cmd.dry_run else ''}"
                       f" (state: {state.location})"))
        try:
            return apply_plan(plan, options, progress=progress)
        except UdeployError as exc:
            if cmd.job_id and exc.code != "state-unavailable":  # a detached child: leave it for `job status`
                record_refusal(state, cmd.job_id, plan, exc)
            raise
    finally:
        state.close()
