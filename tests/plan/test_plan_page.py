"""issue 14, the plan page without a browser: what `graph --format html` shows (summary, legend,
registry steps without `@-`), and how `job show` finds the plan a job applied (the job's plan file,
a detached apply's spool, `--plan`), refusing a plan whose digest is not the job's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.sample_repo import SampleRepo
from udeploy.engine.apply.state import LocalState
from udeploy.engine.plan.planfile import read_plan, to_document


@pytest.fixture
def planned(shared_sample: tuple[SampleRepo, Cli], tmp_path: Path) -> tuple[Cli, Path]:
    _, cli = shared_sample
    path = tmp_path / "plan.json"
    assert cli("plan", "--env", "dev", "--no-refresh", "-out", str(path)).exit_code == 0
    return cli, path


def test_issue14_the_plan_page_shows_summary_legend_and_providers(planned: tuple[Cli, Path]) -> None:
    cli, path = planned
    r = cli("graph", str(path), "--format", "html")
    assert r.exit_code == 0
    doc = json.loads(path.read_text())
    assert "offline: live state not read (--no-refresh)" in r.stdout
    assert doc["manifest"]["commit"][:12] in r.stdout
    counts: dict[str, int] = {}
    for s in doc["services"]:
        counts[s["action"]] = counts.get(s["action"], 0) + 1
    for action, n in counts.items():
        assert f"<li class='chip p-{action}'>{n} {action}</li>" in r.stdout
    assert "<li class='chip p-deploy'>deploy</li>" in r.stdout  # the legend
    assert "registry@-" not in r.stdout and "\\nregistry" not in r.stdout
    dot = cli("graph", str(path)).stdout
    assert "registry@-" not in dot and '\\nregistry"' in dot


def _job(state: Path, plan_path: Path, plan_file: str | None) -> str:
    plan = read_plan(plan_path)
    job = LocalState(state).create_job(plan_digest=to_document(plan)["digest"], plan_file=plan_file,
                                       environment="dev", dry_run=False, nodes=[n.id for n in plan.nodes])
    job.node(plan.nodes[0].id, "succeeded")
    return job.id


def test_issue14_job_show_finds_the_plan_by_file_spool_or_option(planned: tuple[Cli, Path], tmp_path: Path) -> None:
    cli, path = planned
    state = tmp_path / "state"
    by_file = _job(state, path, str(path))
    r = cli("job", "show", by_file, "--state-dir", str(state))
    assert r.exit_code == 0 and r.json["plan"] == str(path) and r.json["jobId"] == by_file

    spooled = _job(state, path, None)  # a one-step detached apply: only the spool has the plan
    spool = state / "jobs" / f"{spooled}.plan.json"
    shutil.copy(path, spool)
    r = cli("job", "show", spooled, "--state-dir", str(state), "--format", "html")
    assert r.exit_code == 0 and f"udeploy job {spooled}" in r.stdout
    spool.unlink()

    r = cli("job", "show", spooled, "--state-dir", str(state))
    assert r.exit_code == 1 and r.json["error"]["code"] == "job-plan-not-found"
    assert "--plan" in r.json["error"]["message"]
    r = cli("job", "show", spooled, "--state-dir", str(state), "--plan", str(path))
    assert r.exit_code == 0 and r.json["plan"] == str(path)


def test_issue14_job_show_refuses_a_plan_that_is_not_the_jobs(planned: tuple[Cli, Path], tmp_path: Path) -> None:
    cli, path = planned
    state = tmp_path / "state"
    job_id = _job(state, path, str(path))
    other = tmp_path / "other.json"
    assert cli("plan", "--env", "prod", "--no-refresh", "-out", str(other)).exit_code == 0
    r = cli("job", "show", job_id, "--state-dir", str(state), "--plan", str(other))
    assert r.exit_code == 1 and r.json["error"]["code"] == "usage" and r.json["error"]["path"] == "--plan"
    path.write_bytes(other.read_bytes())  # the recorded plan file now holds another plan
    r = cli("job", "show", job_id, "--state-dir", str(state))
    assert r.exit_code == 1 and r.json["error"]["code"] == "job-plan-not-found"
    assert "another plan" in r.json["error"]["message"]
    r = cli("job", "show", job_id, "--state-dir", str(state), "--format", "pdf")
    assert r.exit_code == 1 and r.json["error"]["path"] == "--format"
