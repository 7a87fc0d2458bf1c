"""`udeploy apply` end to end on the Compose hosts of the lab (K1, K2, O1, O6, C3, V4, P7).

main-server is reached over SSH, D601 through its own engine; artifacts are really built by CI
(`artifact publish`) and pulled by the hosts. prod holds the Compose consumers.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.apply.conftest import Lab
from udeploy.engine.apply import lock as env_lock
from udeploy.providers.compose_host import ComposeHostProvider
from udeploy.providers.registry import RegistryProvider

SERVICES = ["--service", "backend-core", "--service", "frontend", "--service", "findjob"]


def plan_out(lab: Lab, path: Path, *args: str) -> dict:
    r = lab.cli("plan", "--env", "prod", "-out", str(path), *args)
    assert r.exit_code == 0, r.stdout + r.stderr
    return r.json


def apply(lab: Lab, *args: str):  # noqa: ANN201
    return lab.cli("apply", *args, *lab.apply_args())


def by_id(doc: dict) -> dict[str, dict]:
    return {s["id"]: s for s in doc["services"]}


def publish_all(lab: Lab, commit: str, *services: str) -> None:
    for s in services:
        lab.publish(s, commit)


def test_K1_O6_C3_saved_plan_applies_then_replan_is_noop(lab: Lab, tmp_path: Path) -> None:
    pinned = lab.sample.commits["frontend-v2"]
    publish_all(lab, pinned, "backend-core", "frontend", "findjob")
    plan = plan_out(lab, tmp_path / "plan.json", *SERVICES)
    assert {s["id"]: s["action"] for s in plan["services"]} == {
        "backend-core": "deploy", "frontend": "deploy", "findjob": "deploy"}
    r = apply(lab, str(tmp_path / "plan.json"))
    assert r.exit_code == 0, r.stdout + r.stderr
    result = r.json
    assert result["state"] == "succeeded"
    assert all(s["verified"] for s in result["services"])
    assert "running" in r.stderr and "verify-live" in r.stderr  # O1: progress on stderr
    status = lab.cli("job", "status", result["jobId"], "--tail-bytes", "200", *lab.apply_args()).json
    assert status["state"] == "succeeded" and len(status["logTail"].encode()) <= 200
    assert lab.containers("main-server").keys() >= {"backend-core", "frontend"}
    assert "findjob" in lab.containers("D601")
    again = plan_out(lab, tmp_path / "again.json", *SERVICES)
    assert {s["action"] for s in again["services"]} == {"noop"}
    assert again["graph"]["nodes"] == []
    check = lab.cli("check", "--env", "prod", *SERVICES)
    assert check.exit_code == 0 and check.json["inSync"] is True
    spent = apply(lab, str(tmp_path / "plan.json"))  # a plan is applied once; its observations are history
    assert spent.exit_code == 4 and "already applied" in spent.json["error"]["message"]


def test_O6_force_redeploys_a_matching_service(lab: Lab, tmp_path: Path) -> None:
    lab.publish("findjob", lab.sample.commits["frontend-v2"])
    assert apply(lab, "--env", "prod", "--service", "findjob").exit_code == 0
    before = lab.containers("D601")["findjob"]
    forced = plan_out(lab, tmp_path / "p.json", "--service", "findjob", "--force")
    assert by_id(forced)["findjob"]["action"] == "deploy" and "forced" in by_id(forced)["findjob"]["reason"]
    assert apply(lab, str(tmp_path / "p.json")).exit_code == 0
    assert lab.containers("D601")["findjob"] != before


def test_one_moved_pin_redeploys_only_that_service(lab: Lab, tmp_path: Path) -> None:
    pinned = lab.sample.commits["frontend-v2"]
    publish_all(lab, pinned, "backend-core", "findjob")
    assert apply(lab, "--env", "prod", "--service", "backend-core", "--service", "findjob").exit_code == 0
    ids = {**lab.containers("main-server"), **lab.containers("D601")}
    new = lab.sample.commits["backend-core-v2"]
    lab.publish("backend-core", new)
    lab.sample.set_pin("prod", "backend-core", new)
    plan = plan_out(lab, tmp_path / "p.json", "--service", "backend-core", "--service", "findjob")
    assert {s["id"]: s["action"] for s in plan["services"]} == {"backend-core": "deploy", "findjob": "noop"}
    r = apply(lab, str(tmp_path / "p.json"))
    assert r.exit_code == 0, r.stdout
    after = {**lab.containers("main-server"), **lab.containers("D601")}
    assert after["findjob"] == ids["findjob"] and after["backend-core"] != ids["backend-core"]


def test_stale_plan_is_refused_without_mutation(lab: Lab, tmp_path: Path) -> None:
    lab.publish("findjob", lab.sample.commits["frontend-v2"])
    assert apply(lab, "--env", "prod", "--service", "findjob").exit_code == 0
    plan_out(lab, tmp_path / "p.json", "--service", "findjob", "--force")
    # someone recreates the container on the host after the plan was made
    project_dir = lab.compose_dir("D601")
    subprocess.run(["docker-compose", "-p", f"{lab.project}-prod", "-f", str(project_dir / "d601.compose.yml"),
                    "up", "-d", "--no-build", "--no-deps", "--force-recreate", "findjob"],
                   cwd=project_dir, env={**os.environ, "DOCKER_HOST": "unix:///run/udeploy-lab/d601/docker.sock"},
                   check=True, capture_output=True)
    changed = lab.containers("D601")["findjob"]
    r = apply(lab, str(tmp_path / "p.json"))
    assert r.exit_code == 4, r.stdout
    err = r.json["error"]
    assert err["code"] == "plan-stale" and err["path"].startswith("findjob/")
    assert "findjob" in err["message"]
    assert lab.containers("D601")["findjob"] == changed  # nothing was touched


def test_K1_edited_plan_is_refused(lab: Lab, tmp_path: Path) -> None:
    lab.publish("findjob", lab.sample.commits["frontend-v2"])
    path = tmp_path / "p.json"
    plan_out(lab, path, "--service", "findjob")
    doc = json.loads(path.read_text())
    doc["graph"]["nodes"][0]["params"]["image"] = "127.0.0.1:5000/unidesk/evil:latest"
    path.write_text(json.dumps(doc, indent=2))
    snap = lab.engine_snapshot()
    r = apply(lab, str(path))
    assert r.exit_code == 4 and r.json["error"]["code"] == "plan-tampered"
    assert lab.engine_snapshot() == snap
    one_byte = tmp_path / "q.json"
    plan_out(lab, one_byte, "--service", "findjob")
    raw = bytearray(one_byte.read_bytes())
    raw[raw.index(b'"reason": "') + 11] ^= 0x20  # flip the case of one letter
    one_byte.write_bytes(bytes(raw))
    assert apply(lab, str(one_byte)).json["error"]["code"] == "plan-tampered"


def test_manifest_ref_moved_is_stale(lab: Lab, tmp_path: Path) -> None:
    lab.publish("findjob", lab.sample.commits["frontend-v2"])
    plan_out(lab, tmp_path / "p.json", "--service", "findjob")
    lab.sample.commit_change("README.md", "moved\n", "unrelated change moves origin/master")
    r = apply(lab, str(tmp_path / "p.json"))
    assert r.exit_code == 4 and r.json["error"]["code"] == "plan-stale"
    assert "origin/master moved" in r.json["error"]["message"]
    assert "findjob" not in lab.containers("D601")


def test_second_concurrent_apply_is_refused_by_the_lock(lab: Lab, tmp_path: Path) -> None:
    lab.publish("findjob", lab.sample.commits["frontend-v2"])
    plan_out(lab, tmp_path / "p.json", "--service", "findjob")
    held, _ = env_lock.acquire(lab.state_dir, "env-prod", "another-job")  # held by this live process
    try:
        r = apply(lab, str(tmp_path / "p.json"))
        assert r.exit_code == 1 and r.json["error"]["code"] == "lock-held"
        assert "another-job" in r.json["error"]["message"]
        status = lab.cli("lock", "status", "--env", "prod", *lab.apply_args()).json
        assert status["lock"]["jobId"] == "another-job" and status["lock"]["alive"] is True
        assert "findjob" not in lab.containers("D601")
    finally:
        env_lock.release(lab.state_dir, "env-prod", held["lockId"])
    assert apply(lab, str(tmp_path / "p.json")).exit_code == 0


def test_K2_V4_failing_health_fails_the_node_and_skips_dependents(lab: Lab, tmp_path: Path) -> None:
    broken = lab.sample.commit_change("src/components/backend-core/BROKEN", "on purpose\n", "break backend-core")
    lab.publish("backend-core", broken)
    lab.publish("frontend", lab.sample.commits["frontend-v2"])
    lab.sample.set_pin("prod", "backend-core", broken)
    plan_out(lab, tmp_path / "p.json", "--service", "backend-core", "--service", "frontend")
    r = apply(lab, str(tmp_path / "p.json"))
    assert r.exit_code == 1
    result = r.json
    assert result["state"] == "failed"
    # the container exits at once: recreate or verify-live notices, depending on timing
    [failed] = [f["node"] for f in result["failed"]]
    assert failed in ("backend-core/recreate", "backend-core/verify-live")
    assert {"frontend/transfer-image", "frontend/stamp", "frontend/recreate", "frontend/verify-live"} <= set(
        result["skipped"])
    log = lab.cli("job", "status", result["jobId"], "--tail-bytes", "100000", *lab.apply_args()).json["logTail"]
    assert f"failed {failed}" in log and "skipped frontend/recreate" in log
    assert "frontend" not in lab.containers("main-server")


def test_O6_dry_run_changes_nothing(lab: Lab, tmp_path: Path) -> None:
    publish_all(lab, lab.sample.commits["frontend-v2"], "backend-core", "findjob")
    snap = lab.engine_snapshot()
    r = apply(lab, "--env", "prod", "--service", "backend-core", "--service", "findjob", "--dry-run")
    assert r.exit_code == 0, r.stdout
    assert r.json["dryRun"] is True and r.json["state"] == "succeeded"
    assert lab.engine_snapshot() == snap
    assert not lab.compose_dir("D601").exists() or not any(lab.compose_dir("D601").rglob("*.env"))


def test_kill_mid_walk_then_rerun_resumes(lab: Lab, tmp_path: Path) -> None:
    services = ["backend-core", "frontend", "findjob", "todo-note", "project-manager"]
    publish_all(lab, lab.sample.commits["frontend-v2"], *services)
    path = tmp_path / "p.json"
    plan_out(lab, path, *[a for s in services for a in ("--service", s)])
    env = {**os.environ, **lab.cli.env}
    proc = subprocess.Popen([sys.executable, "-m", "udeploy.engine.cli", "apply", str(path), "--parallelism", "1",
                             *lab.apply_args()], cwd=lab.sample.clone, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    jobs = lab.state_dir / "jobs"
    deadline = time.monotonic() + 60
    killed_job = None
    while time.monotonic() < deadline and killed_job is None:
        for status in jobs.glob("*/status.json") if jobs.exists() else []:
            doc = json.loads(status.read_text())
            if sum(n.get("state") == "succeeded" for n in doc["nodes"].values()) >= 3:
                proc.send_signal(signal.SIGKILL)
                killed_job = doc["jobId"]
        time.sleep(0.05)
    proc.wait(timeout=30)
    assert killed_job is not None, "the apply finished before it could be killed"
    died = lab.cli("job", "status", killed_job, *lab.apply_args()).json
    assert died["state"] == "died"
    r = apply(lab, str(path))
    assert r.exit_code == 0, r.stdout + r.stderr
    result = r.json
    assert len(result["resumed"]) >= 3
    assert result["tookOverLock"] is not None and result["tookOverLock"]["jobId"] == killed_job
    assert all(s["verified"] for s in result["services"])


def test_P7_secrets_gate_and_no_secret_value_anywhere(lab: Lab, tmp_path: Path) -> None:
    lab.publish("baidu-netdisk", lab.sample.commits["frontend-v2"])
    missing = plan_out(lab, tmp_path / "missing.json", "--service", "baidu-netdisk")
    item = by_id(missing)["baidu-netdisk"]
    assert item["action"] == "gated" and item["blockedReason"] == "runtime-secrets-missing"
    rs = item["artifactConsumer"]["runtimeSecrets"]
    assert rs["requiredSecretsPresent"] is False
    assert set(rs["missingSecretKeys"]) == {"UNIDESK_BAIDU_NETDISK_CLIENT_ID", "UNIDESK_BAIDU_NETDISK_CLIENT_SECRET",
                                            "UNIDESK_BAIDU_NETDISK_TOKEN_KEY"}
    assert rs["recommendedAction"]
    refused = apply(lab, "--env", "prod", "--service", "baidu-netdisk")
    assert refused.exit_code == 3 and "baidu-netdisk" not in lab.containers("main-server")
    values = {"UNIDESK_BAIDU_NETDISK_CLIENT_ID": "cid-Zq8xW2", "UNIDESK_BAIDU_NETDISK_CLIENT_SECRET": "sec-P9vL4k",
              "UNIDESK_BAIDU_NETDISK_TOKEN_KEY": "tok-M3nB7j"}
    lab.write_secrets(values)
    path = tmp_path / "p.json"
    ready = by_id(plan_out(lab, path, "--service", "baidu-netdisk"))["baidu-netdisk"]
    assert ready["action"] == "deploy" and ready["artifactConsumer"]["runtimeSecrets"]["requiredSecretsPresent"]
    r = apply(lab, str(path))
    assert r.exit_code == 0, r.stdout
    outputs = [r.stdout, r.stderr, path.read_text(), *(p.read_text(errors="replace")
                                                        for p in lab.state_dir.rglob("*") if p.is_file())]
    for secret in values.values():
        assert not any(secret in text for text in outputs), f"a secret value leaked: {secret}"


def test_O1_O6_detach_returns_the_job_id_and_job_status_follows_it(lab: Lab, tmp_path: Path) -> None:
    lab.publish("findjob", lab.sample.commits["frontend-v2"])
    plan_out(lab, tmp_path / "p.json", "--service", "findjob")
    started = apply(lab, str(tmp_path / "p.json"), "--detach")
    assert started.exit_code == 0, started.stdout
    job_id = started.json["jobId"]
    assert started.json["state"] == "started"
    deadline = time.monotonic() + 60
    status: dict = {}
    while time.monotonic() < deadline:
        r = lab.cli("job", "status", job_id, "--tail-bytes", "300", *lab.apply_args())
        if r.exit_code == 0 and r.json["state"] not in ("starting", "running"):
            status = r.json
            break
        time.sleep(0.3)
    assert status.get("state") == "succeeded", status
    assert all(n["state"] == "succeeded" for n in status["nodes"].values())
    assert len(status["logTail"].encode()) <= 300
    listed = lab.cli("job", "list", *lab.apply_args()).json["jobs"]
    assert job_id in [j["jobId"] for j in listed]
    assert "findjob" in lab.containers("D601")


def test_O5_check_reports_a_blocked_service_that_differs(lab: Lab) -> None:
    r = lab.cli("check", "--env", "prod", "--service", "met-nonlinear")
    assert r.exit_code == 2
    assert r.json["inSync"] is False and r.json["differ"] == ["met-nonlinear"]
    assert r.json["services"][0]["action"] == "blocked"


def test_local_mode_plan_is_stale_when_config_json_changes_in_the_tree(lab: Lab, tmp_path: Path) -> None:
    doc = lab.sample.deploy_json()
    local = tmp_path / "adapter.json"
    local.write_text(json.dumps({"schemaVersion": 2, "environments": {"prod": {"services": [
        s for s in doc["environments"]["prod"]["services"] if s["id"] == "k3sctl-adapter"]}}}))
    r = lab.cli("plan", "--file", str(local), "--no-refresh", "-out", str(tmp_path / "p.json"))
    assert r.exit_code == 0, r.stdout
    assert r.json["manifest"]["file"] == str(local.resolve()) and r.json["manifest"]["configSha256"]
    config = lab.sample.clone / "config.json"
    config.write_text(config.read_text() + "\n")  # an uncommitted edit in the working tree
    refused = apply(lab, str(tmp_path / "p.json"))
    assert refused.exit_code == 4 and refused.json["error"]["path"] == "config.json"


def test_O6_a_detached_apply_that_is_refused_reports_it_in_job_status(lab: Lab, tmp_path: Path) -> None:
    lab.publish("findjob", lab.sample.commits["frontend-v2"])
    plan_out(lab, tmp_path / "p.json", "--service", "findjob")
    lab.sample.commit_change("README.md", "moved\n", "move origin/master after the plan")
    started = apply(lab, str(tmp_path / "p.json"), "--detach")
    assert started.exit_code == 0
    job_id = started.json["jobId"]
    deadline, status = time.monotonic() + 60, {}
    while time.monotonic() < deadline:
        status = lab.cli("job", "status", job_id, *lab.apply_args()).json
        if status.get("state") not in ("starting", "running"):
            break
        time.sleep(0.3)
    assert status["state"] == "refused", status
    assert status["result"]["error"]["code"] == "plan-stale"
    assert "findjob" not in lab.containers("D601")


def test_K3_refresh_reads_each_host_in_one_observe_call_and_the_registry_in_one_batch(
        lab: Lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """K3: a refreshing plan asks each host's provider once for all of that host's services, and the
    registry once for all artifacts (the providers then list once per project, see tests/providers)."""
    publish_all(lab, lab.sample.commits["frontend-v2"], "backend-core", "frontend", "findjob")
    observed: list[tuple[str, list[str]]] = []
    read: list[list[str]] = []
    real_observe, real_artifacts = ComposeHostProvider.observe, RegistryProvider.artifacts

    def counting_observe(self: ComposeHostProvider, requests: Any, **kwargs: Any) -> Any:
        observed.append((self.host.id, sorted(r.service_id for r in requests)))
        return real_observe(self, requests, **kwargs)

    def counting_artifacts(self: RegistryProvider, images: Any, **kwargs: Any) -> Any:
        read.append(list(images))
        return real_artifacts(self, images, **kwargs)

    monkeypatch.setattr(ComposeHostProvider, "observe", counting_observe)
    monkeypatch.setattr(RegistryProvider, "artifacts", counting_artifacts)
    plan = plan_out(lab, tmp_path / "plan.json", *SERVICES)
    assert sorted(observed) == [("D601", ["findjob"]), ("main-server", ["backend-core", "frontend"])]
    assert len(read) == 1 and len(read[0]) == 3, read
    assert {s["id"]: s["action"] for s in plan["services"]} == {
        "backend-core": "deploy", "frontend": "deploy", "findjob": "deploy"}
