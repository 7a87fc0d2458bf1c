"""The sample dev environment from empty to fully deployed and verified, on both Compose hosts and
native k3s (K1, K2, C2, C3, V4, P1), then a re-plan is all noop."""

from __future__ import annotations

import subprocess
from pathlib import Path

from kubernetes import client

from tests.apply.conftest import Lab
from tests.apply.test_apply_compose import by_id

SECRETS = {"UNIDESK_BAIDU_NETDISK_CLIENT_ID": "dev-cid-4Hq", "UNIDESK_BAIDU_NETDISK_CLIENT_SECRET": "dev-sec-8Wz",
           "UNIDESK_BAIDU_NETDISK_TOKEN_KEY": "dev-tok-2Lp"}


def plan_dev(lab: Lab, path: Path) -> dict:
    r = lab.cli("plan", "--env", "dev", "-out", str(path))
    assert r.exit_code == 0, r.stdout + r.stderr
    return r.json


def test_K1_C2_C3_V4_dev_environment_from_empty_to_verified_then_noop(
        lab: Lab, empty_dev_namespace: client.CoreV1Api, tmp_path: Path) -> None:
    doc = lab.cli("artifact", "status").json
    for row in doc["environments"]["dev"]:
        if row["artifact"] == "missing":
            lab.publish(row["service"], row["commit"])
    lab.write_secrets(SECRETS, env="dev")
    plan_dev(lab, tmp_path / "plan.json")
    items = by_id(lab.cli("show", str(tmp_path / "plan.json")).json)
    deploying = sorted(s for s, i in items.items() if i["action"] == "deploy")
    assert deploying == sorted(["backend-core", "frontend", "baidu-netdisk", "decision-center", "mdtodo", "claudeqq",
                                "code-queue", "project-manager", "oa-event-flow", "code-queue-mgr", "todo-note",
                                "findjob", "pipeline"])
    assert {i["artifactConsumer"]["consumerKind"] for s, i in items.items() if s in deploying} == {
        "d601-k3s-managed", "main-server-compose", "d601-direct-compose"}
    r = lab.cli("apply", str(tmp_path / "plan.json"), *lab.apply_args())
    assert r.exit_code == 0, r.stdout[-3000:] + r.stderr[-3000:]
    result = r.json
    assert result["state"] == "succeeded"
    assert sorted(s["id"] for s in result["services"] if s["verified"]) == deploying
    assert {u["id"] for u in result["untouched"]} == {"met-nonlinear", "k3sctl-adapter", "filebrowser-d601"}
    again = by_id(plan_dev(lab, tmp_path / "again.json"))
    assert {s for s, i in again.items() if i["action"] == "noop"} == set(deploying)
    assert {i["action"] for s, i in again.items() if s not in deploying} <= {"blocked", "gated"}
    pods = empty_dev_namespace.list_namespaced_pod("unidesk-dev").items
    assert len(pods) >= 8  # the k3s consumers really run


def test_runtime_secret_synced_after_the_foundation_survives_every_later_deploy(
        lab: Lab, empty_dev_namespace: client.CoreV1Api, tmp_path: Path) -> None:
    """The foundation's Secret is a template of placeholders; once the real values are synced
    into it, re-applying the foundation (every dev deploy requires it) must not reset them."""
    lab.publish("mdtodo", lab.sample.commits["frontend-v2"])
    assert lab.cli("apply", "--env", "dev", "--service", "mdtodo", *lab.apply_args()).exit_code == 0
    empty_dev_namespace.patch_namespaced_secret("unidesk-dev-runtime-secrets", "unidesk-dev",
                                                {"stringData": {"POSTGRES_PASSWORD": "synced-real-value"}})
    before = empty_dev_namespace.read_namespaced_secret("unidesk-dev-runtime-secrets", "unidesk-dev").data
    r = lab.cli("apply", "--env", "dev", "--service", "mdtodo", "--force", *lab.apply_args())
    assert r.exit_code == 0, r.stdout
    after = empty_dev_namespace.read_namespaced_secret("unidesk-dev-runtime-secrets", "unidesk-dev").data
    assert after == before and after["POSTGRES_PASSWORD"] != ""
    log = lab.cli("job", "status", r.json["jobId"], "--tail-bytes", "100000", *lab.apply_args()).json["logTail"]
    assert "Secret/unidesk-dev-runtime-secrets kept" in log


def test_O6_dry_run_leaves_engines_containerd_and_the_api_as_they_were(
        lab: Lab, empty_dev_namespace: client.CoreV1Api) -> None:
    for sid in ("backend-core", "findjob"):
        lab.publish(sid, lab.sample.commits["frontend-v2"])

    def containerd_images() -> str:
        return subprocess.run(["ctr", "--address", "/run/udeploy-lab/k3s/containerd.sock", "-n", "k8s.io", "images",
                               "ls", "-q"], capture_output=True, text=True, check=True).stdout

    def namespaces() -> list[str]:
        return sorted(n.metadata.name for n in empty_dev_namespace.list_namespace().items)

    before = (lab.engine_snapshot(), containerd_images(), namespaces())
    r = lab.cli("apply", "--env", "dev", "--service", "backend-core", "--service", "findjob", "--dry-run",
                *lab.apply_args())
    assert r.exit_code == 0, r.stdout + r.stderr
    assert r.json["dryRun"] is True and r.json["state"] == "succeeded"
    assert "would" in r.stderr
    assert (lab.engine_snapshot(), containerd_images(), namespaces()) == before
    assert "unidesk-dev" not in namespaces()
