"""Environment and local mode on real git (bare origin + clone): M3-M9, P3, P4, O4.

Each test works on its own materialized sample monorepo (`tests.sample_repo`), so the remote,
the commits and the short-SHA collisions are real.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.sample_repo import SampleRepo


def services_by_id(doc: dict) -> dict[str, dict]:
    return {s["id"]: s for s in doc["services"]}


def test_M7_M8_env_mode_reads_origin_master_and_reports_ref_commit_blob(sample: SampleRepo, cli: Cli) -> None:
    r = cli("plan", "--env", "dev", "--no-refresh")
    assert r.exit_code == 0, r.stdout
    doc = r.json
    manifest = doc["manifest"]
    assert manifest["mode"] == "env" and manifest["ref"] == "origin/master"
    assert manifest["remote"] == "https://github.com/pikasTech/unidesk"
    assert manifest["commit"] == sample.commits["deploy"]
    blob = sample.repo.git.rev_parse(f"{sample.commits['deploy']}:deploy.json")
    assert manifest["deployBlob"] == blob
    env = doc["environment"]
    assert env["namespace"] == "unidesk-dev" and env["providerId"] == "D601-dev"
    assert env["databaseFingerprint"].startswith("sha256:")
    assert "manifest ref" not in r.stderr  # progress text goes to stderr, the JSON alone to stdout


def test_M7_dirty_and_committed_but_unpushed_deploy_json_have_no_effect(sample: SampleRepo, cli: Cli) -> None:
    before = services_by_id(cli("plan", "--env", "dev", "--no-refresh").json)
    deploy = sample.clone / "deploy.json"
    doc = json.loads(deploy.read_text())
    doc["environments"]["dev"]["services"][0]["commitId"] = sample.commits["initial"]
    doc["environments"]["dev"]["services"][0]["ports"] = [1]  # would be refused if it were read
    deploy.write_text(json.dumps(doc))
    dirty = cli("plan", "--env", "dev", "--no-refresh")
    assert dirty.exit_code == 0, dirty.stdout
    assert services_by_id(dirty.json)["backend-core"]["resolvedCommit"] == before["backend-core"]["resolvedCommit"]
    sample.repo.git.commit("-am", "local only, never pushed")
    unpushed = cli("plan", "--env", "dev", "--no-refresh")
    assert unpushed.json["manifest"]["commit"] == sample.commits["deploy"]


def test_M7_a_pushed_pin_is_read_after_a_fetch(sample: SampleRepo, cli: Cli) -> None:
    cli("plan", "--env", "dev", "--no-refresh")  # warm the mirror
    sample.set_pin("dev", "backend-core", sample.commits["initial"])
    doc = cli("plan", "--env", "dev", "--no-refresh").json
    assert services_by_id(doc)["backend-core"]["resolvedCommit"] == sample.commits["initial"]
    assert doc["manifest"]["commit"] == sample.head()


def test_M8_ref_is_never_inferred_from_the_local_branch(sample: SampleRepo, cli: Cli) -> None:
    master_pin = sample.commits["frontend-v2"]
    sample.repo.git.checkout("-b", "release/v1")
    doc = sample.deploy_json()
    next(s for s in doc["environments"]["prod"]["services"] if s["id"] == "frontend")["commitId"] = \
        sample.commits["initial"]
    (sample.clone / "deploy.json").write_text(json.dumps(doc, indent=2))
    sample.repo.git.commit("-am", "release/v1: another frontend pin")
    sample.repo.git.push("origin", "release/v1")
    on_branch = cli("plan", "--env", "prod", "--no-refresh")  # checked out on release/v1, pushed too
    assert on_branch.json["manifest"]["ref"] == "origin/master"
    assert services_by_id(on_branch.json)["frontend"]["resolvedCommit"] == master_pin
    named = cli("plan", "--env", "prod", "--no-refresh", "--ref", "origin/release/v1")  # only when asked
    assert named.json["manifest"]["ref"] == "origin/release/v1"
    assert services_by_id(named.json)["frontend"]["resolvedCommit"] == sample.commits["initial"]


@pytest.mark.parametrize("env", ["dev-v1", "staging"])
def test_M8_unknown_environment_is_refused(cli: Cli, env: str) -> None:
    r = cli("plan", "--env", env, "--no-refresh")
    assert r.exit_code == 1
    assert r.json["error"]["code"] == "unknown-environment"


def test_M5_short_sha_resolves_to_the_full_sha(sample: SampleRepo, cli: Cli) -> None:
    doc = cli("plan", "--env", "dev", "--no-refresh").json
    backend = services_by_id(doc)["backend-core"]
    assert len(backend["requestedCommit"]) == 7
    assert backend["resolvedCommit"] == sample.commits["frontend-v2"]
    prod = services_by_id(cli("plan", "--env", "prod", "--no-refresh").json)["backend-core"]
    assert prod["requestedCommit"] == prod["resolvedCommit"] == sample.commits["frontend-v2"]


def test_M5_ambiguous_short_sha_is_refused_naming_both_candidates(colliding_sample: SampleRepo,
                                                                 colliding_cli: Cli) -> None:
    prefix = colliding_sample.collision_prefix
    assert prefix is not None
    colliding_sample.set_pin("dev", "backend-core", prefix)
    r = colliding_cli("plan", "--env", "dev", "--no-refresh")
    assert r.exit_code == 1
    err = r.json["error"]
    assert err["code"] == "commit-ambiguous"
    assert sorted(err["details"]["candidates"]) == sorted(
        [colliding_sample.commits["collision-a"], colliding_sample.commits["collision-b"]])
    assert err["path"].endswith("services[0].commitId")


def test_M5_sha_absent_from_the_remote_is_refused(sample: SampleRepo, cli: Cli) -> None:
    sample.set_pin("dev", "frontend", "deadbee")
    r = cli("plan", "--env", "dev", "--no-refresh")
    assert r.exit_code == 1
    assert r.json["error"]["code"] == "commit-not-found"
    assert "deadbee" in r.json["error"]["message"]
    sample.set_pin("dev", "frontend", "d" * 40)
    assert cli("plan", "--env", "dev", "--no-refresh").json["error"]["code"] == "commit-not-found"


def test_M3_service_missing_from_config_json_is_an_error(sample: SampleRepo, cli: Cli) -> None:
    doc = sample.deploy_json()
    doc["environments"]["dev"]["services"].append(
        {"id": "ghost", "repo": "https://github.com/pikasTech/unidesk", "commitId": sample.commits["initial"]})
    sample.commit_change("deploy.json", json.dumps(doc, indent=2), "add ghost")
    r = cli("plan", "--env", "dev", "--no-refresh")
    assert r.exit_code == 1
    assert r.json["error"]["code"] == "catalog-entry-missing"
    assert "ghost" in r.json["error"]["message"]


def test_M3_k3s_objects_named_by_config_must_exist_in_the_manifest(sample: SampleRepo, cli: Cli) -> None:
    config = json.loads((sample.clone / "config.json").read_text())
    backend = next(m for m in config["microservices"] if m["id"] == "backend-core")
    backend["environments"]["dev"]["target"]["k3s"]["objects"].append("Deployment/not-there")
    sample.commit_change("config.json", json.dumps(config, indent=2), "name a missing object")
    r = cli("plan", "--env", "dev", "--no-refresh")
    assert r.exit_code == 1
    assert "Deployment/not-there" in r.json["error"]["message"]


def test_M4_P9_services_without_a_dockerfile_are_unsupported_not_skipped(sample: SampleRepo, cli: Cli) -> None:
    config = json.loads((sample.clone / "config.json").read_text())
    for m in config["microservices"]:
        if m["id"] == "todo-note":
            del m["repository"]["dockerfile"]
        if m["id"] == "pipeline":
            del m["repository"]["dockerfile"]
            m["repository"]["image"] = "docker.io/vendor/pipeline:1.2"
    sample.commit_change("config.json", json.dumps(config, indent=2), "drop two Dockerfiles")
    doc = services_by_id(cli("plan", "--env", "dev", "--no-refresh").json)
    assert doc["todo-note"]["action"] == "unsupported"
    assert "M4" in doc["todo-note"]["reason"]
    assert doc["pipeline"]["action"] == "unsupported"
    assert "P9" in doc["pipeline"]["reason"]
    for sid in ("todo-note", "pipeline"):
        assert doc[sid]["deploymentPath"] == "unsupported"
        assert doc[sid]["artifactConsumer"]["consumerKind"] == "unsupported"


def test_M9_catalog_commit_is_not_the_version_authority(sample: SampleRepo, cli: Cli) -> None:
    config = json.loads((sample.clone / "config.json").read_text())
    for m in config["microservices"]:
        m["repository"]["commitId"] = sample.commits["initial"]
    sample.commit_change("config.json", json.dumps(config, indent=2), "catalog commit ids")
    doc = services_by_id(cli("plan", "--env", "dev", "--no-refresh").json)
    assert doc["backend-core"]["resolvedCommit"] == sample.commits["frontend-v2"]


def test_M1_schema_version_1_refused_with_env_accepted_with_file(sample: SampleRepo, cli: Cli, tmp_path: Path) -> None:
    pinned = sample.head()
    v1 = {"schemaVersion": 1, "services": [
        {"id": "k3sctl-adapter", "repo": "https://github.com/pikasTech/unidesk", "commitId": sample.short(pinned)}]}
    sample.commit_change("deploy.json", json.dumps(v1), "downgrade to v1")
    r = cli("plan", "--env", "dev", "--no-refresh")
    assert r.exit_code == 1 and "schemaVersion 1" in r.json["error"]["message"]
    local = tmp_path / "deploy.v1.json"
    local.write_text(json.dumps(v1))
    r = cli("plan", "--file", str(local), "--no-refresh")
    assert r.exit_code == 0, r.stdout
    assert r.json["manifest"]["mode"] == "file"
    assert services_by_id(r.json)["k3sctl-adapter"]["resolvedCommit"] == pinned


@pytest.mark.parametrize("args,fragment", [
    (["--service", "backend-core", "--commit", "abc1234"], "full 40-character"),
    (["--commit", "a" * 40], "exactly one service"),
    (["--service", "backend-core", "--service", "frontend", "--commit", "a" * 40], "exactly one service"),
])
def test_P3_commit_override_argument_rules(cli: Cli, args: list[str], fragment: str) -> None:
    r = cli("plan", "--env", "dev", "--no-refresh", *args)
    assert r.exit_code == 3, r.stdout
    assert r.json["error"]["rule"] == "P3" and fragment in r.json["error"]["message"]


def test_P3_commit_override_refused_in_local_mode(sample: SampleRepo, cli: Cli) -> None:
    r = cli("plan", "--file", str(sample.clone / "deploy.json"), "--service", "backend-core", "--commit", "a" * 40)
    assert r.exit_code == 3 and r.json["error"]["rule"] == "P3"


def test_P3_commit_override_refused_for_non_reviewed_or_unsupported_services(sample: SampleRepo, cli: Cli) -> None:
    full = sample.commits["initial"]
    r = cli("plan", "--env", "prod", "--no-refresh", "--service", "code-queue", "--commit", full)
    assert r.exit_code == 3 and r.json["error"]["rule"] == "P3"
    r = cli("plan", "--env", "dev", "--no-refresh", "--service", "k3sctl-adapter", "--commit", full)
    assert r.exit_code == 3 and r.json["error"]["rule"] == "P3"


def test_P3_commit_override_replaces_one_services_commit(sample: SampleRepo, cli: Cli) -> None:
    full = sample.commits["backend-core-v2"]
    r = cli("plan", "--env", "prod", "--no-refresh", "--service", "frontend", "--commit", full)
    assert r.exit_code == 0, r.stdout
    [item] = r.json["services"]
    assert item["id"] == "frontend" and item["resolvedCommit"] == full
    assert item["artifactConsumer"]["source"]["commitOverride"] is True
    assert r.json["manifest"]["ref"] == "origin/master"  # target and guardrails still come from the manifest


def test_P4_local_mode_blocks_reviewed_consumers_and_names_the_env_command(sample: SampleRepo, cli: Cli) -> None:
    r = cli("plan", "--file", str(sample.clone / "deploy.json"), "--no-refresh")
    # deploy.json holds two environments: local mode needs one, and says so
    assert r.exit_code == 1 and "local mode needs one" in r.json["error"]["message"]
    doc = sample.deploy_json()
    local = sample.workdir / "prod-only.json"
    local.write_text(json.dumps({"schemaVersion": 2, "environments": {"prod": doc["environments"]["prod"]}}))
    items = services_by_id(cli("plan", "--file", str(local), "--no-refresh").json)
    backend = items["backend-core"]
    assert backend["action"] == "blocked" and backend["blockedReason"] == "reviewed-artifact-consumer"
    assert "udeploy apply --env prod --service backend-core --commit <full-sha>" in backend["reason"]
    assert items["decision-center"]["blockedReason"] == "maintenance-channel-direct-deploy-blocked"  # P5
    assert items["k3sctl-adapter"]["action"] == "deploy"  # the one direct-service exception


def test_service_selection_reads_only_what_is_selected_and_rejects_unknown_ids(cli: Cli) -> None:
    r = cli("plan", "--env", "dev", "--no-refresh", "--service", "mdtodo")
    assert [s["id"] for s in r.json["services"]] == ["mdtodo"]
    r = cli("plan", "--env", "dev", "--no-refresh", "--service", "nope")
    assert r.exit_code == 1 and r.json["error"]["code"] == "service-not-found"


def test_errors_write_nothing(sample: SampleRepo, cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    sample.set_pin("dev", "frontend", "deadbee")
    r = cli("plan", "--env", "dev", "--no-refresh", "-out", str(out))
    assert r.exit_code == 1 and not out.exists()
    assert not list(tmp_path.glob("plan.json*"))


def test_P7_credentials_in_the_remote_url_are_never_recorded_or_printed(sample: SampleRepo, cli: Cli) -> None:
    secret_url = "https://ci-token:s3cr3t-Tk9@github.com/pikasTech/unidesk"
    gitconfig = sample.env["GIT_CONFIG_GLOBAL"]
    sample.repo.git.config("--file", gitconfig, "--add", f"url.{sample.origin_url}.insteadOf", secret_url)
    sample.repo.git.remote("set-url", "origin", secret_url)
    r = cli("plan", "--env", "dev", "--no-refresh")
    assert r.exit_code == 0, r.stdout
    assert "s3cr3t" not in r.stdout + r.stderr
    assert r.json["manifest"]["remote"] == "https://github.com/pikasTech/unidesk"
    sample.repo.git.remote("set-url", "origin", "https://ci-token:s3cr3t-Tk9@github.com/pikasTech/nowhere")
    failed = cli("plan", "--env", "dev", "--no-refresh")
    assert failed.exit_code == 1 and failed.json["error"]["code"] == "git-error"
    assert "s3cr3t" not in failed.stdout + failed.stderr
