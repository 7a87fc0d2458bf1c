"""What a one-step apply refuses before it starts, and where a detached apply leaves a refusal.

Asking by name for a service that policy stops is a refusal naming the requirement behind the
service's `Blocked` reason (O7, and `RULE_OF_REASON` in the plan model); a service stopped by an
outage (a registry or provider that could not be reached) is an error, not a policy refusal.
"""

from __future__ import annotations

from udeploy.engine.errors import ExitCode, PolicyRefused, RuleError, UdeployError
from udeploy.engine.plan.model import Action, Blocked, BlockedReason, Plan, ServiceChange
from udeploy.engine.plan.planfile import make_converter
from udeploy.engine.state_api import JobNotFound, StateBackend


class InfraBlocked(RuleError, ConnectionError):
    """The service is blocked by an outage, not by policy: nothing was changed; retry when it is back."""

    code = "infra-blocked"
    exit_code = ExitCode.ERROR


def refuse_policy(plan: Plan, selected: tuple[str, ...], dry_run: bool) -> None:
    """One-step apply: asking by name for what policy refuses is a refusal (exit 3), with the
    structured payload (O7); an environment-wide apply just leaves such services untouched."""
    for s in plan.services:
        if plan.mode == "file" and s.blocked == Blocked(BlockedReason.REVIEWED_ARTIFACT_CONSUMER):
            raise PolicyRefused(f"{s.id}: {s.reason}", rule=s.blocked.rule, path=s.id,
                                details={"service": _payload(s)})
        if s.id not in selected or s.action in (Action.DEPLOY, Action.NOOP):
            continue
        if dry_run and s.action is Action.GATED:
            continue
        message = f"{s.id} is {s.action.value} in this environment: {s.reason}"
        if s.action is Action.UNSUPPORTED:
            raise PolicyRefused(message, rule="O7", path=s.id, details={"service": _payload(s)})
        assert s.blocked is not None  # the plan model refuses a blocked or gated service without a reason
        if s.blocked.outage:
            raise InfraBlocked(message, rule=s.blocked.rule, path=s.id, details={"service": _payload(s)})
        raise PolicyRefused(message, rule=s.blocked.rule, path=s.id, details={"service": _payload(s)})


def _payload(s: ServiceChange) -> dict[str, object]:
    doc: dict[str, object] = make_converter().unstructure(s)
    return doc


def record_refusal(state: StateBackend, job_id: str, plan: Plan, exc: UdeployError) -> None:
    """A detached child refused before or while walking: leave the refusal where `job status` looks."""
    try:
        job = state.open_job(job_id)
    except JobNotFound:
        job = state.create_job(plan_digest="", plan_file=None,
                               environment=plan.environment.name if plan.environment else None, dry_run=False,
                               nodes=[], job_id=job_id)
    job.log(f"refused: {exc.code}: {exc.message}")
    job.finish("refused", exc.to_json())
