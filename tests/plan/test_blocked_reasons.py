"""Every blocked reason names its requirement (O2, O3, O7, K4): one table in the plan model, no
default, and a guardrail demotion names the failing guardrail itself (issue 10).

A one-step `apply --env/--file --service X` of a service policy stops is refused under the rule of
that service's reason: P2, P3, P4, P5, P6, P7, P10, P11, the guardrail's own ID (E2, C4, ...), and
S1 for `infra-blocked`, which is an outage (exit 1), not a policy refusal (exit 3).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import yaml

from tests.conftest import Cli
from tests.plan.plan_values import SHA, env_manifest, environment, item, request
from tests.sample_repo import SampleRepo
from udeploy.engine.apply.refusal import InfraBlocked, refuse_policy
from udeploy.engine.errors import ExitCode, PolicyRefused
from udeploy.engine.load.desired import Request
from udeploy.engine.plan.model import RULE_OF_REASON, Action, Blocked, BlockedReason, Plan, ServiceChange
from udeploy.engine.plan.planfile import PlanInvalid, canonical, read_plan, to_document, write_plan
from udeploy.engine.plan.planner import PlanOptions, make_plan

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
ITEM = item(allowed=False)

# reason -> the requirement a refusal of it names, written out here independently of the table
EXPECTED = [
    (BlockedReason.SUPERVISOR_GATED, "P2"),
    (BlockedReason.SUPERVISOR_ONLY_PRODUCTION_APPLY, "P2"),
    (BlockedReason.ARTIFACT_MISSING, "P3"),
    (BlockedReason.REVIEWED_ARTIFACT_CONSUMER, "P4"),
    (BlockedReason.MAINTENANCE_CHANNEL_DIRECT_DEPLOY_BLOCKED, "P5"),
    (BlockedReason.RUNTIME_VERIFICATION_BLOCKED, "P6"),
    (BlockedReason.RUNTIME_SECRETS_MISSING, "P7"),
    (BlockedReason.DIGEST_PIN_REQUIRED, "P10"),
    (BlockedReason.PENDING_NETWORK_VERIFICATION, "P10"),
    (BlockedReason.MIRROR_MISSING, "P10"),
    (BlockedReason.DISABLED_EXECUTOR, "P11"),
    (BlockedReason.INFRA_BLOCKED, "S1"),
]
BY_REASON = [pytest.param(reason, rule, id=f"{rule}-{reason.value}", marks=pytest.mark.req(rule))
             for reason, rule in EXPECTED]


def one_service_plan(blocked: Blocked, action: Action = Action.BLOCKED, mode: str = "env") -> Plan:
    service = ServiceChange(id="svc", action=action, reason="stopped", requested_commit=SHA,
                            resolved_commit=SHA, item=ITEM, blocked=blocked)
    return Plan(format_version=1, udeploy_version="t", created_at="t", mode=mode,
                environment=environment(), manifest=env_manifest(), request=request("svc"),
                refreshed=True, forced=False, selection=("svc",), services=(service,), nodes=(), edges=(),
                guardrails=())


def test_O2_K4_every_reason_has_exactly_one_rule_and_guardrails_have_none_in_the_table() -> None:
    assert set(RULE_OF_REASON) == set(BlockedReason) - {BlockedReason.GUARDRAIL}
    assert {r for r, _ in EXPECTED} == set(RULE_OF_REASON)


@pytest.mark.parametrize("reason,rule", BY_REASON)
def test_O7_a_one_step_apply_of_a_blocked_service_is_refused_under_its_reasons_rule(
        reason: BlockedReason, rule: str) -> None:
    plan = one_service_plan(Blocked(reason))
    with pytest.raises((PolicyRefused, InfraBlocked)) as caught:
        refuse_policy(plan, ("svc",), dry_run=False)
    err = caught.value
    assert err.to_json()["error"]["rule"] == rule
    assert err.to_json()["error"]["details"]["service"]["blockedReason"] == reason.value
    if reason is BlockedReason.INFRA_BLOCKED:  # an outage, not policy (DESIGN: exit 1 when a provider is down)
        assert isinstance(err, InfraBlocked) and err.exit_code is ExitCode.ERROR and err.code == "infra-blocked"
    else:
        assert isinstance(err, PolicyRefused) and err.exit_code is ExitCode.POLICY_REFUSED


@pytest.mark.req("K4")
@pytest.mark.parametrize("ids,rule", [(("E2",), "E2"), (("C4", "P7"), "C4"), (("P8",), "P8")])
def test_K4_E2_a_guardrail_demotion_is_refused_under_the_failing_guardrails_id(ids: tuple[str, ...],
                                                                               rule: str) -> None:
    blocked = Blocked(BlockedReason.GUARDRAIL, ids)
    assert str(blocked) == "guardrail:" + ",".join(ids) and Blocked.parse(str(blocked)) == blocked
    with pytest.raises(PolicyRefused) as caught:
        refuse_policy(one_service_plan(blocked), ("svc",), dry_run=False)
    assert caught.value.rule == rule


def test_P2_a_gated_service_is_left_alone_by_a_dry_run() -> None:
    refuse_policy(one_service_plan(Blocked(BlockedReason.SUPERVISOR_GATED), Action.GATED), ("svc",), dry_run=True)


def test_P4_local_mode_refuses_a_reviewed_consumer_even_when_not_asked_by_name() -> None:
    plan = one_service_plan(Blocked(BlockedReason.REVIEWED_ARTIFACT_CONSUMER), mode="file")
    with pytest.raises(PolicyRefused) as caught:
        refuse_policy(plan, (), dry_run=True)
    assert caught.value.rule == "P4"


def test_O3_a_blocked_or_gated_service_cannot_lose_its_reason() -> None:
    for action in (Action.BLOCKED, Action.GATED):
        with pytest.raises(ValueError, match="without a blocked reason"):
            ServiceChange(id="svc", action=action, reason="r", requested_commit=SHA, resolved_commit=SHA, item=ITEM)
    with pytest.raises(ValueError):
        Blocked(BlockedReason.GUARDRAIL)  # a guardrail demotion names its guardrails
    with pytest.raises(ValueError):
        Blocked(BlockedReason.ARTIFACT_MISSING, ("E2",))
    with pytest.raises(ValueError):
        Blocked.parse("guardrail:E2,<script>")


@pytest.mark.parametrize("blocked", [Blocked(r) for r, _ in EXPECTED] + [Blocked(BlockedReason.GUARDRAIL, ("E2",))],
                         ids=str)
def test_K1_the_plan_file_keeps_the_blocked_reason_string_on_the_wire(blocked: Blocked, tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    doc = write_plan(one_service_plan(blocked), path)
    assert doc["services"][0]["blockedReason"] == str(blocked)
    assert read_plan(path).services[0].blocked == blocked


def _resigned(doc: dict, path: Path) -> Path:
    doc["digest"] = "sha256:" + hashlib.sha256(canonical(doc)).hexdigest()
    path.write_text(json.dumps(doc))
    return path


@pytest.mark.parametrize("value", ["policy-says-no", "guardrail", "guardrail:", "guardrail:e2", None])
def test_K1_a_plan_file_with_a_reason_udeploy_does_not_know_is_invalid(value: str | None, tmp_path: Path) -> None:
    doc = to_document(one_service_plan(Blocked(BlockedReason.ARTIFACT_MISSING)))
    if value is None:
        del doc["services"][0]["blockedReason"]  # blocked, and no reason: O3 says it keeps one
    else:
        doc["services"][0]["blockedReason"] = value
    with pytest.raises(PlanInvalid):
        read_plan(_resigned(doc, tmp_path / "plan.json"))


def test_O3_the_schemas_allow_exactly_the_enums_values() -> None:
    values = {r.value for r in BlockedReason} - {"guardrail"}
    config = json.loads((SCHEMAS / "config.schema.json").read_text())
    assert set(config["$defs"]["blockedReason"]["enum"]) == values
    plan = json.loads((SCHEMAS / "plan.schema.json").read_text())
    reason = plan["properties"]["services"]["items"]["properties"]["blockedReason"]
    assert set(reason["anyOf"][0]["enum"]) == values


@pytest.mark.req("P6")
def test_P6_config_json_cannot_gate_live_apply_with_a_free_text_reason(sample: SampleRepo, cli: Cli) -> None:
    config = json.loads((sample.clone / "config.json").read_text())
    met = next(m for m in config["microservices"] if m["id"] == "met-nonlinear")
    met["environments"]["dev"]["liveApply"]["reason"] = "ask Bob first"
    sample.commit_change("config.json", json.dumps(config, indent=2), "free-text blocked reason")
    r = cli("plan", "--env", "dev", "--no-refresh")
    assert r.exit_code == 1 and r.json["error"]["code"] == "manifest-invalid", r.stdout
    assert "liveApply" in r.json["error"]["path"] or "liveApply" in r.json["error"]["message"], r.stdout


def _offline(sample: SampleRepo, env: str, *services: str) -> Plan:
    request = Request(env=env, file=None, services=services, commit=None, checkout=sample.clone)
    return make_plan(request, PlanOptions(refresh=False)).plan


@pytest.mark.req("P6")
@pytest.mark.req("P2")
@pytest.mark.req("P10")
def test_P2_P6_P10_planned_blocked_services_are_refused_under_their_rules(sample: SampleRepo) -> None:
    for env, service, rule in [("dev", "met-nonlinear", "P6"), ("prod", "code-queue-mgr", "P2"),
                               ("dev", "k3sctl-adapter", "P2"), ("prod", "filebrowser", "P10")]:
        plan = _offline(sample, env, service)
        with pytest.raises(PolicyRefused) as caught:
            refuse_policy(plan, (service,), dry_run=False)
        assert caught.value.rule == rule, (service, caught.value.message)


@pytest.mark.req("E2")
@pytest.mark.req("K4")
def test_K4_E2_a_nodeport_demotion_is_refused_as_E2_not_P2(sample: SampleRepo) -> None:
    path = "src/components/microservices/k3sctl-adapter/k3s/dev/unidesk-dev-core.k8s.yaml"
    docs = list(yaml.safe_load_all((sample.clone / path).read_text()))
    service = next(d for d in docs if d["kind"] == "Service" and d["metadata"]["name"] == "backend-core-dev")
    service["spec"]["type"] = "NodePort"
    sample.commit_change(path, yaml.safe_dump_all(docs), "expose backend-core-dev as NodePort")
    plan = _offline(sample, "dev", "backend-core")
    [backend] = plan.services
    assert backend.blocked == Blocked(BlockedReason.GUARDRAIL, ("E2",))
    with pytest.raises(PolicyRefused) as caught:
        refuse_policy(plan, ("backend-core",), dry_run=False)
    assert caught.value.rule == "E2"
