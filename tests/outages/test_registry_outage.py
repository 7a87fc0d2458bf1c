"""Issue 12, point 1: a registry outage is never "no changes".

A registry that accepts connections and never answers (a stopped process) and one whose port is
closed: `plan --detailed-exitcode` exits 1 with `provider-unreachable` naming the registry, its
endpoint, the seconds spent and the timeout; `-out` writes no plan file; `check` and the one-step
`apply` exit 1 the same way; nothing on stderr but udeploy's own lines.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.outages.support import Endpoint, Run, assert_quiet, edit_config, udeploy
from tests.sample_repo import SampleRepo

pytestmark = pytest.mark.usefixtures("lab_up")


def assert_registry_down(run: Run, endpoint: Endpoint, read_timeout: float) -> None:
    assert run.returncode == 1, run.stdout + run.stderr
    error = run.error
    assert error["code"] == "provider-unreachable" and error["path"] == endpoint.address
    details = error["details"]
    assert details["component"] == "registry" and details["endpoint"] == endpoint.address
    assert details["timeoutSeconds"]["read"] == read_timeout
    assert 0 <= details["elapsedSeconds"] <= read_timeout + 5
    assert endpoint.address in error["message"] and "timeout" in error["message"]
    assert_quiet(run.stderr)


@pytest.mark.parametrize("outage", ["stalled", "closed"])
def test_registry_outage_is_an_error_and_never_no_changes(
        outage: str, request: pytest.FixtureRequest, sample: SampleRepo, tmp_path: Path) -> None:
    endpoint: Endpoint = request.getfixturevalue(outage)
    edit_config(sample, {"registry.address": endpoint.address})
    plan_file = tmp_path / "plan.json"
    run = udeploy(sample, tmp_path, "plan", "--env", "dev", "--detailed-exitcode", "-out", str(plan_file),
                  "--timeout", "registry=2")
    assert_registry_down(run, endpoint, 2.0)
    if outage == "stalled":
        assert "no answer within 2 s" in run.error["message"]
        assert run.seconds < 30, "one read timeout for the whole batch, not one per image"
    else:
        assert "refused" in run.error["message"].lower()
    assert not plan_file.exists()


def test_registry_outage_fails_check_and_one_step_apply(stalled: Endpoint, sample: SampleRepo,
                                                        tmp_path: Path) -> None:
    # the registry's own timeouts in config.json, no command-line override
    edit_config(sample, {"registry.address": stalled.address, "registry.timeouts": {"connect": 2, "read": 1.5}})
    assert_registry_down(udeploy(sample, tmp_path, "check", "--env", "dev"), stalled, 1.5)
    state = tmp_path / "state"
    applied = udeploy(sample, tmp_path, "apply", "--env", "dev", "--state-dir", str(state))
    assert_registry_down(applied, stalled, 1.5)
    jobs = state / "jobs"
    assert not jobs.exists() or not list(jobs.glob("*/job.json"))  # refused before a job began
