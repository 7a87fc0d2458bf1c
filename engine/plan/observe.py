"""Read live state for the selected services, concurrently under a bound.

Only selected services are read; an artifact costs one registry lookup; each host's provider is
built once and shared. Unsupported services are not read at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import attrs

from udeploy.engine.load.catalog import Catalog, ComposeTarget, Host, RuntimeSecretsPolicy
from udeploy.engine.load.desired import DesiredService, DesiredState
from udeploy.engine.load.upstream import UpstreamArtifact, UpstreamState, for_service, observe_upstream
from udeploy.engine.plan.items import deployment_path
from udeploy.engine.provider_api import (
    ArtifactReader,
    ArtifactState,
    ObserveRequest,
    Provider,
    RuntimeChecks,
    RuntimeState,
    SecretReader,
    StepExecutor,
    capable,
    provider_class,
)

T = TypeVar("T")


@attrs.frozen
class Observations:
    artifacts: Mapping[str, ArtifactState]
    runtime: Mapping[str, RuntimeState]
    secrets: Mapping[str, Mapping[str, Any]]  # service id -> redacted runtimeSecrets (P7)
    upstream: Mapping[str, UpstreamState] = attrs.field(factory=dict)  # upstream-image services (P10)


class ProviderPool:
    """One provider instance per host (and one registry), built on first use."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._lock = threading.Lock()
        self._built: dict[str, Any] = {}

    def get(self, provider: str, host_id: str | None) -> object:
        key = f"{provider}@{host_id}"
        with self._lock:
            if key not in self._built:
                host: Host | None = self.catalog.hosts[host_id] if host_id else None
                self._built[key] = provider_class(provider).build(host, self.catalog)
            return self._built[key]

    # mypy cannot take a Protocol as type[T] (python/mypy#4717): the accessors below ignore
    # `type-abstract`; `capable`'s isinstance check is what enforces the capability at run time.
    def _capable(self, provider: str, host_id: str | None, capability: type[T]) -> T:
        name = provider if host_id is None else f"{provider}@{host_id}"
        return capable(self.get(provider, host_id), capability, name)

    def executor(self, provider: str, host_id: str | None) -> StepExecutor:
        return self._capable(provider, host_id, StepExecutor)  # type: ignore[type-abstract]

    def artifacts(self) -> ArtifactReader:
        return self._capable(self.catalog.registry_provider, None, ArtifactReader)  # type: ignore[type-abstract]

    def runtime(self, host_id: str) -> Provider:
        return self._capable(self.catalog.hosts[host_id].provider, host_id, Provider)  # type: ignore[type-abstract]

    def secrets(self, host_id: str) -> SecretReader:
        return self._capable(self.catalog.hosts[host_id].provider, host_id, SecretReader)  # type: ignore[type-abstract]

    def checks(self, host_id: str) -> RuntimeChecks:
        return self._capable(self.catalog.hosts[host_id].provider, host_id, RuntimeChecks)  # type: ignore[type-abstract]

    def close(self) -> None:
        """Close what the providers opened (SSH connections, Docker and Kubernetes clients)."""
        with self._lock:
            built, self._built = list(self._built.values()), {}
        for provider in built:
            close = getattr(provider, "close", None)
            if close is not None:
                close()


def runtime_target(d: DesiredService) -> tuple[str, Any] | None:
    """(host id, ComposeTarget | K3sTarget) where the service runs, or None."""
    env = d.environment
    if env is not None:
        if env.target is None:
            return None
        return env.target.host, env.target.k3s or env.target.compose
    c = d.microservice.local_mode.get("compose")
    if not c:
        return None
    return str(d.microservice.local_mode.get("host", d.microservice.deployment_host)), ComposeTarget(
        file=c["file"], project=c["project"], service=c["service"], image=c["image"], health_port=c["healthPort"])


def observe(state: DesiredState, pool: ProviderPool, *, parallelism: int = 10) -> Observations:
    artifacts: dict[str, ArtifactState] = {}
    runtime: dict[str, RuntimeState] = {}
    secrets: dict[str, Mapping[str, Any]] = {}
    upstream: dict[str, UpstreamState] = {}
    jobs: list[Callable[[], None]] = []
    for d in state.services:
        path = deployment_path(d)
        if path == "unsupported":
            continue
        if path == "artifact-consumer":
            image = state.catalog.registry_image(d.id, d.resolved_commit)
            jobs.append(_job(artifacts, d.id, partial(_read_artifact, pool, image)))
        art = for_service(state.catalog, d.microservice) if path == "upstream-image" else None
        if art is not None:
            jobs.append(_job(upstream, d.id, partial(_read_upstream, pool, art)))
        where = runtime_target(d)
        if where is not None:
            host_id, target = where
            req = ObserveRequest(service_id=d.id, target=target, health_path=d.microservice.health_path)
            jobs.append(_job(runtime, d.id, partial(_read_runtime, pool, host_id, req)))
        env = d.environment
        if env and env.runtime_secrets and env.target and env.target.compose:
            jobs.append(_job(secrets, d.id, partial(_read_secrets, pool, env.target.host, env.runtime_secrets,
                                                    env.target.compose.project)))
    with ThreadPoolExecutor(max_workers=max(1, parallelism)) as ex:
        for f in [ex.submit(j) for j in jobs]:
            f.result()  # re-raise the first provider error (ProviderUnreachable names the host)
    return Observations(artifacts=artifacts, runtime=runtime, secrets=secrets, upstream=upstream)


def _read_artifact(pool: ProviderPool, image: str) -> ArtifactState:
    return pool.artifacts().artifact(image)


def _read_upstream(pool: ProviderPool, art: UpstreamArtifact) -> UpstreamState:
    return observe_upstream(art, pool.artifacts())


def _read_runtime(pool: ProviderPool, host_id: str, request: ObserveRequest) -> RuntimeState:
    return pool.runtime(host_id).observe(request)


def _read_secrets(pool: ProviderPool, host_id: str, policy: RuntimeSecretsPolicy, project: str) -> Mapping[str, Any]:
    """P7: key names, booleans and lengths from the host's secret source; never a value."""
    return pool.secrets(host_id).secret_presence(policy.secret_source, list(policy.required_keys), project=project)


def _job(into: dict[str, Any], key: str, read: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        into[key] = read()
    return run
