"""The provider protocol: small typed interfaces, looked up by name (STYLE 4, K3).

A provider is registered under a name in the `udeploy.providers` entry-point group and built for
one `config.json` host (or none). What the engine may ask of it is a capability, a `Protocol`
checked at run time (`capable`) when the provider is handed out:

- `Provider`, a runtime (compose-host, k3s-native): `observe` (read the live state of a batch of
  services on its host in one call, never change it), `plan_steps` (one service's step chain, from
  its desired state), `execute` (perform one step);
- `StepExecutor` (`execute` alone), `ArtifactReader` (registry reads, one image or a batch),
  `SecretReader` (P7 presence), `RuntimeChecks` (E3, E5);
- `SourceReader` (git objects at a ref), `ImagePublisher` (C1), `ImageMirror` (P10);
- `DbGuardRunner` (D5, sandboxed) and `ManifestDryRunner` (the API dry run) for `validate`.

Each call takes and returns attrs values; the engine never imports a provider module, so a new
provider needs no engine change.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol, Self, TypeVar, runtime_checkable

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


class StepKind(enum.Enum):
    """What a plan step does. The vocabulary is shared: the engine plans `verify-artifact` and
    `apply-prerequisite` itself, a provider's `plan_steps` picks the others, and guardrails and the
    apply walk read a step's kind, never its provider."""

    APPLY_PREREQUISITE = "apply-prerequisite"  # e.g. the dev foundation manifest
    VERIFY_ARTIFACT = "verify-artifact"  # registry: the commit image exists, labels match (C2, C3)
    TRANSFER_IMAGE = "transfer-image"  # a Docker engine: pull or stream the artifact, retag (C3)
    IMPORT_IMAGE = "import-image"  # k3s: ctr images import into the k3s containerd (C2)
    EXPORT_SOURCE = "export-source"  # target-side build: git archive of the commit (B1)
    BUILD_IMAGE = "build-image"  # target-side build only, never for an artifact consumer (C4)
    GUARD_SOURCE = "guard-source"  # code-queue hostPath import guard (G1)
    APPLY_OBJECTS = "apply-objects"  # k3s: only the selected objects of the manifest
    STAMP = "stamp"  # UNIDESK_DEPLOY_* env / annotations (V2)
    RECREATE = "recreate"  # replace the running container(s) with the new image
    ROLLOUT = "rollout"  # k3s: wait for the Deployment rollout
    VERIFY_LIVE = "verify-live"  # the running service reports the requested commit (V4)


@attrs.frozen
class ArtifactRef:
    """The verified image a deploy runs (C2, C3): what the registry step checked, so the runtime
    steps pull exactly it and verify-live can prove the container runs it."""

    image: str  # registry reference (`host:port/repo:tag`, or `…@sha256:…` for a P10 mirror)
    labels: Mapping[str, str]  # the labels it must carry (V1, or the upstream artifact's OCI labels)
    digest: str | None = None  # P10: the pinned manifest digest; None for our own builds


@attrs.frozen
class DeployRequest:
    """One deploying service, as the engine joined it: the input of `Provider.plan_steps`."""

    service: Any  # engine.load.desired.DesiredService: ids, commits, the catalog entry, the environment
    target: Any  # engine.load.catalog.Target: the host and the provider's own target section
    artifact: ArtifactRef | None  # None: built on the target from source (B1-B4, local-manifest mode)
    manifest_commit: str | None  # the commit config.json and the manifests were read at (M7)
    manifest_remote: str | None  # the remote they were read from (redacted); None for a local manifest


@attrs.frozen
class PlannedStep:
    """One step of a service's chain; the engine names it `<service>/<kind>` and runs the chain in order."""

    kind: StepKind
    params: Mapping[str, Any]  # everything `execute` needs, JSON-shaped: it is written to the plan file


@attrs.frozen
class ObserveRequest:
    """One service to read in an `observe` batch."""

    service_id: str  # the key of its answer
    # engine.load.catalog.Target (typed Any: this module sits below engine.load): the host and every
    # provider's section; a provider reads its own (`.compose`, `.k3s` or `.settings`).
    target: Any
    health_path: str = "/health"
    read_health: bool = True


@attrs.frozen
class StepRequest:
    """One plan node to execute; `params` are the node's recorded parameters from the plan file."""

    node_id: str
    kind: StepKind = attrs.field(converter=StepKind)
    service_id: str
    params: Mapping[str, Any]
    dry_run: bool = False


@attrs.frozen
class StepResult:
    ok: bool
    message: str
    facts: Mapping[str, Any] = attrs.field(factory=dict)
    # For apply's resume record, so that it need not read the service again after the step:
    # `runtime`, the service's state as the step left it, as `Provider.observe` would answer it in
    # everything `RuntimeState.fingerprint` covers (health and `detail` need not be read), when the
    # step had it at hand; or `runtime_untouched`, the step changed nothing
    # `RuntimeState.fingerprint` covers (it pulled or tagged images or wrote files that no running
    # container or Deployment reads yet), so the fingerprint apply holds still stands. A provider
    # that is unsure sets neither (a wrong answer can only make a resume refuse as stale).
    runtime: RuntimeState | None = None
    runtime_untouched: bool = False


@runtime_checkable
class StepExecutor(Protocol):
    """Performs plan steps. Every provider that owns a node kind implements it."""

    def execute(self, request: StepRequest) -> StepResult: ...


@runtime_checkable
class Provider(StepExecutor, Protocol):
    """A runtime provider (compose-host, k3s-native, or one installed from elsewhere): reads the
    live state of the services on its host, plans the steps that deploy one of them, runs them."""

    name: ClassVar[str]

    def observe(self, requests: Sequence[ObserveRequest], *, parallelism: int = 10) -> Mapping[str, RuntimeState]:
        """The live state of every requested service on this provider's host, keyed by service id,
        read in one call so that a provider can list once (a Compose project, a namespace) instead of
        object by object, with at most `parallelism` reads in flight. A service the provider cannot
        find is `Presence.ABSENT`; a host that does not answer raises `ProviderUnreachable`."""
        ...

    @classmethod
    def plan_steps(cls, request: DeployRequest) -> Sequence[PlannedStep]:
        """The chain that takes one service from what runs to `request`, in order, ending in a
        `verify-live` step that proves the running service reports the requested commit (V4).
        A class method and pure: it reads nothing and connects nowhere, so an offline plan gets the
        same chain as a refreshed one."""
        ...


# Capabilities the engine asks some providers for, beside the core protocol. The pool checks them
# when it hands a provider out, so a provider without one fails with a clear error.

@runtime_checkable
class ArtifactReader(Protocol):
    """Reads OCI registries: digests and config labels, never layers. An image reference that names
    its registry (`host:port/repo:tag`) is read there; otherwise the provider's own registry."""

    def artifact(self, image: str, *, refresh: bool = False) -> ArtifactState:
        """Digest and config labels; `refresh` skips what this reader already read."""
        ...

    def artifacts(self, images: Sequence[str], *, parallelism: int = 10) -> Mapping[str, ArtifactState]:
        """`artifact` of every image, keyed by image: one keep-alive session, at most `parallelism`
        reads in flight. Like `artifact`, a registry that does not answer is a value, not an error."""
        ...

    def head(self, image: str) -> ArtifactState:
        """Existence and manifest digest only (no labels): the cheapest read."""
        ...

    def health(self, registry: str | None = None) -> bool:
        """Whether `registry` (default: the provider's own) answers the distribution API."""
        ...


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


@attrs.frozen
class SourceFile:
    """A file read from a remote's git objects, with the evidence of where it came from."""

    path: str
    data: bytes
    blob_sha: str
    commit: str


@runtime_checkable
class SourceReader(Protocol):
    """Reads source repositories from their remotes, never a working tree (M5, M7). `url` is a
    repository URL `engine.load.repo_url` accepted; errors name `path` (or the redacted URL)."""

    def ref_commit(self, url: str, ref: str) -> str:
        """The commit a remote branch points at; `ref` is `origin/<branch>` or a branch name."""
        ...

    def resolve(self, url: str, commit: str, *, path: str | None = None) -> str:
        """The full SHA of a unique short or full commit id in the remote."""
        ...

    def read(self, url: str, commit: str, path: str) -> SourceFile:
        """The file at `path` in `commit`."""
        ...

    def archive(self, url: str, commit: str, prefix: str | None = None) -> bytes:
        """A tar of the tracked files at `commit` (a `commit:subdir` tree-ish takes one folder)."""
        ...

    def subjects(self, url: str, commits: Sequence[str]) -> Mapping[str, str]:
        """The subject line (git's `%s`) of each full commit SHA in `commits`, read in one batch; a
        commit the remote does not have is left out. For the reviewer's diff (K5), never for apply."""
        ...


@attrs.frozen
class PublishRequest:
    """One image for CI to build and push (C1): from a tar context, never a working tree."""

    image: str  # <registry>/<prefix>/<service>:<full commit>
    context: bytes  # tar of the build context (`git archive` of the resolved commit)
    dockerfile: str  # relative to the context
    labels: Mapping[str, str]  # the V1 labels stamped on the image


@attrs.frozen
class Published:
    image: str
    image_id: str
    digest: str  # as the push reported it


@runtime_checkable
class ImagePublisher(Protocol):
    """Builds an image on the CI builder and pushes it. Raises `ProviderUnreachable` when the
    builder or the registry does not answer, so CI reports `infra-blocked`."""

    def publish(self, request: PublishRequest) -> Published: ...


@runtime_checkable
class ImageMirror(Protocol):
    """Copies an image by manifest digest between registries (P10), byte for byte."""

    def mirror_image(self, source: str, destination_repository: str, digest: str, *,
                     tag: str | None = None) -> str:
        """Copy `source` (`registry/repo@digest`) to `destination_repository` (`registry/repo`);
        returns the digest written, which equals `digest` or this raises `ProviderUnreachable`."""
        ...


class ProviderCapabilityMissing(UdeployError, TypeError):
    code = "provider-capability-missing"


def provider_class(name: str) -> type[Any]:
    """The provider registered under `name` in the `udeploy.providers` entry-point group."""
    for ep in entry_points(group="udeploy.providers"):
        if ep.name == name:
            return ep.load()  # type: ignore[no-any-return]
    raise ProviderNotFound(f"no provider named {name!r} is installed (entry-point group udeploy.providers)",
                           path=name)


T = TypeVar("T")


def build_provider(name: str, host: object | None, catalog: object | None) -> object:
    """The provider registered as `name`, built for one host (or none) of a catalog (or none)."""
    return provider_class(name).build(host, catalog)


def capable(found: object, capability: type[T], name: str) -> T:
    """`found` if it has `capability` (checked at run time); else `ProviderCapabilityMissing`.

    mypy cannot take a Protocol as type[T] (python/mypy#4717): callers ignore `type-abstract`."""
    if not isinstance(found, capability):
        raise ProviderCapabilityMissing(f"provider {name!r} cannot serve as {capability.__name__}", path=name)
    return found


def source_reader() -> SourceReader:
    """The `git` provider. It needs no catalog: config.json itself is read through it."""
    return capable(build_provider("git", None, None), SourceReader, "git")  # type: ignore[type-abstract]


def registry_reader(catalog: object) -> ArtifactReader:
    """The registry provider of `catalog` (an `engine.load.catalog.Catalog`), as a reader."""
    return capable(_registry(catalog, None), ArtifactReader, "registry")  # type: ignore[type-abstract]


def image_publisher(catalog: object, *, reuse: object | None = None) -> ImagePublisher:
    """The registry provider of `catalog` (or `reuse`, one already built for it), publishing
    through the catalog's CI builder (C1)."""
    return capable(_registry(catalog, reuse), ImagePublisher, "registry")  # type: ignore[type-abstract]


def image_mirror(catalog: object, *, reuse: object | None = None) -> ImageMirror:
    """The registry provider of `catalog` (or `reuse`), copying images between registries (P10)."""
    return capable(_registry(catalog, reuse), ImageMirror, "registry")  # type: ignore[type-abstract]


def _registry(catalog: object, reuse: object | None) -> object:
    return reuse if reuse is not None else build_provider(getattr(catalog, "registry_provider", "registry"), None,
                                                          catalog)


# --- `udeploy validate`'s capabilities: the db guard run (D5) and the Kubernetes dry run ------------
# Both are opened with the operator's settings, run once per manifest (or object) and closed. A
# manifest's objects are `engine.load.k8s_manifest.K8sObject` values; they are `Any` here because
# this protocol sits below the load phase.

@attrs.frozen
class DbGuardRequest:
    """D5's inputs, which the engine takes out of a manifest: the guard script and the dev URL."""

    manifest: str  # the manifest's path, as validate names it
    config_map: str  # "ConfigMap/<name>": the object that ships the script
    key: str  # its data key, e.g. "db-guard.sh"
    script: str | None  # None: the manifest ships no guard script (a finding, whatever else)
    dev_database_url: str | None  # the dev Secret template's DATABASE_URL, if it has one
    address: str  # where D5 findings point ("<manifest>#ConfigMap/<name>")

    @property
    def source(self) -> str:
        return f"{self.config_map}#{self.key}"


@runtime_checkable
class DbGuardRunner(Protocol):
    """D5: runs a manifest's db-guard script away from this machine; whatever goes wrong is a finding."""

    @classmethod
    def open(cls, docker_host: str | None, skip: bool) -> Self:
        """`docker_host` is the operator's engine (None: the standard docker environment); `skip` is
        the operator's `--skip-db-guard`."""
        ...

    def run(self, request: DbGuardRequest) -> tuple[dict[str, Any], list[Diagnostic]]:
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
