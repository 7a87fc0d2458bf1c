"""Runtime health checks `udeploy check` adds for k3s targets (E3, E5).

E3: every k3s host a selected service runs on holds a genuine sandbox image. E5: a service whose
environment declares `diagnostics` (Code Queue) is diagnosed with its dependencies, not only its
own health. Each result is a plain dict with `ok` and a specific reason.
"""

from __future__ import annotations

from typing import Any

from udeploy.engine.load.desired import DesiredState
from udeploy.engine.plan.observe import ProviderPool


def run_checks(state: DesiredState, pool: ProviderPool) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    k3s_hosts = sorted({d.environment.target.host for d in state.services
                        if d.environment and d.environment.target and d.environment.target.k3s})
    for host in k3s_hosts:
        result = pool.checks(host).pause_image_check()
        results.append({"check": "E3", "host": host, **result})
    for d in state.services:
        diag = d.environment.diagnostics if d.environment else None
        target = d.environment.target if d.environment else None
        if not diag or target is None or target.k3s is None:
            continue
        result = pool.checks(target.host).code_queue_diagnostics(
            target.k3s.namespace, list(diag["dependencies"]), str(diag["schedulerService"]),
            diag.get("schedulerPort"), d.microservice.health_path)
        results.append({"check": "E5", "service": d.id, "ok": result.get("status") == "ok", **result})
    return results
