"""The plan: a frozen value (STYLE 1). Apply executes exactly this and nothing else (K1).

Engine types know nothing about JSON; `engine.plan.planfile` owns the wire format. A `reason` is for
people; apply never branches on it, only on `action`, node `kind` and node `params`.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from typing import Any

import attrs

from udeploy.engine.errors import Diagnostic
from udeploy.engine.plan.plan_item import PlanItem
from udeploy.engine.plan.records import EnvironmentRecord, LiveSummary, ManifestRecord, PlanRequest
from udeploy.engine.provider_api import StepKind

FORMAT_VERSION = 1
GUARDRAIL_PREFIX = "guardrail:"  # the text of a guardrail demotion: "guardrail:E2,P7"


class Action(enum.Enum):
    NOOP = "noop"
    DEPLOY = "deploy"
    UNSUPPORTED = "unsupported"
    BLOCKED = "blocked"  # policy or a missing precondition stops it (`Blocked` says which)
    GATED = "gated"  # allowed only with a supervisor, or plan/dry-run only


class BlockedReason(enum.Enum):
    """Why a service is blocked or gated: every value the engine writes or config.json may set."""

    # config.json environments.<env>.liveApply.reason (modes blocked, plan-only, supervisor-gated)
    RUNTIME_VERIFICATION_BLOCKED = "runtime-verification-blocked"
    SUPERVISOR_GATED = "supervisor-gated"
    SUPERVISOR_ONLY_PRODUCTION_APPLY = "supervisor-only-production-apply"
    # config.json microservices[].localMode.blockedReason
    MAINTENANCE_CHANNEL_DIRECT_DEPLOY_BLOCKED = "maintenance-channel-direct-deploy-blocked"
    # the diff's own refusals and missing preconditions
    REVIEWED_ARTIFACT_CONSUMER = "reviewed-artifact-consumer"
    DISABLED_EXECUTOR = "disabled-executor"
    ARTIFACT_MISSING = "artifact-missing"
    RUNTIME_SECRETS_MISSING = "runtime-secrets-missing"
    DIGEST_PIN_REQUIRED = "digest-pin-required"
    PENDING_NETWORK_VERIFICATION = "pending-network-verification"
    MIRROR_MISSING = "mirror-missing"
    INFRA_BLOCKED = "infra-blocked"  # a provider or the registry could not be reached: an outage
    GUARDRAIL = "guardrail"  # a failing guardrail demoted a deploy: the rule is the guardrail's ID


# The requirement each reason enforces: the rule a refusal of that service names. One entry per
# reason and no default; GUARDRAIL is absent on purpose, its rule is the failing guardrail's own ID.
RULE_OF_REASON: Mapping[BlockedReason, str] = {
    BlockedReason.RUNTIME_VERIFICATION_BLOCKED: "P6",
    BlockedReason.SUPERVISOR_GATED: "P2",
    BlockedReason.SUPERVISOR_ONLY_PRODUCTION_APPLY: "P2",
    BlockedReason.MAINTENANCE_CHANNEL_DIRECT_DEPLOY_BLOCKED: "P5",
    BlockedReason.REVIEWED_ARTIFACT_CONSUMER: "P4",
    BlockedReason.DISABLED_EXECUTOR: "P11",
    BlockedReason.ARTIFACT_MISSING: "P3",
    BlockedReason.RUNTIME_SECRETS_MISSING: "P7",
    BlockedReason.DIGEST_PIN_REQUIRED: "P10",
    BlockedReason.PENDING_NETWORK_VERIFICATION: "P10",
    BlockedReason.MIRROR_MISSING: "P10",
    BlockedReason.INFRA_BLOCKED: "S1",
}
# Reasons that are an outage, not policy: refusing them is an error (exit 1), not a policy refusal.
OUTAGES = frozenset({BlockedReason.INFRA_BLOCKED})
GUARDRAIL_ID = re.compile(r"[A-Z][0-9]{1,3}")


def _guardrail_ids(b: Blocked, _: attrs.Attribute[tuple[str, ...]], ids: tuple[str, ...]) -> None:
    if (b.reason is BlockedReason.GUARDRAIL) != bool(ids):
        raise ValueError(f"{b.reason.value}: guardrail IDs go with the guardrail reason, and only with it")
    for gid in ids:
        if not GUARDRAIL_ID.fullmatch(gid):
            raise ValueError(f"{gid!r} is not a guardrail ID")


@attrs.frozen
class Blocked:
    """A blocked or gated service's reason, and the requirement that stops it."""

    reason: BlockedReason
    guardrails: tuple[str, ...] = attrs.field(default=(), validator=_guardrail_ids)  # GUARDRAIL: failing IDs

    @property
    def rule(self) -> str:
        """The requirement ID a refusal names: the first failing guardrail's, or the reason's (K4)."""
        return self.guardrails[0] if self.reason is BlockedReason.GUARDRAIL else RULE_OF_REASON[self.reason]

    @property
    def outage(self) -> bool:
        return self.reason in OUTAGES

    def __str__(self) -> str:
        """The reason as the plan item's `blockedReason` shows it: `guardrail:E2,P7` or the value."""
        if self.reason is BlockedReason.GUARDRAIL:
            return GUARDRAIL_PREFIX + ",".join(self.guardrails)
        return str(self.reason.value)

    @classmethod
    def parse(cls, text: str) -> Blocked:
        """The inverse of `str()`; ValueError for a reason this udeploy does not know."""
        if text.startswith(GUARDRAIL_PREFIX):
            return cls(BlockedReason.GUARDRAIL, tuple(text[len(GUARDRAIL_PREFIX):].split(",")))
        return cls(BlockedReason(text))


@attrs.frozen
class Node:
    id: str  # "<service>/<kind>" or "prerequisite/<name>"
    kind: StepKind
    provider: str  # provider name in the udeploy.providers registry
    host: str | None  # config.json host id the provider is built for
    service: str | None
    # Everything execute needs, fixed at plan time (apply reads only this).
    params: Mapping[str, Any] = attrs.field(factory=dict)
    # Fingerprint of the observed state this node was planned against; apply refuses when it moved.
    observed: str | None = None


@attrs.frozen
class ServiceChange:
    id: str
    action: Action
    reason: str  # for display only
    requested_commit: str
    resolved_commit: str
    item: PlanItem  # the environment plan item (O3)
    live: LiveSummary | None = None  # observed summary; None when not refreshed
    drift: str | None = None  # live state changed outside udeploy, and how
    # Why policy or a missing precondition stops it (the item's `blockedReason`); a one-step apply
    # that asks for this service is refused under `blocked.rule`.
    blocked: Blocked | None = attrs.field(default=None)

    @blocked.validator
    def _stopped_says_why(self, _: attrs.Attribute[Blocked | None], blocked: Blocked | None) -> None:
        if blocked is None and self.action in (Action.BLOCKED, Action.GATED):
            raise ValueError(f"{self.id} is {self.action.value} without a blocked reason (O2, O3)")


@attrs.frozen
class GuardrailResult:
    id: str  # the requirement it enforces, e.g. "P6"
    name: str
    passed: bool
    findings: tuple[Diagnostic, ...] = ()


@attrs.frozen
class Plan:
    format_version: int
    udeploy_version: str
    created_at: str
    mode: str  # "env" | "file"
    environment: EnvironmentRecord | None  # None in local-manifest mode
    manifest: ManifestRecord  # where the manifests were read: apply refuses when that moved
    request: PlanRequest  # apply reloads the desired state with it and re-observes
    refreshed: bool
    forced: bool
    selection: tuple[str, ...]  # the --service ids, empty for all
    services: tuple[ServiceChange, ...]
    nodes: tuple[Node, ...]
    edges: tuple[tuple[str, str], ...]
    guardrails: tuple[GuardrailResult, ...]
    diagnostics: tuple[Diagnostic, ...] = ()

    def counts(self) -> dict[str, int]:
        out = {a.value: 0 for a in Action}
        for s in self.services:
            out[s.action.value] += 1
        return out

    @property
    def has_changes(self) -> bool:
        return any(s.action is Action.DEPLOY for s in self.services)
