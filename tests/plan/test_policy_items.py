"""The reviewed policy as the plan states it, offline (O4): P1, P2, P5, P6, P8, P11, O2, O3, K2."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from tests.conftest import Cli
from tests.sample_repo import SampleRepo
from udeploy.engine.plan.graph import Graph

P1_DEV = ["backend-core", "frontend", "baidu-netdisk", "decision-center", "mdtodo", "claudeqq", "code-queue",
          "project-manager", "oa-event-flow", "code-queue-mgr", "todo-note", "findjob", "pipeline", "met-nonlinear"]
P2_PROD = ["backend-core", "frontend", "baidu-netdisk", "decision-center", "mdtodo", "claudeqq", "project-manager",
           "oa-event-flow", "todo-note", "findjob", "pipeline", "met-nonlinear"]
CASES = Path(__file__).resolve().parents[1] / "cases"


def items(cli: Cli, env: str, *extra: str) -> dict[str, dict]:
    r = cli("plan", "--env", env, "--no-refresh", *extra)
    assert r.exit_code == 0, r.stdout
    return {s["id"]: s for s in r.json["services"]}


def test_P1_dev_apply_is_enabled_for_the_reviewed_consumers(shared_sample: tuple[SampleRepo, Cli]) -> None:
    dev = items(shared_sample[1], "dev")
    for sid in P1_DEV:
        if sid == "met-nonlinear":
            continue  # enabled for dev apply, but live apply stays blocked (P6)
        assert dev[sid]["liveApply"]["allowed"] is True, sid
        assert dev[sid]["action"] == "deploy", sid
        assert dev[sid]["deploymentPath"] == "artifact-consumer"
        assert dev[sid]["artifactConsumer"]["noRuntimeSourceBuild"] is True
        assert dev[sid]["artifactConsumer"]["registryImage"].startswith(f"127.0.0.1:5000/unidesk/{sid}:")


def test_O3_consumer_kinds_and_never_target_side_build_for_backend_core(shared_sample: tuple[SampleRepo, Cli]) -> None:
    dev, prod = items(shared_sample[1], "dev"), items(shared_sample[1], "prod")
    assert dev["backend-core"]["artifactConsumer"]["consumerKind"] == "d601-k3s-managed"
    assert prod["backend-core"]["artifactConsumer"]["consumerKind"] == "main-server-compose"
    assert dev["findjob"]["artifactConsumer"]["consumerKind"] == "d601-direct-compose"
    kinds = {s["artifactConsumer"]["consumerKind"] for s in [*dev.values(), *prod.values()]}
    assert kinds <= {"d601-direct-compose", "d601-k3s-managed", "main-server-compose", "unsupported"}
    for item in [dev["backend-core"], prod["backend-core"]]:
        assert "docker build" in item["artifactConsumer"]["build"]["forbiddenActions"]
        assert item["target"]["deployCommandShape"].startswith("udeploy apply --env")
        assert item["validation"]["checks"]


def test_P2_prod_matrix(shared_sample: tuple[SampleRepo, Cli]) -> None:
    prod = items(shared_sample[1], "prod")
    for sid in P2_PROD:
        if sid != "met-nonlinear":
            assert prod[sid]["liveApply"]["allowed"] is True, sid
    assert prod["code-queue"]["action"] == "unsupported"
    mgr = prod["code-queue-mgr"]
    assert mgr["action"] == "gated" and mgr["blockedReason"] == "supervisor-gated"
    assert mgr["liveApply"]["allowed"] is False
    assert mgr["target"]["compose"]["service"] == "code-queue-mgr"
    assert set(mgr["excludedTargets"]) >= {"D601 Code Queue scheduler", "D601 Code Queue runner", "queued tasks",
                                           "task interrupts", "task cancellations"}
    adapter = prod["k3sctl-adapter"]
    assert adapter["action"] == "gated" and adapter["dryRunOnly"] is True
    assert adapter["blockedReason"] == "supervisor-only-production-apply"


def test_P6_met_nonlinear_is_blocked_with_dry_run_only(shared_sample: tuple[SampleRepo, Cli]) -> None:
    for env in ("dev", "prod"):
        met = items(shared_sample[1], env)["met-nonlinear"]
        assert met["action"] == "blocked"
        assert met["dryRunOnly"] is True and met["artifactConsumer"]["dryRunOnly"] is True
        assert met["blockedReason"] == "runtime-verification-blocked"
        assert met["liveApply"]["allowed"] is False


def test_P8_code_queue_boundary_dev_and_prod(shared_sample: tuple[SampleRepo, Cli]) -> None:
    dev = items(shared_sample[1], "dev", "--service", "code-queue")["code-queue"]
    assert dev["boundary"]["ciProducer"]["mayPublish"] == ["127.0.0.1:5000/unidesk/code-queue:<commit>"]
    assert dev["boundary"]["devCdConsumer"]["namespace"] == "unidesk-dev"
    assert set(dev["boundary"]["devCdConsumer"]["objects"]) == {
        "code-queue-scheduler-dev", "code-queue-read-dev", "code-queue-write-dev", "d601-dev-provider-egress-proxy"}
    assert dev["target"]["namespace"] == "unidesk-dev"
    prod = items(shared_sample[1], "prod", "--service", "code-queue")["code-queue"]
    assert prod["deploymentPath"] == "unsupported"
    assert prod["artifactConsumer"]["consumerKind"] == "unsupported"
    assert prod["target"]["deployCommandShape"] == "none"
    assert prod["liveApply"]["allowed"] is False
    assert "k3s" not in prod["target"] and "host" not in prod["target"]  # no executable production target
    assert "supervisor-approved design" in prod["boundary"]["productionCd"]
    assert set(prod["boundary"]["runnerMayNot"]) == {"self-deploy", "mutate the production namespace",
                                                     "restart scheduler/runner", "interrupt or cancel tasks"}


def _local_file(sample: SampleRepo, env: str) -> Path:
    doc = sample.deploy_json()
    path = sample.workdir / f"{env}-local.json"
    path.write_text(json.dumps({"schemaVersion": 2, "environments": {env: doc["environments"][env]}}))
    return path


def test_P5_P11_local_mode_direct_class(sample: SampleRepo, cli: Cli) -> None:
    config = json.loads((sample.clone / "config.json").read_text())
    for m in config["microservices"]:
        if m["id"] == "findjob":
            m["reviewedArtifactConsumer"] = False  # leave only the provider-host executor rule in its way
    sample.commit_change("config.json", json.dumps(config, indent=2), "findjob not reviewed")
    r = cli("plan", "--file", str(_local_file(sample, "prod")), "--no-refresh")
    got = {s["id"]: s for s in r.json["services"]}
    assert got["findjob"]["action"] == "blocked" and got["findjob"]["blockedReason"] == "disabled-executor"  # P11
    for sid in ("code-queue", "decision-center", "mdtodo", "claudeqq"):  # P5
        assert got[sid]["blockedReason"] == "maintenance-channel-direct-deploy-blocked", sid
    adapter = got["k3sctl-adapter"]  # the only direct-service exception, still a direct-class service
    assert adapter["action"] == "deploy" and adapter["deploymentPath"] == "target-side-build"
    kinds = [n["kind"] for n in r.json["graph"]["nodes"] if n["service"] == "k3sctl-adapter"]
    assert kinds == ["export-source", "build-image", "stamp", "recreate", "verify-live"]


def test_K2_graph_order_as_a_text_tree(sample: SampleRepo, cli: Cli) -> None:
    doc = cli("plan", "--env", "dev", "--no-refresh").json
    g = Graph()
    for n in doc["graph"]["nodes"]:
        g.add(n["id"])
    for a, b in doc["graph"]["edges"]:
        g.connect(a, b)
    tree = g.text_tree() + "\n"
    path = CASES / "plan" / "graph-dev" / "expected-graph.txt"
    if os.environ.get("UDEPLOY_UPDATE_GOLDEN"):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(tree)
    assert tree == path.read_text()
    # the dev foundation comes before dev core; frontend waits for backend-core's verification
    assert g.upstream("backend-core/import-image") == ["backend-core/verify-artifact", "prerequisite/dev-foundation"]
    assert "backend-core/verify-live" in g.upstream("frontend/import-image")


@pytest.mark.parametrize("fmt", ["text", "markdown"])
def test_O2_every_service_has_an_action_in_human_renderings(shared_sample: tuple[SampleRepo, Cli], fmt: str) -> None:
    r = shared_sample[1]("plan", "--env", "prod", "--no-refresh", "--format", fmt)
    assert r.exit_code == 0
    for sid in P2_PROD + ["code-queue", "code-queue-mgr", "k3sctl-adapter"]:
        assert sid in r.stdout
