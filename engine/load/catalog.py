"""config.json and CI.json as frozen values: topology, targets and the reviewed policy.

The spec's rules about which service may go where live in this data (per microservice, per
environment), not in if-statements in the engine. Parsing happens once, after schema validation.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from udeploy.engine.load.jsonschema_check import check_remembered, parse_json
from udeploy.engine.load.repo_url import check_repo_url
from udeploy.engine.load.source import Reader
from udeploy.engine.load.timeouts import TimeoutKind, Timeouts, from_config

ENVIRONMENTS = ("dev", "prod")


class LiveApplyMode(enum.Enum):
    ENABLED = "enabled"
    SUPERVISOR_GATED = "supervisor-gated"
    PLAN_ONLY = "plan-only"
    BLOCKED = "blocked"
    UNSUPPORTED = "unsupported"


# The live-apply modes that stop a deploy and must say why (a blockedReason).
GATING_MODES = frozenset({LiveApplyMode.BLOCKED, LiveApplyMode.PLAN_ONLY, LiveApplyMode.SUPERVISOR_GATED})


class SourceKind(enum.Enum):
    """What produces a service's image (M4, P9, P10)."""

    DOCKERFILE = "dockerfile"
    UPSTREAM_IMAGE = "upstream-image"  # the approved digest-pinned exception (P10)
    IMAGE_ONLY = "image-only"  # vendor image without a reviewed producer: unsupported (P9)
    NONE = "none"  # nothing declared: unsupported (M4)


@attrs.frozen
class ComposeTarget:
    file: str  # compose file path in the repository
    project: str
    service: str
    image: str  # the local image name the Compose service runs (the artifact is retagged to it)
    health_port: int


@attrs.frozen
class K3sTarget:
    namespace: str
    manifest: str  # manifest path in the repository
    objects: tuple[str, ...]  # "Kind/name": only these objects are applied
    stamp_deployments: tuple[str, ...]
    import_image: str  # containerd tag, with "{commit}"
    health_service: str
    health_port: int


@attrs.frozen
class Target:
    """Where one service runs: a host of config.json, whose provider reads its own section here."""

    host: str
    compose: ComposeTarget | None  # the compose-host provider's section
    k3s: K3sTarget | None  # the k3s-native provider's section
    requires: tuple[str, ...] = ()
    # Any other provider's section (config.json `target.settings`), checked by that provider.
    settings: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class LiveApply:
    mode: LiveApplyMode
    reason: str | None = None
    dry_run_only: bool = False


@attrs.frozen
class RuntimeSecretsPolicy:
    secret_source: str
    required_keys: tuple[str, ...]
    health_auth_flags: tuple[str, ...]


@attrs.frozen
class EnvironmentTarget:
    """Where and how one microservice runs in one environment, and what policy allows."""

    consumer_kind: str
    target: Target | None
    live_apply: LiveApply
    boundary: Mapping[str, Any] | None = None
    excluded_targets: tuple[str, ...] = ()
    runtime_secrets: RuntimeSecretsPolicy | None = None
    diagnostics: Mapping[str, Any] | None = None  # E5: what `udeploy check` diagnoses (Code Queue)


@attrs.frozen
class Microservice:
    id: str
    path: str
    repo_url: str
    catalog_commit: str | None  # catalog data only; deploy.json is the version authority (M9)
    dockerfile: str | None
    build_context: str | None
    image: str | None
    artifact_source: str | None  # CI.json artifact id of an upstream-image exception
    deployment_mode: str
    deployment_host: str
    health_path: str
    reviewed_artifact_consumer: bool
    control_bridge: bool
    depends_on: tuple[str, ...]
    local_mode: Mapping[str, Any]
    host_path_source: Mapping[str, Any] | None
    environments: Mapping[str, EnvironmentTarget]

    @property
    def source_kind(self) -> SourceKind:
        if self.dockerfile:
            return SourceKind.DOCKERFILE
        if self.artifact_source:
            return SourceKind.UPSTREAM_IMAGE
        if self.image:
            return SourceKind.IMAGE_ONLY
        return SourceKind.NONE


@attrs.frozen
class Host:
    id: str
    provider: str  # provider name in the registry ("compose-host", "k3s-native")
    provider_id: str
    role: str
    settings: Mapping[str, Any]
    timeouts: Timeouts = attrs.field(factory=Timeouts)  # config.json `timeouts`, then the command line's


@attrs.frozen
class EnvironmentSettings:
    name: str
    namespace: str
    provider_id: str | None
    database_fingerprint: str | None  # sha256 of host/name: identifies the database, reveals nothing
    prerequisites: Mapping[str, Any]


@attrs.frozen
class Artifact:
    id: str
    kind: str  # "service-image" | "upstream-image"
    spec: Mapping[str, Any]


@attrs.frozen
class Catalog:
    registry: str
    repository_prefix: str
    upstream_prefix: str
    hosts: Mapping[str, Host]
    environments: Mapping[str, EnvironmentSettings]
    microservices: Mapping[str, Microservice]
    artifacts: Mapping[str, Artifact]
    builder_host: str | None = None  # CI.json builder.host: the engine CI builds on (C1)
    registry_timeouts: Timeouts = attrs.field(factory=Timeouts)  # config.json registry.timeouts
    # The provider that reads, publishes to and mirrors into `registry` (OCI distribution API).
    registry_provider: ClassVar[str] = "registry"

    def registry_image(self, service_id: str, commit: str) -> str:
        return f"{self.registry}/{self.repository_prefix}/{service_id}:{commit}"

    def with_timeouts(self, overrides: Timeouts) -> Catalog:
        """This catalog with the command line's `--timeout`s over every host's and the registry's."""
        if not overrides:
            return self
        return attrs.evolve(self, registry_timeouts=self.registry_timeouts.overridden_by(overrides),
                            hosts={hid: attrs.evolve(h, timeouts=h.timeouts.overridden_by(overrides))
                                   for hid, h in self.hosts.items()})


def parse_catalog(config: Any, ci: Any, *, config_source: str = "config.json",
                  ci_source: str = "CI.json") -> Catalog:
    check_remembered(config, "config", config_source)
    check_remembered(ci, "ci", ci_source)
    registry = config["registry"]
    return Catalog(
        registry=registry["address"],
        repository_prefix=registry["repositoryPrefix"],
        upstream_prefix=registry.get("upstreamMirrorPrefix", "upstream"),
        hosts={hid: _host(hid, h) for hid, h in config["hosts"].items()},
        environments={name: _environment(name, e) for name, e in config["environments"].items()},
        microservices={m["id"]: _microservice(m, f"{config_source}#$.microservices[{i}]")
                       for i, m in enumerate(config["microservices"])},
        artifacts={a["id"]: Artifact(id=a["id"], kind=a["kind"], spec=a) for a in ci["artifacts"]},
        builder_host=ci.get("builder", {}).get("host"),
        registry_timeouts=from_config(registry.get("timeouts"), TimeoutKind.REGISTRY),
    )


def read_catalog(reader: Reader) -> Catalog:
    """config.json and CI.json as `reader` reads them (git objects at the pinned commit, or the
    checkout in local-manifest mode), validated and parsed."""
    return parse_catalog(parse_json(reader.read("config.json"), "config.json"),
                         parse_json(reader.read("CI.json"), "CI.json"))


def _host(hid: str, h: Mapping[str, Any]) -> Host:
    return Host(id=hid, provider=h["provider"], provider_id=h["providerId"], role=h.get("role", ""),
                settings=h, timeouts=from_config(h.get("timeouts")))


def _environment(name: str, e: Mapping[str, Any]) -> EnvironmentSettings:
    db = e.get("database")
    fingerprint = None
    if db:
        fingerprint = "sha256:" + hashlib.sha256(f"{db['host']}/{db['name']}".encode()).hexdigest()[:16]
    return EnvironmentSettings(name=name, namespace=e["namespace"], provider_id=e.get("providerId"),
                               database_fingerprint=fingerprint, prerequisites=e.get("prerequisites", {}))


def _microservice(m: Mapping[str, Any], path: str) -> Microservice:
    repo = m["repository"]
    check_repo_url(repo["url"], f"{path}.repository.url")  # it reaches git (issue 9)
    deployment = m["deployment"]
    source = repo.get("artifactSource")
    return Microservice(
        id=m["id"], path=m["path"], repo_url=repo["url"], catalog_commit=repo.get("commitId"),
        dockerfile=repo.get("dockerfile"), build_context=repo.get("buildContext", m["path"]),
        image=repo.get("image"), artifact_source=source["artifact"] if source else None,
        deployment_mode=deployment["mode"], deployment_host=deployment["host"],
        health_path=m.get("health", {}).get("path", "/health"),
        reviewed_artifact_consumer=m.get("reviewedArtifactConsumer", False),
        control_bridge=m.get("controlBridge", False),
        depends_on=tuple(m.get("dependsOn", ())),
        local_mode=m.get("localMode", {}),
        host_path_source=m.get("hostPathSource"),
        environments={name: _environment_target(t) for name, t in m["environments"].items()},
    )


def _environment_target(t: Mapping[str, Any]) -> EnvironmentTarget:
    live = t["liveApply"]
    secrets = t.get("runtimeSecrets")
    return EnvironmentTarget(
        consumer_kind=t["consumerKind"],
        target=_target(t["target"]) if t.get("target") else None,
        live_apply=LiveApply(mode=LiveApplyMode(live["mode"]), reason=live.get("reason"),
                             dry_run_only=live.get("dryRunOnly", False)),
        boundary=t.get("boundary"),
        excluded_targets=tuple(t.get("excludedTargets", ())),
        runtime_secrets=RuntimeSecretsPolicy(
            secret_source=secrets["secretSource"], required_keys=tuple(secrets["requiredKeys"]),
            health_auth_flags=tuple(secrets.get("healthAuthFlags", ()))) if secrets else None,
        diagnostics=t.get("diagnostics"),
    )


def _target(t: Mapping[str, Any]) -> Target:
    c, k = t.get("compose"), t.get("k3s")
    return Target(
        host=t["host"],
        compose=ComposeTarget(file=c["file"], project=c["project"], service=c["service"], image=c["image"],
                              health_port=c["healthPort"]) if c else None,
        k3s=K3sTarget(namespace=k["namespace"], manifest=k["manifest"], objects=tuple(k["objects"]),
                      stamp_deployments=tuple(k["stampDeployments"]), import_image=k["importImage"],
                      health_service=k["healthService"]["name"],
                      health_port=k["healthService"]["port"]) if k else None,
        requires=tuple(t.get("requires", ())),
        settings=t.get("settings", {}),
    )
