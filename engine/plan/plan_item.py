"""The environment plan item of one service (O3): the typed value `engine.plan.items` builds and a
reviewer reads in the plan file, beside the service's id, action and reason.

Frozen values; `engine.plan.planfile` owns their JSON (camelCase keys). An attribute whose default
is None is a key the plan file leaves out when it does not apply.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import attrs

from udeploy.engine.load.catalog import LiveApplyMode


class DeploymentPath(enum.Enum):
    ARTIFACT_CONSUMER = "artifact-consumer"
    UPSTREAM_IMAGE = "upstream-image"
    TARGET_SIDE_BUILD = "target-side-build"
    UNSUPPORTED = "unsupported"


@attrs.frozen
class RegistryRecord:
    address: str
    repository: str
    tag: str
    digest: str | None  # read at plan time when refreshed and the artifact exists
    digest_provenance: str | None
    role: str


@attrs.frozen
class SourceRecord:
    repo: str
    commit: str
    requested_commit: str
    dockerfile: str | None
    commit_override: bool  # --commit replaced the manifest's pin
    subject: str | None = None  # the commit's subject line, for the reviewer (K5); apply never reads it


@attrs.frozen
class BuildRecord:
    producer: str
    where: str
    forbidden_actions: tuple[str, ...]


@attrs.frozen
class UpstreamRecord:
    artifact: str
    upstream_image: str
    upstream_source_revision: str | None
    digest_pin: str | None
    mirror: str
    pull_by: str
    local_image_id_is_a_pin: bool


@attrs.frozen
class ArtifactConsumer:
    # Not an enum: config.json accepts `x-<name>` consumer kinds for out-of-tree providers.
    consumer_kind: str  # "unsupported" for an item with no executable target (P8)
    registry_image: str | None
    registry: RegistryRecord
    source: SourceRecord
    build: BuildRecord
    no_runtime_source_build: bool
    dry_run_only: bool
    # The secret provider's own report (names, booleans and lengths), or the config's secret source
    # before a refresh: its keys are the provider's, so it stays a mapping; the P7 guardrail walks it.
    runtime_secrets: Mapping[str, Any] | None = None
    upstream: UpstreamRecord | None = None


@attrs.frozen
class ComposeRecord:
    project: str
    service: str
    file: str
    image: str
    recreate: str


@attrs.frozen
class K3sRecord:
    manifest: str
    objects: tuple[str, ...]
    stamp_deployments: tuple[str, ...]
    import_image: str
    health_service: str


@attrs.frozen
class TargetRecord:
    namespace: str | None
    provider_id: str | None
    database_fingerprint: str | None
    deploy_command_shape: str  # "none" when nothing may be deployed (P8)
    host: str | None = None  # the rest only for an item with an executable target
    compose: ComposeRecord | None = None
    k3s: K3sRecord | None = None


@attrs.frozen(kw_only=True)  # `via` comes first in the file, before the required `checks`
class Validation:
    via: str | None = None
    checks: tuple[str, ...]
    note: str | None = None  # why nothing is checked (an unsupported item)
    requested_commit: str | None = None


@attrs.frozen
class LiveApplyRecord:
    allowed: bool
    mode: LiveApplyMode
    reason: str | None


@attrs.frozen
class PlanItem:
    deployment_path: DeploymentPath
    artifact_consumer: ArtifactConsumer
    target: TargetRecord
    validation: Validation
    live_apply: LiveApplyRecord
    # config.json's environment boundary, copied for the reviewer and never read by the engine:
    # its keys are the operator's, so it stays a mapping.
    boundary: Mapping[str, Any] | None = None
    excluded_targets: tuple[str, ...] | None = None
    dry_run_only: bool | None = None  # present for the gating live-apply modes (P6)
