"""The plan is typed through and through (issue 10): the manifest source, the environment, the
request, each item and live summary are frozen values, and one converter reads and writes them.

A plan file udeploy wrote comes back as the same value; a crafted file whose digest matches but
whose nested field has the wrong type or a value outside its enum is refused as `plan-invalid`,
and the error names that field's path in the file's own keys (K1, STYLE 2)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Cli
from tests.sample_repo import SampleRepo
from udeploy.engine.plan.plan_item import DeploymentPath, PlanItem
from udeploy.engine.plan.planfile import PlanInvalid, canonical, read_plan, to_document, write_plan
from udeploy.engine.plan.records import EnvManifest, LiveSummary
from udeploy.engine.provider_api import Presence


def redigest(doc: dict[str, Any]) -> dict[str, Any]:
    doc["digest"] = "sha256:" + hashlib.sha256(canonical(doc)).hexdigest()
    return doc


@pytest.fixture(scope="module")
def prod_plan_doc(shared_sample: tuple[SampleRepo, Cli], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    _, cli = shared_sample
    path = tmp_path_factory.mktemp("typed") / "plan.json"
    assert cli("plan", "--env", "prod", "--no-refresh", "-out", str(path)).exit_code == 0
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


@pytest.mark.parametrize("refresh", [False, True], ids=["offline", "refreshed"])
def test_K1_a_plan_file_reads_back_as_the_same_typed_value(shared_sample: tuple[SampleRepo, Cli], tmp_path: Path,
                                                           refresh: bool) -> None:
    _, cli = shared_sample
    path = tmp_path / "plan.json"
    assert cli("plan", "--env", "dev", *([] if refresh else ["--no-refresh"]), "-out", str(path)).exit_code == 0
    plan = read_plan(path)
    assert isinstance(plan.manifest, EnvManifest) and plan.environment and plan.environment.name == "dev"
    assert all(isinstance(s.item, PlanItem) for s in plan.services)
    assert {s.item.deployment_path for s in plan.services} >= {DeploymentPath.ARTIFACT_CONSUMER,
                                                              DeploymentPath.UPSTREAM_IMAGE}
    if refresh:
        assert all(isinstance(s.live, LiveSummary) and isinstance(s.live.presence, Presence) for s in plan.services
                   if s.live is not None)
        assert any(s.live is not None for s in plan.services)
    assert to_document(plan) == json.loads(path.read_text())  # the same document, digest included
    again = tmp_path / "again.json"
    write_plan(plan, again)
    assert again.read_text() == path.read_text()  # byte for byte
    assert read_plan(again) == plan


def crafted(doc: dict[str, Any], tmp_path: Path, edit: Any) -> Path:
    broken = json.loads(json.dumps(doc))
    edit(broken)
    path = tmp_path / "crafted.json"
    path.write_text(json.dumps(redigest(broken)))
    return path


def live_of(presence: str) -> dict[str, Any]:
    return {"target": "main-server:unidesk/x", "presence": presence, "image": None, "commit": None,
            "fingerprint": None, "health": None}


def set_at(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


WRONG = [
    # (where in the document, the value, the path the error names)
    pytest.param(("manifest", "commit"), 5, "$.manifest.commit", id="manifest-commit-a-number"),
    pytest.param(("manifest", "ref"), 5, "$.manifest.ref", id="manifest-ref-a-number"),
    pytest.param(("manifest", "deployBlob"), ["x"], "$.manifest.deployBlob", id="manifest-blob-a-list"),
    pytest.param(("environment", "providerId"), {"a": 1}, "$.environment.providerId", id="environment-provider"),
    pytest.param(("request", "services"), [1], "$.request.services[0]", id="request-services-numbers"),
    pytest.param(("services", 0, "live"), live_of("sideways"), "$.services[0].live.presence",
                 id="live-presence-outside-the-enum"),
    pytest.param(("services", 1, "live"), {**live_of("running"), "health": {"reachable": "yes", "status": None,
                                                                             "deployCommit": None}},
                 "$.services[1].live.health.reachable", id="live-health-reachable-a-string"),
    pytest.param(("services", 0, "target", "deployCommandShape"), 7, "$.services[0].target.deployCommandShape",
                 id="item-target-a-number"),
    pytest.param(("services", 0, "artifactConsumer", "registry", "digest"), 5,
                 "$.services[0].artifactConsumer.registry.digest", id="item-registry-digest-a-number"),
    pytest.param(("services", 0, "liveApply", "mode"), "sometimes", "$.services[0].liveApply.mode",
                 id="item-live-apply-mode-outside-the-enum"),
    pytest.param(("services", 0, "validation", "checks"), "all", "$.services[0].validation.checks",
                 id="item-validation-checks-a-string"),
]


@pytest.mark.parametrize("where,value,field", WRONG)
def test_K1_a_wrongly_typed_nested_field_is_refused_with_its_path(
        prod_plan_doc: dict[str, Any], shared_sample: tuple[SampleRepo, Cli], tmp_path: Path,
        where: tuple[Any, ...], value: Any, field: str) -> None:
    _, cli = shared_sample
    r = cli("show", str(crafted(prod_plan_doc, tmp_path, lambda d: set_at(d, where, value))))
    assert r.exit_code == 4, r.stdout
    error = r.json["error"]
    assert error["code"] == "plan-invalid"
    assert error["path"].endswith("crafted.json#" + field)
    assert field in error["message"]


def test_K1_the_refusal_says_what_is_wrong_with_each_field(prod_plan_doc: dict[str, Any], tmp_path: Path) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["manifest"]["ref"] = 5
        doc["services"][2]["live"] = live_of("sideways")

    with pytest.raises(PlanInvalid) as caught:
        read_plan(crafted(prod_plan_doc, tmp_path, edit))
    assert caught.value.details["errors"] == ["invalid value for type, expected str @ $.manifest.ref",
                                              "invalid value for type, expected Presence @ $.services[2].live.presence"]


def test_K1_an_unknown_deployment_path_is_refused(prod_plan_doc: dict[str, Any], tmp_path: Path) -> None:
    path = crafted(prod_plan_doc, tmp_path, lambda d: d["services"][0].update(deploymentPath="teleport"))
    with pytest.raises(PlanInvalid, match=r"deploymentPath"):
        read_plan(path)
