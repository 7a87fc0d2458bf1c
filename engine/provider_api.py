"""The provider protocol: one small typed interface, looked up by name (STYLE 4, K3).

A provider is built from one `config.json` host (or the registry settings) and answers four
calls, each with a request and a response value: `observe` (read live state, never change it),
`execute` (perform one plan step), `verify` (prove a step converged). Providers register through
the `udeploy.providers` entry-point group, so adding one needs no engine change.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import attrs

from udeploy.engine.errors import Diagnostic, UdeployError


class ProviderNotFound(UdeployError, LookupError):
    code = "provider-not-found"


class ProviderUnreachable(UdeployError, ConnectionError):
    """A host, registry or API server did not answer; the path names which."""

    code = "provider-unreachable"


def fingerprint(facts: Mapping[str, Any]) -> str:
    """A stable digest of observed facts: the plan records it, apply re-reads and compares."""
    canonical = json.dumps(facts, sort_keys=True, separators=(",", ":"), default=str)
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


@attrs.frozen
class ArtifactState:
    """An image in an OCI registry, read with HEAD/manifest/config requests only."""

    image: str
    exists: bool
    digest: str | None = None
    labels: Mapping[str, str] = attrs.field(factory=dict)
    reachable: bool = True
    error: str | None = None

    @property
    def fingerprint(self) -> str:
        return fingerprint({"image": self.image, "exists": self.exists, "digest": self.digest})


@attrs.frozen
class HealthState:
    reachable: bool
    status: int | None = None
    deploy_repo: str | None = None
    deploy_commit: str | None = None
    deploy_requested_commit: str | None = None
    auth: Mapping[str, bool] | None = None  # baidu-netdisk's /health.auth flags (booleans only)
    error: str | None = None

    def facts(self) -> dict[str, Any]:
        """The answer as a step's facts (job records, apply output): ids and booleans only."""
        return {"reachable": self.reachable, "status": self.status, "repo": self.deploy_repo,
                "commit": self.deploy_commit, "requestedCommit": self.deploy_requested_commit,
                "auth": dict(self.auth) if self.auth is not None else None, "error": self.error}


class Presence(enum.Enum):
    ABSENT = "absent"
    RUNNING = "running"
    NOT_READY = "not-ready"  # exists but not serving (e.g. ImagePullBackOff, exited container)


@attrs.frozen
class RuntimeState:
    """What runs for one service on one target: image, stamps, health."""

    target: str  # e.g. "main-server:unidesk/backend-core", "D601-k3s:unidesk-dev/Deployment/backend-core-dev"
    presence: Presence
    image: str | None = None
    image_id: str | None = None
    labels: Mapping[str, str] = attrs.field(factory=dict)  # V1 labels of the running image
    deploy_env: Mapping[str, str] = attrs.field(factory=dict)  # UNIDESK_DEPLOY_* (env or annotations)
    health: HealthState | None = None
    detail: str | None = None  # e.g. a rollout condition message
    identity: str | None = None  # container id or resourceVersion: what changes when anything changes

    @property
    def live_commit(self) -> str | None:
        return self.deploy_env.get("UNIDESK_DEPLOY_COMMIT") or self.labels.get("unidesk.ai/source-commit")

    @property
    def fingerprint(self) -> str:
        return fingerprint({"target": self.target, "presence": self.presence.value, "image": self.image,
                            "imageId": self.image_id, "identity": self.identity,
                            "commit": self.live_commit})


@attrs.frozen
class ObserveRequest:
    service_id: str
    target: Any  # ComposeTarget | K3sTarget (from engine.catalog)
    health_path: str = "/health"
    read_health: bool = True


@attrs.frozen
class StepRequest:
    """One plan node to execute; `params` are the node's recorded parameters from the plan file."""

    node_id: str
    kind: str
    service_id: str
    params: Mapping[str, Any]
    dry_run: bool = False


@attrs.frozen
class StepResult:
    ok: bool
    message: str
    facts: Mapping[str, Any] = attrs.field(factory=dict)


@runtime_checkable
class StepExecutor(Protocol):
    """Performs plan steps. Every provider that owns a node kind implements it."""

    def execute(self, request: StepRequest) -> StepResult: ...


@runtime_checkable
class Provider(StepExecutor, Protocol):
    """A runtime provider (compose-host, k3s-native): reads a service's live state, runs its steps,
    proves they converged."""

    name: ClassVar[str]

    def observe(self, request: ObserveRequest) -> RuntimeState: ...

    def verify(self, request: StepRequest) -> StepResult: ...


# Capabilities the engine asks some providers for, beside the core protocol. The pool checks them
# when it hands a provider out, so a provider without one fails with a clear error.

@runtime_checkable
class ArtifactReader(Protocol):
    """Reads an artifact from an OCI registry (digest and config labels, never layers)."""

    def artifact(self, image: str) -> ArtifactState: ...


@runtime_checkable
class SecretReader(Protocol):
    """P7: key names, booleans and lengths of a host's secret source; never a value."""

    def secret_presence(self, source: str, keys: list[str], project: str) -> Mapping[str, Any]: ...


@runtime_checkable
class RuntimeChecks(Protocol):
    """E3 and E5, run by `udeploy check` on a k3s host."""

    def pause_image_check(self, image: str | None = None) -> dict[str, Any]: ...

    def code_queue_diagnostics(self, namespace: str, deployments: Sequence[str], scheduler_service: str,
                               scheduler_port: int | str | None = None, health_path: str = "/health"
                               ) -> dict[str, Any]: ...


class ProviderCapabilityMissing(UdeployError, TypeError):
    code = "provider-capability-missing"


def provider_class(name: str) -> type[Any]:
    """The provider registered under `name` in the `udeploy.providers` entry-point group."""
    for ep in entry_points(group="udeploy.providers"):
        if ep.name == name:
            return ep.load()  # type: ignore[no-any-return]
    raise ProviderNotFound(f"no provider named {name!r} is installed (entry-point group udeploy.providers)",
                           path=name)


# --- `udeploy validate`'s capabilities: the db guard run (D5) and the Kubernetes dry run ------------
# Both are opened with the operator's settings, run once per manifest (or object) and closed. A
# manifest's objects are `engine.load.k8s_manifest.K8sObject` values; they are `Any` here because
# this protocol sits below the load phase.

@runtime_checkable
class DbGuardRunner(Protocol):
    """D5: runs a manifest's db-guard script away from this machine; whatever goes wrong is a finding."""

    @classmethod
    def open(cls, docker_host: str | None, skip: bool) -> Self:
        """`docker_host` is the operator's engine (None: the standard docker environment); `skip` is
        the operator's `--skip-db-guard`."""
        ...

    def run(self, path: str, objects: Sequence[Any]) -> tuple[dict[str, Any], list[Diagnostic]]:
        """The report for one manifest's `dbGuard` entry, and its D5 findings."""
        ...

    def close(self) -> None: ...


@runtime_checkable
class ManifestDryRunner(Protocol):
    """Dry-runs manifest objects against one Kubernetes API, or checks them client-side and says so."""

    header: dict[str, Any]  # the report's `dryRun` header: kubeconfig, source, server, mode, reason, note

    @classmethod
    def open(cls, kubeconfig: Path | None, source: str, creating: frozenset[str],
             say: Callable[[str], None]) -> Self:
        """`source` says where `kubeconfig` came from; `creating` names the namespaces the validated
        manifests create (an object in one of them is not a missing-namespace failure)."""
        ...

    def run(self, obj: Any) -> dict[str, str]:
        """One object's outcome: `object`, `outcome` (`rejected` is a finding), `message`."""
        ...

    def close(self) -> None: ...
