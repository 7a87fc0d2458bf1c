"""`udeploy check`: live runtime against the desired repo and commit, plus the k3s runtime checks (O5).

It plans with live reads (the same observation as `udeploy plan`) and changes nothing. A service
differs when what runs is not what deploy.json asks, whatever policy lets udeploy do about it.
"""

from __future__ import annotations

from typing import Any

from udeploy.engine import __version__
from udeploy.engine.checks.runtime_checks import run_checks
from udeploy.engine.load.desired import DesiredState, Request
from udeploy.engine.load.timeouts import Timeouts
from udeploy.engine.plan.model import Action, ServiceChange
from udeploy.engine.plan.observe import ProviderPool
from udeploy.engine.plan.planfile import make_converter
from udeploy.engine.plan.planner import PlanOptions, make_plan
from udeploy.engine.plan.records import EnvironmentRecord, LiveSummary, ManifestRecord
from udeploy.engine.provider_api import Presence


def check_live(request: Request, parallelism: int = 10, timeouts: Timeouts | None = None) -> dict[str, Any]:
    """The check document: `inSync` and `differ` for the services, `checksPassed` and `checks` for
    the runtime checks (E3, E5), and each service's desired commit beside its live summary."""
    pools: list[ProviderPool] = []

    def pool_for(state: DesiredState) -> ProviderPool:
        pools.append(ProviderPool(state.catalog))
        return pools[-1]

    try:
        planned = make_plan(request, PlanOptions(refresh=True, parallelism=parallelism,
                                                     timeouts=timeouts or Timeouts()), pool_for=pool_for)
        checks = run_checks(planned.state, pools[-1])
    finally:
        for pool in pools:
            pool.close()
    p = planned.plan
    differ = [s.id for s in p.services if s.action is not Action.UNSUPPORTED and not live_matches(s)]
    failing = [c for c in checks if not c.get("ok")]
    conv = make_converter()
    return {"udeployVersion": __version__, "manifest": conv.unstructure(p.manifest, ManifestRecord),
            "environment": conv.unstructure(p.environment, EnvironmentRecord | None),
            "inSync": not differ, "differ": differ, "checksPassed": not failing, "checks": checks,
            "services": [{"id": s.id, "action": s.action.value, "desiredCommit": s.resolved_commit,
                          "live": conv.unstructure(s.live, LiveSummary | None), "drift": s.drift,
                          "reason": s.reason} for s in p.services]}


def live_matches(s: ServiceChange) -> bool:
    """Running, at the desired commit, and its /health (when it reports one) agrees."""
    live = s.live
    if live is None or live.presence is not Presence.RUNNING or live.commit != s.resolved_commit:
        return False
    return live.health is None or live.health.deploy_commit in (None, s.resolved_commit)
