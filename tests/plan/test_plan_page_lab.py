"""issue 14, the job page of a real apply: a saved plan applied on the lab (real registry, Docker
engines over SSH) with the job recorded in the lab's PostgreSQL, then `udeploy job show JOB --format
html --state-url ...` opened in headless Chromium: every step painted with its state in the job
record, no console error. The lab is shared, so the apply may fail a step (a neighbour's work on the
same engine): the page must show the job as it went, whichever way."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.apply.conftest import Lab, lab  # noqa: F401  (the fixture, reused)
from tests.plan.headless_chromium import chromium, chromium_path, colours, open_page
from tests.state.conftest import Machine, lab_postgres, state_env, state_url  # noqa: F401  (fixtures)
from udeploy.engine.apply.job_page import STATE_SHOWN
from udeploy.engine.plan.page import JOB_STATES, LEGEND_LABEL
from udeploy.engine.plan.render import FILL

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed (scripts/lab up)")


def test_issue14_the_job_page_of_a_real_apply_on_postgres(lab: Lab, state_url: str,  # noqa: F811
                                                          tmp_path: Path) -> None:
    runner = Machine(lab, tmp_path / "runner", state_url)
    lab.publish("findjob", lab.sample.commits["frontend-v2"])
    plan = tmp_path / "plan.json"
    r = runner.cli("plan", "--env", "prod", "--service", "findjob", "-out", str(plan))
    assert r.exit_code == 0, r.stdout + r.stderr
    applied = runner.cli("apply", str(plan))
    assert applied.exit_code in (0, 1) and "jobId" in applied.json, applied.stdout
    job_id = applied.json["jobId"]
    recorded = runner.cli("job", "status", job_id).json["nodes"]

    shown = runner.cli("job", "show", job_id)
    assert shown.exit_code == 0, shown.stdout
    nodes = shown.json["nodes"]
    assert nodes == {n: STATE_SHOWN[r["state"]] for n, r in recorded.items()}
    if applied.exit_code == 0:
        assert set(nodes.values()) == {"succeeded"}
    page = runner.cli("job", "show", job_id, "--format", "html")
    assert page.exit_code == 0, page.stdout
    path = tmp_path / "job.html"
    path.write_text(page.stdout)
    with chromium() as browser:
        open_page(browser, path)
        assert browser.console_errors() == []
        assert browser.requests() == [path.resolve().as_uri()]
        steps = browser.evaluate("[...document.querySelectorAll('#dag g.node text:first-of-type')]"
                                 ".map(t => t.textContent)")
        assert sorted(steps) == sorted(nodes)
        legend = browser.evaluate("[...document.querySelectorAll('.legend li')].map(li => li.textContent)")
        present = [s for s in JOB_STATES if s in nodes.values()]
        assert legend == [LEGEND_LABEL.get(s, s) for s in present]
        painted = colours(browser.screenshot())
        for state in present:
            fill = FILL[state]
            assert (int(fill[1:3], 16), int(fill[3:5], 16), int(fill[5:7], 16)) in painted, state
