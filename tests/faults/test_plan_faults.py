"""Issue 12's fault suite, on the read-only commands: each lab component a dev plan reads, stopped
(SIGSTOP) and killed (SIGKILL) while the plan runs; the upstream registry under `artifact mirror`,
the one command that reads it.

The plan must exit 1 with `provider-unreachable` naming what did not answer, write no plan file
and say nothing on stderr but udeploy's own lines; `artifact mirror` exits 1 with P10's
`pending-network-verification` and mirrors nothing. Once the component is back, the same command
succeeds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.apply.conftest import Lab
from tests.apply.test_upstream_image import upstream_image  # noqa: F401 (fixture)
from tests.faults.injection import Fault, faulted
from tests.outages.support import assert_quiet, edit_config, udeploy
from tests.sample_repo import SampleRepo

TIMEOUTS = ("--timeout", "registry=3", "--timeout", "docker=3", "--timeout", "ssh=3", "--timeout", "kubernetes=3")
# component -> what the error's `path` names: the registry's endpoint or the host it serves
READ_BY_A_DEV_PLAN = {"registry": "127.0.0.1:5000", "sshd": "main-server", "main-docker": "main-server",
                      "d601-docker": "D601", "kubelab": "D601-k3s"}


@pytest.mark.usefixtures("lab_up")
@pytest.mark.parametrize("fault", list(Fault), ids=lambda f: f.value)
@pytest.mark.parametrize("component", sorted(READ_BY_A_DEV_PLAN))
def test_a_component_down_during_plan_is_an_error_and_the_plan_works_once_it_is_back(
        component: str, fault: Fault, sample: SampleRepo, tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    with faulted(component, fault):
        run = udeploy(sample, tmp_path, "plan", "--env", "dev", "--detailed-exitcode", "-out", str(plan_file),
                      *TIMEOUTS)
    assert run.returncode == 1, run.stdout + run.stderr
    error = run.error
    assert error["code"] == "provider-unreachable" and error["path"] == READ_BY_A_DEV_PLAN[component], error
    assert error["details"]["elapsedSeconds"] <= 3 * 3 + 5, "one timeout per read, not retried reads"
    if fault is Fault.STOP:
        assert "no answer within 3 s" in error["message"] or "no SSH banner within 3 s" in error["message"], error
    assert_quiet(run.stderr)
    assert not plan_file.exists()
    again = udeploy(sample, tmp_path, "plan", "--env", "dev", "--detailed-exitcode", "-out", str(plan_file), *TIMEOUTS)
    assert again.returncode == 2, again.stdout + again.stderr
    assert plan_file.exists()


@pytest.mark.parametrize("fault", list(Fault), ids=lambda f: f.value)
def test_P10_the_upstream_registry_down_during_mirror_is_an_error_and_mirror_works_once_it_is_back(
        fault: Fault, lab: Lab, tmp_path: Path, upstream_image: tuple[str, str, str]) -> None:  # noqa: F811
    _, digest, _ = upstream_image
    edit_config(lab.sample, {"registry.timeouts": {"connect": 2, "read": 3}})
    with faulted("upstream-registry", fault):
        run = udeploy(lab.sample, tmp_path, "artifact", "mirror", "--artifact", "filebrowser-upstream")
    assert run.returncode == 1, run.stdout + run.stderr
    refused = json.loads(run.stdout)  # P10's own answer for an upstream it cannot read: nothing is mirrored
    assert refused["status"] == "pending-network-verification" and "127.0.0.1:5001" in refused["reason"], refused
    assert run.seconds < 30
    assert_quiet(run.stderr)
    again = udeploy(lab.sample, tmp_path, "artifact", "mirror", "--artifact", "filebrowser-upstream")
    done = json.loads(again.stdout)  # read upstream this time: the next thing it asks for is a pin
    assert done["status"] == "digest-pin-required" and done["observedDigest"] == digest
