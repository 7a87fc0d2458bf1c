"""Issue 12's fault suite, during apply: each lab component an apply step uses, stopped (SIGSTOP)
or killed (SIGKILL) between two steps or inside one.

Each case checks what a user gets: exit 1 and a failed job whose one failed node names the
component; no traceback or library logging on stderr; nothing changed past the failing node (its
dependents are skipped, the other service was never recreated); the job record says which node
failed and why; and once the component is back, running the apply again converges (a plan of
the same services then has nothing to do). The one-step `apply --env` is the re-run: the saved
plan itself is refused as stale whenever the failed step had already changed its service (K1).
"""

from __future__ import annotations

import json
from pathlib import Path

import attrs
import pytest

from tests.apply.conftest import Lab
from tests.faults.injection import Fault, Injection
from tests.faults.walk import Trigger, apply_with_fault, job_status
from tests.outages.support import assert_quiet

# Short timeouts so a stalled component fails its step in seconds (the defaults are in docs/reliability.md).
TIMEOUTS = ["--timeout", "registry=3", "--timeout", "docker=5", "--timeout", "ssh=3", "--timeout", "kubernetes=3",
            "--timeout", "containerd=3"]


@attrs.frozen
class Scenario:
    env: str
    services: tuple[str, ...]

    def args(self) -> list[str]:
        return ["--env", self.env, *(a for s in self.services for a in ("--service", s))]


# backend-core then frontend on main-server over SSH (frontend's steps wait for backend-core's);
# findjob on D601's engine; mdtodo on native k3s (containerd import, then the Kubernetes API).
MAIN = Scenario("prod", ("backend-core", "frontend"))
D601 = Scenario("prod", ("findjob",))
K3S = Scenario("dev", ("mdtodo",))


@attrs.frozen
class Case:
    component: str
    fault: Fault
    scenario: Scenario
    trigger: Trigger
    names: str  # what the failed node's error must name

    @property
    def id(self) -> str:
        where = "inside" if self.trigger.state == "running" else "after"
        return f"{self.component}-{self.fault.value}-{where}-{self.trigger.node.replace('/', '-')}"


CASES = [
    Case("sshd", Fault.STOP, MAIN, Trigger("backend-core/recreate", "running"), "main-server"),
    Case("sshd", Fault.KILL, MAIN, Trigger("backend-core/stamp", "succeeded"), "main-server"),
    Case("main-docker", Fault.STOP, MAIN, Trigger("backend-core/recreate", "running"), "main-server"),
    Case("main-docker", Fault.KILL, MAIN, Trigger("backend-core/verify-artifact", "succeeded"), "main-server"),
    Case("registry", Fault.STOP, MAIN, Trigger("backend-core/verify-artifact", "succeeded"), "127.0.0.1:5000"),
    Case("registry", Fault.KILL, MAIN, Trigger("backend-core/verify-artifact", "succeeded"), "127.0.0.1:5000"),
    Case("d601-docker", Fault.STOP, D601, Trigger("findjob/recreate", "running"), "D601"),
    Case("d601-docker", Fault.KILL, D601, Trigger("findjob/verify-artifact", "succeeded"), "D601"),
    Case("kubelab", Fault.STOP, K3S, Trigger("mdtodo/rollout", "running"), "Kubernetes API of D601-k3s"),
    Case("kubelab", Fault.KILL, K3S, Trigger("mdtodo/import-image", "succeeded"), "Kubernetes API of D601-k3s"),
    Case("k3s-containerd", Fault.STOP, K3S, Trigger("mdtodo/verify-artifact", "succeeded"), "containerd of D601-k3s"),
    Case("k3s-containerd", Fault.KILL, K3S, Trigger("mdtodo/verify-artifact", "succeeded"), "containerd of D601-k3s"),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_a_component_fails_mid_apply_and_the_rerun_converges(case: Case, lab: Lab, tmp_path: Path,
                                                             request: pytest.FixtureRequest) -> None:
    if case.scenario is K3S:
        request.getfixturevalue("empty_dev_namespace")  # k3s cases start from an empty `unidesk-dev`
    for service in case.scenario.services:
        lab.publish(service, lab.sample.commits["frontend-v2"])
    plan = tmp_path / "plan.json"
    planned = lab.cli("plan", *case.scenario.args(), "-out", str(plan))
    assert planned.exit_code == 0, planned.stdout + planned.stderr
    injection = Injection.prepare(case.component, case.fault)

    run = apply_with_fault(lab.sample.clone, lab.cli.env, [str(plan), "--parallelism", "1", *TIMEOUTS,
                                                           *lab.apply_args()], injection, case.trigger)

    assert f"{case.trigger.node}: {case.trigger.state}" in run.stderr, "the walk never reached the trigger"
    assert run.returncode == 1, run.stdout + run.stderr
    assert_quiet(run.stderr)
    result = json.loads(run.stdout)
    assert result["state"] == "failed"
    [failed] = result["failed"]
    service = failed["node"].split("/")[0]
    assert service in case.scenario.services and case.names in failed["error"], failed
    # nothing past the failing node: its service's later steps and everything after them are skipped
    nodes = result["nodes"]
    later = [n for n in list(nodes)[list(nodes).index(failed["node"]) + 1:] if n.startswith(service + "/")]
    assert all(nodes[n] == "skipped" for n in later), nodes
    if case.scenario is MAIN and service == "backend-core":  # frontend waits for it: only its read ran
        assert {n for n in nodes if n.startswith("frontend/") and nodes[n] != "skipped"} <= {"frontend/verify-artifact"}
        assert "frontend" not in lab.containers("main-server")
    # the job record says the same
    status = job_status(lab.sample.clone, lab.cli.env, result["jobId"], lab.apply_args())
    assert status["state"] == "failed"
    assert status["nodes"][failed["node"]]["state"] == "failed"
    assert status["nodes"][failed["node"]]["message"] == failed["error"]
    assert not [n for n, s in status["nodes"].items() if s["state"] == "running"]
    assert f"failed {failed['node']}: " in status["logTail"]

    rerun = lab.cli("apply", *case.scenario.args(), *lab.apply_args())
    assert rerun.exit_code == 0, rerun.stdout + rerun.stderr
    assert all(s["verified"] for s in rerun.json["services"])
    after = lab.cli("plan", *case.scenario.args(), "--detailed-exitcode")
    assert after.exit_code == 0, after.stdout
