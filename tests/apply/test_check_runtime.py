"""`udeploy check` on a k3s target (O5, E3, E5): live vs desired plus the sandbox image and the
Code Queue diagnostics, changing nothing."""

from __future__ import annotations

from kubernetes import client

from tests.apply.conftest import Lab


def checks_by_id(doc: dict) -> dict[str, dict]:
    return {c["check"]: c for c in doc["checks"]}


def test_O5_E3_E5_check_reports_then_clears(lab: Lab, empty_dev_namespace: client.CoreV1Api) -> None:
    lab.publish("code-queue", lab.sample.commits["frontend-v2"])
    before = lab.cli("check", "--env", "dev", "--service", "code-queue")
    assert before.exit_code == 2
    doc = before.json
    assert doc["inSync"] is False and doc["differ"] == ["code-queue"]
    found = checks_by_id(doc)
    assert found["E3"]["ok"] is True and found["E3"]["entrypoint"] == ["/pause"]  # the lab's genuine sandbox image
    assert found["E5"]["ok"] is False and found["E5"]["degradedReason"] == "dependency-unavailable"
    assert empty_dev_namespace.list_namespaced_pod("unidesk-dev").items == []  # check changed nothing
    applied = lab.cli("apply", "--env", "dev", "--service", "code-queue", *lab.apply_args())
    assert applied.exit_code == 0, applied.stdout
    after = lab.cli("check", "--env", "dev", "--service", "code-queue")
    assert after.exit_code == 0, after.stdout
    assert after.json["inSync"] is True and after.json["checksPassed"] is True
    assert checks_by_id(after.json)["E5"]["status"] == "ok"
