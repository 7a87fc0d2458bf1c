"""Golden plans of the sample monorepo, made offline (O4): the whole plan document as data
(O2, O3, P1, P2, P6, P8, P11, K2), compared with tests/cases/plan/*/expected-plan.json; each also
passes the plan schema."""

from __future__ import annotations

import pytest

from tests.conftest import Cli
from tests.plan.golden import assert_golden, normalize
from tests.sample_repo import SampleRepo
from udeploy.engine.load.jsonschema_check import check


@pytest.mark.parametrize("env", ["dev", "prod"])
def test_O4_offline_plan_matches_golden(sample: SampleRepo, cli: Cli, env: str) -> None:
    r = cli("plan", "--env", env, "--no-refresh")
    assert r.exit_code == 0, r.stdout
    check(r.json, "plan", "plan")  # udeploy checks the schema when it reads a plan, not when it writes one
    assert_golden(f"plan/offline-{env}", normalize(r.json, sample))
