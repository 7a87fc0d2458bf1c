"""Read live state for the selected services, concurrently under a bound.

Only selected services are read; unsupported services are not read at all. Each host's provider is
built once and shared, and reads all of that host's services in one `observe` call (so it can list
a project or a namespace once); the registry reads every artifact in one `artifacts` call. Hosts,
the registry batch, upstream images and secret sources are read in parallel, at most `parallelism`
at a time (and each batch runs at most `parallelism` reads of its own).

An outage is an error, never an observation: a host that does not answer raises
`ProviderUnreachable` from its provider, and so does a registry batch with an unreachable read
(the protocol returns those as values). The error names the component, the endpoint, the seconds
spent and the timeout (docs/reliability.md), so plan, check and apply's re-read exit 1 instead of
planning around live state they could not read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

import attrs

from udeploy.engine.load.catalog import Catalog, Host, RuntimeSecretsPolicy, Target
from udeploy.engine.load.desired import DesiredService, DesiredState
from udeploy.engine.load.timeouts import TimeoutKind
from udeploy.engine.load.upstream import UpstreamArtifact, UpstreamState, for_service, observe_upstream
from udeploy.engine.plan.items import deployment_path
from udeploy.engine.plan.plan_item import DeploymentPath
from udeploy.engine.plan.steps import deploy_target
from udeploy.engine.provider_api import (
    ArtifactReader,
    ArtifactState,
    ObserveRequest,
    Provider,
    ProviderUnreachable,
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
        built = self._built.get(key)
        if built is not None:  # built already: no need to wait while another host's provider is built
            return built
        # One lock for every build, held while building: providers import their clients lazily
        # (importlib's LazyLoader, forced by `build`), and two threads running one lazy import at
        # once can fail.
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


def runtime_target(d: DesiredService) -> tuple[str, Target] | None:
    """(host id, Target) where the service runs (as `deploy_target` finds it), or None: an environment
    without a target, or no environment and no `localMode` compose section."""
    env = d.environment
    if (env is not None and env.target is None) or (env is None and not d.microservice.local_mode.get("compose")):
        return None
    target = deploy_target(d)
    return target.host, target


def observe(state: DesiredState, pool: ProviderPool, *, parallelism: int = 10,
            read_health: bool = True) -> Observations:
    """Every selected service's artifact, runtime (with its health unless `read_health` is False:
    apply's trust check compares fingerprints, which health is no part of), secrets and upstream."""
    artifacts: dict[str, ArtifactState] = {}
    runtime: dict[str, RuntimeState] = {}
    secrets: dict[str, Mapping[str, Any]] = {}
    upstream: dict[str, UpstreamState] = {}
    images: dict[str, str] = {}  # service id -> its commit image in the registry
    by_host: dict[str, list[ObserveRequest]] = {}
    jobs: list[Callable[[], None]] = []
    for d in state.services:
        path = deployment_path(d)
        if path is DeploymentPath.UNSUPPORTED:
            continue
        if path is DeploymentPath.ARTIFACT_CONSUMER:
            images[d.id] = state.catalog.registry_image(d.id, d.resolved_commit)
        art = for_service(state.catalog, d.microservice) if path is DeploymentPath.UPSTREAM_IMAGE else None
        if art is not None:
            jobs.append(_job(upstream, d.id, partial(_read_upstream, pool, art)))
        where = runtime_target(d)
        if where is not None:
            host_id, target = where
            by_host.setdefault(host_id, []).append(
                ObserveRequest(service_id=d.id, target=target, health_path=d.microservice.health_path,
                               read_health=read_health))
        env = d.environment
        if env and env.runtime_secrets and env.target and env.target.compose:
            jobs.append(_job(secrets, d.id, partial(_read_secrets, pool, env.target.host, env.runtime_secrets,
                                                    env.target.compose.project)))
    if images:
        jobs.insert(0, partial(_read_artifacts, pool, images, artifacts, parallelism))
        _build_first(pool.artifacts)
    for host_id, requests in by_host.items():
        jobs.insert(0, partial(_read_runtime, pool, host_id, requests, runtime, parallelism))
    began = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=max(1, parallelism)) as ex:
            for f in [ex.submit(j) for j in jobs]:
                f.result()  # re-raise the first provider error (ProviderUnreachable names the host)
    except ProviderUnreachable as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        exc.details = {"component": exc.path, "elapsedSeconds": round(time.monotonic() - began, 1), **details}
        raise
    return Observations(artifacts=artifacts, runtime=runtime, secrets=secrets, upstream=upstream)


def _build_first(build: Callable[[], object]) -> None:
    """Build the registry reader before the threads start: its batch (one read per artifact) is the
    longest, and would otherwise wait for the hosts' providers (Docker, Kubernetes and SSH clients)
    to be built under the pool's lock. A failure here is left to the job that reads through it, so
    the error raised is the same, in the same order."""
    try:
        build()
    except Exception:  # noqa: BLE001, S110 - raised again by the artifact job
        pass


def _read_artifacts(pool: ProviderPool, images: Mapping[str, str], into: dict[str, ArtifactState],
                    parallelism: int) -> None:
    began = time.monotonic()
    found = pool.artifacts().artifacts(sorted(set(images.values())), parallelism=parallelism)
    down = [state for state in found.values() if not state.reachable]
    if down:
        catalog, elapsed = pool.catalog, time.monotonic() - began
        timeout = catalog.registry_timeouts.get(TimeoutKind.REGISTRY)
        raise ProviderUnreachable(
            f"the registry {catalog.registry} did not answer ({down[0].error}); {len(down)} of {len(found)} "
            f"artifact reads failed after {elapsed:.1f} s (timeout: {timeout.describe()})",
            path=catalog.registry,
            details={"component": "registry", "endpoint": catalog.registry, "elapsedSeconds": round(elapsed, 1),
                     "timeoutSeconds": {"connect": timeout.connect, "read": timeout.read},
                     "unreadArtifacts": len(down)})
    into.update({service: found[image] for service, image in images.items()})


def _read_upstream(pool: ProviderPool, art: UpstreamArtifact) -> UpstreamState:
    return observe_upstream(art, pool.artifacts())


def _read_runtime(pool: ProviderPool, host_id: str, requests: list[ObserveRequest], into: dict[str, RuntimeState],
                  parallelism: int) -> None:
    found = pool.runtime(host_id).observe(requests, parallelism=parallelism)
    into.update({r.service_id: found[r.service_id] for r in requests})


def _read_secrets(pool: ProviderPool, host_id: str, policy: RuntimeSecretsPolicy, project: str) -> Mapping[str, Any]:
    """P7: key names, booleans and lengths from the host's secret source; never a value."""
    return pool.secrets(host_id).secret_presence(policy.secret_source, list(policy.required_keys), project=project)


def _job(into: dict[str, Any], key: str, read: Callable[[], Any]) -> Callable[[], None]:
    def run() -> None:
        into[key] = read()
    return run
