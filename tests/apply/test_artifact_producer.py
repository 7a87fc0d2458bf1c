"""The CI producer side (C1, C5, S1): publish from a pushed commit through `git archive`, with the
V1 labels, to `<registry>/unidesk/<id>:<commit>`; never touching a runtime target or deploy.json;
structured `infra-blocked` when the registry is missing."""

from __future__ import annotations

import json
import urllib.request

from tests.apply.conftest import Lab

REGISTRY = "http://127.0.0.1:5000"


def delete_tag(repository: str, tag: str) -> None:
    head = urllib.request.Request(f"{REGISTRY}/v2/{repository}/manifests/{tag}", method="HEAD", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    with urllib.request.urlopen(head) as r:
        digest = r.headers["Docker-Content-Digest"]
    urllib.request.urlopen(urllib.request.Request(f"{REGISTRY}/v2/{repository}/manifests/{digest}", method="DELETE"))


def test_C1_publish_builds_from_git_archive_with_v1_labels(lab: Lab) -> None:
    # a commit only this test has: a fresh artifact, built now
    commit = lab.sample.commit_change("src/components/microservices/todo-note/VERSION", f"{lab.project}\n",
                                      "todo-note: a new version")
    (lab.sample.clone / "src/components/microservices/todo-note/UNTRACKED").write_text("must not ship\n")
    snap = lab.engine_snapshot()
    origin_before = lab.sample.repo.git.ls_remote("origin", "refs/heads/master")
    dry = lab.cli("artifact", "publish", "--service", "todo-note", "--commit", commit[:7], "--dry-run")
    assert dry.exit_code == 0 and dry.json["status"] == "would-publish"
    r = lab.cli("artifact", "publish", "--service", "todo-note", "--commit", commit[:7])
    assert r.exit_code == 0, r.stdout
    doc = r.json
    assert doc["status"] == "published" and doc["commit"] == commit
    assert doc["image"] == f"127.0.0.1:5000/unidesk/todo-note:{commit}"
    labels = doc["evidence"]["labels"]
    assert labels["unidesk.ai/service-id"] == "todo-note" and labels["unidesk.ai/source-commit"] == commit
    assert labels["unidesk.ai/source-repo"] == "https://github.com/pikasTech/unidesk"
    assert labels["unidesk.ai/dockerfile"] == "src/components/microservices/todo-note/Dockerfile"
    assert doc["evidence"]["digest"] == doc["digest"]
    # S1: no runtime target touched, deploy.json not edited
    assert lab.engine_snapshot()["main-server"]["containers"] == snap["main-server"]["containers"]
    assert lab.sample.repo.git.ls_remote("origin", "refs/heads/master") == origin_before
    again = lab.cli("artifact", "publish", "--service", "todo-note", "--commit", commit)
    assert again.json["status"] == "already-published"


def test_C5_the_registry_is_a_cache_git_stays_the_truth(lab: Lab) -> None:
    commit = lab.sample.commit_change("src/components/microservices/pipeline/VERSION", f"{lab.project}\n",
                                      "pipeline: a new version")
    lab.publish("pipeline", commit)
    lab.sample.set_pin("prod", "pipeline", commit)
    delete_tag("unidesk/pipeline", commit)  # the cache loses the artifact
    r = lab.cli("plan", "--env", "prod", "--service", "pipeline")
    [item] = r.json["services"]
    assert item["action"] == "blocked" and item["blockedReason"] == "artifact-missing"
    assert item["resolvedCommit"] == commit  # the version still comes from git
    republished = lab.publish("pipeline", commit)  # and the cache is rebuilt from git alone
    assert republished["status"] == "published"
    [item] = lab.cli("plan", "--env", "prod", "--service", "pipeline").json["services"]
    assert item["action"] == "deploy"


def test_S1_missing_registry_is_infra_blocked_not_a_traceback(lab: Lab) -> None:
    config = json.loads((lab.sample.clone / "config.json").read_text())
    config["registry"]["address"] = "127.0.0.1:9"  # nothing listens there
    lab.sample.commit_change("config.json", json.dumps(config, indent=2), "registry moved away")
    for args in (["artifact", "status"], ["artifact", "publish", "--service", "findjob", "--commit",
                                          lab.sample.commits["frontend-v2"]],
                 ["artifact", "publish", "--service", "findjob", "--commit", lab.sample.commits["frontend-v2"],
                  "--dry-run"]):
        r = lab.cli(*args)
        assert r.exit_code == 1 and "Traceback" not in r.stdout + r.stderr
        assert r.json["status"] == "infra-blocked" and r.json["blocked"] == "registry"
    status = lab.cli("artifact", "status")
    assert "127.0.0.1:9" in status.json["reason"]
