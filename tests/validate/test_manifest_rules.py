"""`udeploy validate` on copies of the sample monorepo: D1-D5, E2 and object schemas.

The sample's own manifests pass; each case in broken_manifests.yaml breaks exactly one rule in one
file and must fail naming that rule, that file and the object. Everything runs through the CLI.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from tests.validate.support import K3S, break_manifest, validate
from udeploy.engine.cli import app

CASES = yaml.safe_load((Path(__file__).parent / "broken_manifests.yaml").read_text())
# What the sample's config.json names, in order, and the rules each file gets (by directory and objects).
SAMPLE_RULES = {
    "dev/unidesk-dev-foundation.k8s.yaml": ["K8S-SCHEMA", "E2", "D2", "D1", "D5"],
    "dev/unidesk-dev-core.k8s.yaml": ["K8S-SCHEMA", "E2", "D2", "D3"],
    "dev/decision-center-dev.k8s.yaml": ["K8S-SCHEMA", "E2", "D2"],
    "decision-center.k8s.yaml": ["K8S-SCHEMA", "E2"],
    "dev/mdtodo-dev.k8s.yaml": ["K8S-SCHEMA", "E2", "D2"],
    "mdtodo.k8s.yaml": ["K8S-SCHEMA", "E2"],
    "dev/claudeqq-dev.k8s.yaml": ["K8S-SCHEMA", "E2", "D2"],
    "claudeqq.k8s.yaml": ["K8S-SCHEMA", "E2"],
    "dev/unidesk-dev-code-queue.k8s.yaml": ["K8S-SCHEMA", "E2", "D2", "D4"],
}
# issue 9: the named rule sets a file's objects select (not its name); the others say only generic rules ran.
SAMPLE_RULE_SETS = {"dev/unidesk-dev-foundation.k8s.yaml": ["dev-foundation"], "dev/unidesk-dev-core.k8s.yaml": [
    "dev-core"], "dev/unidesk-dev-code-queue.k8s.yaml": ["dev-code-queue"]}


def test_D1_D2_D3_D4_D5_E2_the_sample_manifests_pass(repo: Path) -> None:
    code, doc = validate("--repo", str(repo))
    assert code == 0, json.dumps(doc, indent=2)
    assert doc["ok"] is True and doc["dryRun"] is None
    assert {m["path"]: m["rules"] for m in doc["manifests"]} == {f"{K3S}/{p}": r for p, r in SAMPLE_RULES.items()}
    assert all(m["findings"] == [] for m in doc["manifests"])
    assert {m["path"]: m["ruleSets"] for m in doc["manifests"]} == {
        f"{K3S}/{p}": SAMPLE_RULE_SETS.get(p, []) for p in SAMPLE_RULES}
    assert {m["path"]: [n["rule"] for n in m["notes"]] for m in doc["manifests"]} == {
        f"{K3S}/{p}": [] if p in SAMPLE_RULE_SETS else ["RULE-SETS"] for p in SAMPLE_RULES}
    foundation = doc["manifests"][0]
    assert [o["object"] for o in foundation["objects"]] == [
        "Namespace/unidesk-dev", "ResourceQuota/unidesk-dev-quota", "LimitRange/unidesk-dev-defaults",
        "Secret/unidesk-dev-runtime-secrets", "ConfigMap/unidesk-dev-runtime-config", "ConfigMap/unidesk-dev-db-guard",
        "Service/postgres-dev", "StatefulSet/postgres-dev", "Job/unidesk-dev-db-migrate"]


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"], marks=pytest.mark.req(c["expect"]["rule"]))
                                  for c in CASES])
def test_D1_D2_D3_D4_D5_E2_one_broken_rule_is_named_with_file_and_object(repo: Path, case: dict[str, Any]) -> None:
    path = f"{K3S}/{case['file']}"
    break_manifest(repo / path, case["edits"])
    code, doc = validate("--repo", str(repo))
    assert code == 1 and doc["ok"] is False
    failing = {m["path"]: m["findings"] for m in doc["manifests"] if m["findings"]}
    assert list(failing) == [path], json.dumps(failing, indent=2)
    findings = failing[path]
    assert {f["rule"] for f in findings} == {case["expect"]["rule"]}, json.dumps(findings, indent=2)
    assert case["expect"]["object"] in [f["object"] for f in findings]
    assert all(f["severity"] == "error" and f["summary"] for f in findings)


def test_D5_the_db_guard_really_runs_dev_passes_production_is_rejected(repo: Path) -> None:
    code, doc = validate("--repo", str(repo), "--manifest", str(repo / K3S / "dev/unidesk-dev-foundation.k8s.yaml"))
    assert code == 0
    guard = doc["manifests"][0]["dbGuard"]
    assert guard["ran"] is True and guard["script"] == "ConfigMap/unidesk-dev-db-guard#db-guard.sh"
    # Never on the host (issue 9): in a network-less container on the operator's sandbox engine.
    assert guard["sandbox"]["limits"]["network"] == "none" and guard["sandbox"]["engine"].startswith("unix://")
    dev, *prod = guard["runs"]
    # The dev URL is the Secret template's own, password redacted; the script printed its verdict.
    assert dev["databaseUrl"] == ("postgres://unidesk_dev:***@postgres-dev.unidesk-dev.svc.cluster.local:5432/"
                                  "unidesk_dev")
    assert (dev["expect"], dev["exitCode"], dev["accepted"]) == ("accept", 0, True)
    assert dev["output"] == "db-guard: ok host=postgres-dev.unidesk-dev.svc.cluster.local database=unidesk_dev"
    assert len(prod) == 3
    for run in prod:
        assert (run["expect"], run["exitCode"], run["accepted"]) == ("reject", 1, False)
        assert run["output"].startswith("db-guard: refusing DATABASE_URL")
    assert "unidesk-database" in prod[0]["output"]


def test_D5_missing_guard_script_is_a_D5_finding(repo: Path) -> None:
    path = repo / K3S / "dev/unidesk-dev-foundation.k8s.yaml"
    break_manifest(path, [{"object": "ConfigMap/unidesk-dev-db-guard", "delete": "data/db-guard.sh"}])
    code, doc = validate("--manifest", str(path))
    assert code == 1
    assert doc["manifests"][0]["dbGuard"] == {"ran": False}
    assert [(f["rule"], f["object"]) for f in doc["manifests"][0]["findings"]] == [
        ("D5", "ConfigMap/unidesk-dev-db-guard")]


def test_D1_explicit_manifest_is_reported_by_the_path_given(repo: Path) -> None:
    path = repo / K3S / "dev/unidesk-dev-core.k8s.yaml"
    code, doc = validate("--manifest", str(path), "--repo", str(repo))
    assert code == 0
    assert [m["path"] for m in doc["manifests"]] == [str(path)]
    assert doc["manifests"][0]["rules"] == ["K8S-SCHEMA", "E2", "D2", "D3"]


def test_D2_a_renamed_dev_manifest_still_gets_the_isolation_rule(repo: Path) -> None:
    """D2 applies by directory and content; no named rule set claims these objects (issue 9: a note says so)."""
    path = repo / "elsewhere.yaml"
    path.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a, namespace: unidesk-dev}\n---\n"
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b, namespace: unidesk}\n")
    code, doc = validate("--manifest", str(path))
    assert code == 1
    assert doc["manifests"][0]["rules"] == ["K8S-SCHEMA", "E2", "D2"] and doc["manifests"][0]["ruleSets"] == []
    assert [(f["rule"], f["object"]) for f in doc["manifests"][0]["findings"]] == [("D2", "ConfigMap/b")]
    assert [n["rule"] for n in doc["manifests"][0]["notes"]] == ["RULE-SETS"]


def test_D1_unreadable_manifest_is_a_finding_not_a_crash(repo: Path) -> None:
    bad = repo / "bad.k8s.yaml"
    bad.write_text("kind: [unclosed\n")
    code, doc = validate("--manifest", str(bad), "--manifest", str(repo / "missing.k8s.yaml"))
    assert code == 1
    assert [[f["rule"] for f in m["findings"]] for m in doc["manifests"]] == [["MANIFEST-READ"], ["MANIFEST-READ"]]


def test_D1_without_config_json_or_manifest_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["validate", "--repo", str(tmp_path)], catch_exceptions=False)
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["code"] == "usage"
