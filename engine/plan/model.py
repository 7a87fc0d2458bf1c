"""The plan: a frozen value (STYLE 1). Apply executes exactly this and nothing else (K1).

Engine types know nothing about JSON; `engine.planfile` owns the wire format. A `reason` is for
people; apply never branches on it, only on `action`, node `kind` and node `params`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from udeploy.engine.errors import Diagnostic

FORMAT_VERSION = 1


class Action(enum.Enum):
    NOOP = "noop"
    DEPLOY = "deploy"
    UNSUPPORTED = "unsupported"
    BLOCKED = "blocked"  # policy or a missing precondition stops it (blockedReason says which)
    GATED = "gated"  # allowed only with a supervisor, or plan/dry-run only


class StepKind(enum.Enum):
    APPLY_PREREQUISITE = "apply-prerequisite"  # e.g. the dev foundation manifest
    VERIFY_ARTIFACT = "verify-artifact"  # registry: the commit image exists, labels match (C2, C3)
    TRANSFER_IMAGE = "transfer-image"  # compose host: pull or stream the artifact, retag (C3)
    IMPORT_IMAGE = "import-image"  # k3s: ctr images import into the k3s containerd (C2)
    EXPORT_SOURCE = "export-source"  # target-side build: git archive of the commit (B1)
    BUILD_IMAGE = "build-image"  # target-side build only, never for an artifact consumer (C4)
    GUARD_SOURCE = "guard-source"  # code-queue hostPath import guard (G1)
    APPLY_OBJECTS = "apply-objects"  # k3s: only the selected objects of the manifest
    STAMP = "stamp"  # UNIDESK_DEPLOY_* env / annotations (V2)
    RECREATE = "recreate"  # compose: up -d --no-build --no-deps --force-recreate <service>
    ROLLOUT = "rollout"  # k3s: wait for the Deployment rollout
    VERIFY_LIVE = "verify-live"  # the running service reports the requested commit (V4)


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
    item: Mapping[str, Any]  # the environment plan item fields (O3), already JSON-shaped
    live: Mapping[str, Any] | None = None  # observed summary; None when not refreshed
    drift: str | None = None  # live state changed outside udeploy, and how


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
    environment: Mapping[str, Any] | None
    manifest: Mapping[str, Any]  # remote, ref, commit, blobs: apply refuses when the ref moved
    # The request that made the plan (env/file, services, commit override, ref): apply reloads the
    # desired state with it and re-observes, to prove nothing moved since.
    request: Mapping[str, Any]
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
