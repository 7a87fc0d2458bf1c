"""What a plan records beside its services and steps: the request that made it, the manifest source
it read, the environment, and each service's observed live summary (STYLE 1).

Frozen values; `engine.plan.planfile` owns their JSON (camelCase keys). An attribute whose default
is None is a key the plan file leaves out when it does not apply.
"""

from __future__ import annotations

import enum

import attrs

from udeploy.engine.provider_api import Presence


@attrs.frozen
class PlanRequest:
    """The request that made the plan: apply reloads the desired state with it and re-observes, to
    prove nothing moved since."""

    env: str | None
    file: str | None  # the deploy.json path in local-manifest mode
    services: tuple[str, ...]
    commit: str | None  # the --commit override
    ref: str


class SourceMode(enum.Enum):
    ENV = "env"
    FILE = "file"


@attrs.frozen
class EnvManifest:
    """Environment mode: the remote ref and commit the manifests were read at, and their blobs.
    Apply refuses when the ref has moved from `commit`."""

    remote: str  # redacted: credentials never reach the plan
    ref: str
    commit: str
    deploy_blob: str | None
    config_blob: str | None
    ci_blob: str | None

    mode = SourceMode.ENV


@attrs.frozen
class FileManifest:
    """Local-manifest mode: the file read and the digests of the three manifests. Apply refuses
    when any of them changed in the working tree."""

    file: str
    sha256: str
    config_sha256: str | None
    ci_sha256: str | None

    mode = SourceMode.FILE


ManifestRecord = EnvManifest | FileManifest  # tagged by `mode` in the plan file


@attrs.frozen
class EnvironmentRecord:
    name: str  # names the apply lock's scope and the job's environment
    namespace: str
    provider_id: str | None
    database_fingerprint: str | None


@attrs.frozen
class LiveHealth:
    reachable: bool
    status: int | None
    deploy_commit: str | None


@attrs.frozen
class LiveSummary:
    """What ran for a service when the plan was made: `udeploy check` compares `presence`, `commit`
    and `health.deploy_commit` with the desired commit; a stale apply explains itself with them."""

    target: str
    presence: Presence
    image: str | None
    commit: str | None
    fingerprint: str | None
    health: LiveHealth | None
    subject: str | None = None  # the live commit's subject line, for the reviewer (K5); apply never reads it
