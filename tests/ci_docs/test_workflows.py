"""docs/ci (issue 14): the GitHub Actions workflows parse, have the jobs and steps the README
describes, post the comment with `gh` under udeploy's own marker, and apply the artifact the plan
workflow uploads. Each `run:` script passes `bash -n`. Running them needs GitHub and the runner."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import attrs
import pytest
import yaml

from tests.plan.test_markdown import plan_of
from udeploy.engine.plan.pr_comment import marker
from udeploy.engine.plan.records import EnvironmentRecord

CI = Path(__file__).resolve().parents[2] / "docs" / "ci"


def workflow(name: str) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((CI / name).read_text())
    # YAML 1.1 reads the key `on` as True
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def step(job: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [s for s in job["steps"] if s.get("name") == name]
    return found


def test_plan_workflow_plans_uploads_and_comments_with_gh_under_the_marker() -> None:
    doc = workflow("udeploy-plan.yml")
    assert "pull_request" in doc["on"]
    job = doc["jobs"]["plan"]
    assert "github.event.pull_request.head.repo.full_name == github.repository" in job["if"]  # no fork code
    plan = step(job, "udeploy plan")["run"]
    assert re.search(r"udeploy plan --env \"\$env\" .*-out \"plans/\$env/plan.json\"", plan)
    assert 'udeploy show "plans/$env/plan.json" --format markdown' in plan
    upload = step(job, "Upload the plan files")
    assert upload["uses"].startswith("actions/upload-artifact@") and upload["with"]["name"] == "udeploy-plans"
    comment = step(job, "Post or update the plan comment (gh)")["run"]
    assert "gh api --paginate" in comment and "gh pr comment" in comment and "gh api -X PATCH" in comment
    assert "curl" not in comment and "requests" not in comment  # GitHub's own CLI, not a hand-written client
    template = re.search(r'marker="([^"]+)"', comment)
    assert template is not None
    dev = attrs.evolve(plan_of(1), environment=EnvironmentRecord("dev", "unidesk-dev", None, None))
    assert template[1].replace("$env", "dev") == marker(dev)  # the marker the renderer writes


def test_apply_workflow_applies_exactly_the_merged_prs_plan_artifact() -> None:
    doc = workflow("udeploy-apply.yml")
    assert doc["on"]["push"]["branches"] == ["main"]
    job = doc["jobs"]["apply"]
    assert job["strategy"]["matrix"]["env"] == ["dev", "prod"] and job["strategy"]["max-parallel"] == 1
    assert "UDEPLOY_STATE_URL" in job["env"]
    find = step(job, "Find the merged pull request's plan")["run"]
    assert "gh run list --workflow udeploy-plan.yml" in find and '--commit "$head"' in find
    download = step(job, "Download exactly that plan")["run"]
    assert "gh run download" in download and "--name udeploy-plans" in download
    apply = step(job, "udeploy apply")["run"]
    assert 'udeploy apply "${{ steps.plan.outputs.file }}"' in apply and "udeploy plan" not in apply


@pytest.mark.parametrize("name", ["udeploy-plan.yml", "udeploy-apply.yml"])
def test_every_run_script_is_valid_bash(name: str) -> None:
    for job in workflow(name)["jobs"].values():
        for s in job["steps"]:
            if "run" in s:
                script = re.sub(r"\$\{\{[^}]*\}\}", "X", s["run"])  # GitHub's expressions, filled in
                done = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
                assert done.returncode == 0, (s["name"], done.stderr)
