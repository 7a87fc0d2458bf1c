"""G1 and E4 in the apply path: a rollout of the manifest that mounts the Code Queue hostPath
source runs the source guard (and the image gate) first, and stops before anything restarts.

The sample's production Code Queue is unsupported (P8); this test enables it in its own copy of
config.json only to drive the guard, and points the hostPath root at a partly synced copy."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from kubernetes import client, config

from tests.apply.conftest import Lab, require_lab

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "unidesk-sample"
SOURCE = "src/components/microservices/code-queue/src"


def enable_prod_code_queue(lab: Lab, root: Path) -> None:
    cfg = json.loads((lab.sample.clone / "config.json").read_text())
    cq = next(m for m in cfg["microservices"] if m["id"] == "code-queue")
    cq["environments"]["prod"] = {
        "consumerKind": "d601-k3s-managed", "liveApply": {"mode": "enabled"},
        "target": {"host": "D601-k3s", "k3s": {
            "namespace": "unidesk", "manifest": cq["hostPathSource"]["manifest"],
            "objects": ["Deployment/code-queue", "Service/code-queue"], "stampDeployments": ["code-queue"],
            "importImage": "unidesk-code-queue:{commit}", "healthService": {"name": "code-queue", "port": 4222}}}}
    cq["hostPathSource"]["root"] = str(root)
    lab.sample.commit_change("config.json", json.dumps(cfg, indent=2), "test: enable prod code-queue")


def synced_copy(tmp_path: Path, *, drop: str | None = None) -> Path:
    root = tmp_path / "cq-deploy"
    shutil.copytree(FIXTURE / SOURCE, root / SOURCE)
    if drop:
        (root / SOURCE / drop).unlink()
    return root


def apply_code_queue(lab: Lab, tmp_path: Path) -> dict:
    lab.publish("code-queue", lab.sample.commits["frontend-v2"])
    r = lab.cli("plan", "--env", "prod", "--service", "code-queue", "-out", str(tmp_path / "p.json"))
    assert r.exit_code == 0, r.stdout
    kinds = [n["kind"] for n in r.json["graph"]["nodes"]]
    assert kinds.index("guard-source") < kinds.index("apply-objects") < kinds.index("stamp")
    result = lab.cli("apply", str(tmp_path / "p.json"), *lab.apply_args())
    assert result.exit_code == 1
    return dict(result.json)


def no_code_queue_deployment() -> bool:
    api = client.AppsV1Api(config.new_client_from_config(config_file="/var/lib/udeploy-lab/k3s/kubeconfig.yaml"))
    try:
        api.read_namespaced_deployment("code-queue", "unidesk")
    except client.ApiException as exc:
        return exc.status == 404
    return False


def test_G1_partial_sync_stops_the_rollout_naming_importer_and_target(lab: Lab, tmp_path: Path) -> None:
    require_lab("k3s-containerd", "kubelab")
    enable_prod_code_queue(lab, synced_copy(tmp_path, drop="runtime-preflight.ts"))
    result = apply_code_queue(lab, tmp_path)
    [failed] = result["failed"]
    assert failed["node"] == "code-queue/guard-source"
    assert "degradedReason=missing-relative-import-target" in failed["error"]
    assert "index.ts" in failed["error"] and "runtime-preflight" in failed["error"]
    assert {"code-queue/apply-objects", "code-queue/stamp", "code-queue/rollout"} <= set(result["skipped"])
    assert no_code_queue_deployment()


def test_G1_missing_root_then_E4_gate_stop_before_rollout(lab: Lab, tmp_path: Path) -> None:
    require_lab("k3s-containerd", "kubelab")
    enable_prod_code_queue(lab, tmp_path / "nowhere")
    result = apply_code_queue(lab, tmp_path)
    assert "degradedReason=source-root-missing" in result["failed"][0]["error"]
    # a complete source passes G1; the gate image is not in the k3s containerd, so E4 stops it
    enable_prod_code_queue(lab, synced_copy(tmp_path))
    result = apply_code_queue(lab, tmp_path)
    [failed] = result["failed"]
    assert failed["node"] == "code-queue/guard-source" and "image gate" in failed["error"]
    assert "unidesk-code-queue:d601" in failed["error"] or "image-missing" in failed["error"]
    assert no_code_queue_deployment()
