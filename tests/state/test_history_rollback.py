"""History and rollback on the job records (issue 13): deploy A, deploy B, `history` lists B then A
verified; `rollback` makes a reviewed branch whose plan deploys exactly A for that service, and
applying it converges to A. Policy still holds (P2, P6, P3), `--to` must be in the history, an
unreachable registry is an outage, and with a state URL the history reads from another runner.

Real lab: the sample repository as real git (bare origin), artifacts published to the lab
registry, `findjob` deployed on the D601 Compose engine, PostgreSQL for the shared backend.
"""

from __future__ import annotations

import getpass
import json
import socket
from pathlib import Path
from typing import Any

import pytest

from tests.apply.conftest import Lab
from tests.state.conftest import Machine
from udeploy.engine.apply.jobs import Job
from udeploy.engine.history.pin_text import replace_string

SERVICE = "findjob"  # a dev reviewed artifact consumer on D601's Compose engine: quick to deploy


def deploy(lab: Lab, commit: str, *extra: str) -> dict[str, Any]:
    """Pin `findjob` in dev to `commit` on origin/master and apply it; returns the job result."""
    lab.sample.set_pin("dev", SERVICE, commit)
    r = lab.cli("apply", "--env", "dev", "--service", SERVICE, *extra)
    assert r.exit_code == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result: dict[str, Any] = r.json
    assert [(s["id"], s["commit"], s["verified"]) for s in result["services"]] == [(SERVICE, commit, True)]
    return result


def a_and_b(lab: Lab) -> tuple[str, str]:
    a, b = lab.sample.commits["backend-core-v2"], lab.sample.commits["frontend-v2"]
    lab.publish(SERVICE, a)
    lab.publish(SERVICE, b)
    return a, b


def git(lab: Lab, *args: str) -> str:
    return str(lab.sample.repo.git.execute(["git", "-C", str(lab.sample.clone), *args]))


def test_history_lists_B_then_A_and_rollback_branch_plans_exactly_A_then_apply_converges(
        lab: Lab, tmp_path: Path) -> None:
    a, b = a_and_b(lab)
    job_a = deploy(lab, a)["jobId"]
    job_b = deploy(lab, b)["jobId"]

    doc = lab.cli("history", "--env", "dev", "--service", SERVICE).json
    rows = doc["deployments"]
    assert [(r["commit"], r["jobId"], r["verified"]) for r in rows] == [(b, job_b, True), (a, job_a, True)]
    assert rows[0]["who"] == f"{getpass.getuser()}@{socket.gethostname()}"
    assert rows[0]["planDigest"].startswith("sha256:") and rows[0]["when"] >= rows[1]["when"]
    everything = lab.cli("history", "--env", "dev").json["deployments"]
    assert {r["service"] for r in everything} == {SERVICE}

    master_before = git(lab, "rev-parse", "origin/master")
    r = lab.cli("rollback", "--env", "dev", "--service", SERVICE, "--push")
    assert r.exit_code == 0, r.stdout + r.stderr
    out = r.json
    branch = f"udeploy/rollback-{SERVICE}-{a[:7]}"
    assert out["branch"] == branch and out["to"]["commit"] == a and out["from"]["commit"] == b
    assert out["to"]["jobId"] == job_a and out["pushed"] is True
    assert out["plan"] == (f"udeploy plan --env dev --ref origin/{branch} --service {SERVICE} "
                           f"-out rollback-{SERVICE}.plan.json")
    # never applied, never moved master or the operator's own branch and tree
    assert git(lab, "rev-parse", "origin/master") == master_before
    assert git(lab, "status", "--porcelain") == "" and git(lab, "rev-parse", "--abbrev-ref", "HEAD") == "master"
    # the branch changes exactly one line of deploy.json: the commit string
    assert git(lab, "ls-remote", "origin", f"refs/heads/{branch}").split()[0] == out["commit"]
    diff = git(lab, "diff", "--unified=0", master_before, out["commit"])
    changed = [line for line in diff.splitlines() if line[:1] in "+-" and line[:3] not in ("+++", "---")]
    assert changed == [f'-          "commitId": "{b}"', f'+          "commitId": "{a}"']

    # the branch's plan: only findjob's commit differs from master's, and findjob deploys A
    def resolved(ref: str) -> dict[str, str]:
        p = lab.cli("plan", "--env", "dev", "--ref", ref, "--no-refresh")
        assert p.exit_code == 0, p.stdout + p.stderr
        return {s["id"]: s["resolvedCommit"] for s in p.json["services"]}

    on_master, on_branch = resolved("origin/master"), resolved(f"origin/{branch}")
    assert {s for s in on_master if on_master[s] != on_branch[s]} == {SERVICE} and on_branch[SERVICE] == a
    plan_file = tmp_path / "rollback.plan.json"
    p = lab.cli(*out["plan"].split()[1:-1], str(plan_file))
    assert p.exit_code == 0, p.stdout + p.stderr
    item = next(s for s in p.json["services"] if s["id"] == SERVICE)
    assert (item["action"], item["resolvedCommit"]) == ("deploy", a)

    applied = lab.cli("apply", str(plan_file))
    assert applied.exit_code == 0, applied.stdout[-3000:] + applied.stderr[-3000:]
    assert [(s["id"], s["commit"], s["verified"]) for s in applied.json["services"]] == [(SERVICE, a, True)]
    check = lab.cli("check", "--env", "dev", "--ref", f"origin/{branch}", "--service", SERVICE)
    assert check.exit_code == 0, check.stdout
    latest = lab.cli("history", "--env", "dev", "--service", SERVICE).json["deployments"]
    assert [r["commit"] for r in latest] == [a, b, a]

    # the same rollback again: its branch exists, and is never overwritten
    again = lab.cli("rollback", "--env", "dev", "--service", SERVICE)
    assert again.exit_code == 1 and again.json["error"]["code"] == "git-error"
    assert "already exists" in again.json["error"]["message"]


def test_rollback_to_a_commit_not_in_the_history_is_an_error_naming_the_verified_ones(lab: Lab) -> None:
    a, b = a_and_b(lab)
    deploy(lab, a)
    deploy(lab, b)
    other = lab.sample.commits["initial"]
    r = lab.cli("rollback", "--env", "dev", "--service", SERVICE, "--to", other[:10])
    assert r.exit_code == 1, r.stdout
    error = r.json["error"]
    assert error["code"] == "rollback-target-not-found" and error["path"] == "--to"
    assert a[:12] in error["message"] and b[:12] in error["message"]
    assert error["details"]["verifiedCommits"] == [b, a]
    same = lab.cli("rollback", "--env", "dev", "--service", SERVICE, "--to", b)
    assert same.exit_code == 1 and "already pins" in same.json["error"]["message"]
    bad = lab.cli("rollback", "--env", "dev", "--service", SERVICE, "--to", "HEAD~1")
    assert bad.exit_code == 1 and bad.json["error"]["code"] == "usage"
    # --to with a prefix of a verified commit works
    ok = lab.cli("rollback", "--env", "dev", "--service", SERVICE, "--to", a[:9])
    assert ok.exit_code == 0, ok.stdout + ok.stderr
    assert ok.json["to"]["commit"] == a and ok.json["pushed"] is False
    assert "push the branch first" in ok.json["next"]


def test_rollback_with_no_earlier_verified_commit_is_an_error(lab: Lab) -> None:
    a, _ = a_and_b(lab)
    deploy(lab, a)
    r = lab.cli("rollback", "--env", "dev", "--service", SERVICE)
    assert r.exit_code == 1 and r.json["error"]["code"] == "rollback-target-not-found", r.stdout
    assert "nothing to roll back to" in r.json["error"]["message"]


@pytest.mark.req("P6")
@pytest.mark.req("P2")
@pytest.mark.parametrize(("service", "rule"), [("met-nonlinear", "P6"), ("k3sctl-adapter", "P2")])
def test_P6_P2_rollback_of_a_service_policy_stops_is_refused_with_its_rule(lab: Lab, service: str,
                                                                           rule: str) -> None:
    r = lab.cli("rollback", "--env", "dev", "--service", service)
    assert r.exit_code == 3, r.stdout
    assert r.json["error"]["code"] == "policy-refused" and r.json["error"]["rule"] == rule
    assert git(lab, "branch", "--list", "udeploy/*") == ""


def record_job(state_dir: Path, service: str, commit: str) -> str:
    """A finished job record as apply leaves it, for a commit whose artifact was never published."""
    job = Job.create(state_dir, plan_digest="sha256:" + "0" * 64, plan_file=None, environment="dev",
                     dry_run=False, nodes=[f"{service}/verify-live"])
    job.finish("succeeded", {"jobId": job.id, "state": "succeeded", "services": [
        {"id": service, "commit": commit, "verified": True, "outcome": "deployed"}]})
    return job.id


@pytest.mark.req("P3")
def test_P3_rollback_to_a_commit_without_a_published_artifact_is_refused(lab: Lab) -> None:
    a, b = a_and_b(lab)
    deploy(lab, b)
    unpublished = lab.sample.commits["initial"]
    record_job(lab.state_dir, SERVICE, unpublished)
    r = lab.cli("rollback", "--env", "dev", "--service", SERVICE, "--to", unpublished)
    assert r.exit_code == 3, r.stdout
    assert r.json["error"]["rule"] == "P3" and "does not exist" in r.json["error"]["message"]
    assert git(lab, "branch", "--list", "udeploy/*") == ""


def test_rollback_with_the_registry_unreachable_is_provider_unreachable(lab: Lab) -> None:
    a, b = a_and_b(lab)
    deploy(lab, a)
    deploy(lab, b)
    config = json.loads((lab.sample.clone / "config.json").read_text())
    config["registry"]["address"] = "127.0.0.1:9"  # the discard port: nothing answers
    lab.sample.commit_change("config.json", json.dumps(config, indent=2), "registry moves to a dead port")
    r = lab.cli("rollback", "--env", "dev", "--service", SERVICE)
    assert r.exit_code == 1, r.stdout
    assert r.json["error"]["code"] == "provider-unreachable", r.stdout


def test_history_from_a_second_runner_with_the_postgresql_backend(machines: tuple[Machine, Machine]) -> None:
    first, second = machines
    lab = first.lab
    a, b = a_and_b(lab)
    lab.sample.set_pin("dev", SERVICE, a)
    assert first.cli("apply", "--env", "dev", "--service", SERVICE).exit_code == 0
    lab.sample.set_pin("dev", SERVICE, b)
    assert first.cli("apply", "--env", "dev", "--service", SERVICE).exit_code == 0
    doc = second.cli("history", "--env", "dev", "--service", SERVICE).json
    assert [(r["commit"], r["verified"]) for r in doc["deployments"]] == [(b, True), (a, True)]
    assert doc["stateBackend"].startswith("postgresql://")
    assert not (second.state_dir / "jobs").exists()  # read from the database, not a directory
    r = second.cli("rollback", "--env", "dev", "--service", SERVICE)
    assert r.exit_code == 0, r.stdout + r.stderr
    assert r.json["to"]["commit"] == a


def test_pin_edit_keeps_every_other_byte() -> None:
    text = '{\n  "schemaVersion": 2,\n  "environments": {"dev": {"services": [\n    {"id": "x",  "repo": "r",' \
           ' "commitId": "abc"}, {"id": "y", "commitId": "\\u0041bc"}\n  ]}}\n}\n'
    changed = replace_string(text, ("environments", "dev", "services", 1, "commitId"), "f" * 40)
    assert changed == text.replace('"\\u0041bc"', '"' + "f" * 40 + '"')
