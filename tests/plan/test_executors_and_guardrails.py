"""E1 (executor by deployment mode), B2 (what a target is sent), K4 (guardrails named, listed, run
at plan time and again before apply mutates anything), K6 (the brief's stack and layout)."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import attrs
import yaml

from tests.conftest import Cli
from tests.sample_repo import SampleRepo
from udeploy.engine.plan.model import Node, StepKind
from udeploy.engine.plan.planfile import read_plan, write_plan

ROOT = Path(__file__).resolve().parents[2]


def nodes_by_service(doc: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for n in doc["graph"]["nodes"]:
        out.setdefault(n["service"] or n["id"], []).append(n)
    return out


def test_E1_executor_follows_deployment_mode_and_environment(shared_sample: tuple[SampleRepo, Cli]) -> None:
    _, cli = shared_sample
    prod = nodes_by_service(cli("plan", "--env", "prod", "--no-refresh").json)
    dev = nodes_by_service(cli("plan", "--env", "dev", "--no-refresh").json)
    # k3sctl-managed: native k3s executor (import into containerd, rollout)
    assert {(n["provider"], n["host"]) for n in prod["decision-center"][1:]} == {("k3s-native", "D601-k3s")}
    # unidesk-direct on main-server: the fixed Compose project on main-server
    assert {(n["provider"], n["host"]) for n in prod["backend-core"][1:]} == {("compose-host", "main-server")}
    # internal-sidecar on main-server: the same Compose executor (dev: its D601 target)
    assert {(n["provider"], n["host"]) for n in dev["code-queue-mgr"][1:]} == {("compose-host", "D601")}
    # every artifact consumer starts by checking the registry artifact
    assert all(chain[0]["kind"] == "verify-artifact" and chain[0]["provider"] == "registry"
               for chain in prod.values() if chain[0]["service"])


def test_B2_a_target_is_sent_only_repo_commit_dockerfile_context_and_declarations(sample: SampleRepo,
                                                                                  cli: Cli) -> None:
    doc = sample.deploy_json()
    local = sample.workdir / "adapter.json"
    local.write_text(json.dumps({"schemaVersion": 2, "environments": {"prod": {"services": [
        s for s in doc["environments"]["prod"]["services"] if s["id"] == "k3sctl-adapter"]}}}))
    plan = cli("plan", "--file", str(local), "--no-refresh").json
    params = {n["kind"]: n["params"] for n in plan["graph"]["nodes"]}
    assert set(params["export-source"]) <= {"repo", "commit", "context", "project"}
    assert set(params["build-image"]) <= {"dockerfile", "context", "image", "labels", "project"}
    assert "transfer-image" not in params  # no image moves between hosts on this path
    assert params["export-source"]["repo"] == "https://github.com/pikasTech/unidesk"


def test_K4_guardrails_are_listed_with_ids_and_reported_in_every_plan(shared_sample: tuple[SampleRepo, Cli]) -> None:
    _, cli = shared_sample
    listed = cli("guardrails").json["guardrails"]
    assert {"O7", "C4", "P8", "P6", "P7", "E2", "M5", "P4"} <= {g["id"] for g in listed}
    assert all(g["summary"] for g in listed)
    plan = cli("plan", "--env", "dev", "--no-refresh").json
    assert {g["name"] for g in plan["guardrails"]} == {g["name"] for g in listed}
    assert all(g["passed"] for g in plan["guardrails"])


def test_K4_E2_a_failing_guardrail_blocks_the_service_at_plan_time(sample: SampleRepo, cli: Cli) -> None:
    path = "src/components/microservices/k3sctl-adapter/k3s/dev/unidesk-dev-core.k8s.yaml"
    docs = list(yaml.safe_load_all((sample.clone / path).read_text()))
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "backend-core-dev")
    service["spec"]["type"] = "NodePort"
    sample.commit_change(path, yaml.safe_dump_all(docs), "expose backend-core-dev as NodePort")
    doc = cli("plan", "--env", "dev", "--no-refresh").json
    backend = next(s for s in doc["services"] if s["id"] == "backend-core")
    assert backend["action"] == "blocked" and backend["blockedReason"] == "guardrail:E2"
    e2 = next(g for g in doc["guardrails"] if g["id"] == "E2")
    assert e2["passed"] is False and "NodePort" in e2["findings"][0]["summary"]
    assert not [n for n in doc["graph"]["nodes"] if n["service"] == "backend-core"]


def test_K4_C4_guardrails_run_again_before_apply_mutates(shared_sample: tuple[SampleRepo, Cli],
                                                         tmp_path: Path) -> None:
    """A plan with a valid digest but a build step for an artifact consumer (as a buggy or
    hostile writer could produce) is refused at apply time, before any node runs."""
    _, cli = shared_sample
    path = tmp_path / "plan.json"
    cli("plan", "--env", "prod", "--no-refresh", "--service", "findjob", "-out", str(path))
    plan = read_plan(path)
    build = Node("findjob/build-image", StepKind.BUILD_IMAGE, "compose-host", "D601", "findjob",
                 {"dockerfile": "Dockerfile"}, None)
    evil = attrs.evolve(plan, nodes=(*plan.nodes, build), edges=(*plan.edges, ("findjob/build-image",
                                                                               plan.nodes[1].id)))
    write_plan(evil, path)
    r = cli("apply", str(path), "--state-dir", str(tmp_path / "state"))
    assert r.exit_code == 3, r.stdout
    assert r.json["error"]["rule"] == "K4" and "C4" in r.json["error"]["message"]
    assert not (tmp_path / "state" / "jobs").exists()  # refused before a job even started


def test_K6_the_briefs_stack_and_layout() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    deps = {d.split(">")[0].split("=")[0].split("[")[0].strip().lower() for d in project["dependencies"]}
    assert {"attrs", "cattrs", "networkx", "jsonschema", "gitpython", "docker", "kubernetes", "fabric",
            "typer"} <= deps
    for top in ("pyproject.toml", "engine", "providers", "schemas", "tests", "fixtures", "docs"):
        assert (ROOT / top).exists(), top
    assert project["scripts"]["udeploy"] == "udeploy.engine.cli:main"
