"""The step chain of each deploying service, and the edges between chains (K2).

The engine plans two kinds of step itself: `verify-artifact` on the catalog's registry provider (the
commit image exists and carries the right labels, C2, C3) and `apply-prerequisite` (an environment
manifest some targets require). Everything after verify-artifact is the target provider's own chain,
from `Provider.plan_steps`: this module names no runtime provider, it asks the host's.

A service's first mutating step waits for the prerequisites its target requires and for the
verify-live of every service it `dependsOn`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from udeploy.engine.errors import UdeployError
from udeploy.engine.load.catalog import Catalog, ComposeTarget, Target
from udeploy.engine.load.desired import DesiredService
from udeploy.engine.load.source import ManifestSource
from udeploy.engine.load.upstream import for_service
from udeploy.engine.plan.graph import Graph
from udeploy.engine.plan.model import Node
from udeploy.engine.provider_api import ArtifactRef, DeployRequest, PlannedStep, StepKind, provider_class

# Steps only the engine plans: a provider that returns one of them is refused.
ENGINE_STEPS = frozenset({StepKind.VERIFY_ARTIFACT, StepKind.APPLY_PREREQUISITE})


class ProviderPlanInvalid(UdeployError, ValueError):
    """A provider's `plan_steps` returned a chain the engine cannot run."""

    code = "provider-plan-invalid"


@attrs.frozen
class Observed:
    """Fingerprints of what one service's nodes were planned against."""

    artifact: str | None = None
    runtime: str | None = None


class ChainPlanners:
    """Each provider's `plan_steps`, its class looked up once per plan: a lookup scans the installed
    distributions' entry points, which costs milliseconds, and a fleet has thousands of services."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Any]] = {}

    def plan(self, provider: str, request: DeployRequest) -> Sequence[PlannedStep]:
        if provider not in self._classes:
            self._classes[provider] = provider_class(provider)
        # A class method: planning reads nothing, so it needs no connection to the host.
        chain: Sequence[PlannedStep] = self._classes[provider].plan_steps(request)
        return chain


def service_nodes(d: DesiredService, catalog: Catalog, source: ManifestSource, observed: Observed,
                  planners: ChainPlanners) -> list[Node]:
    """verify-artifact (unless the target builds from source), then the target provider's chain."""
    target = deploy_target(d)
    artifact = _artifact(d, catalog) if d.environment is not None else None
    request = DeployRequest(service=d, target=target, artifact=artifact, manifest_commit=source.commit,
                            manifest_remote=source.remote)
    provider = catalog.hosts[target.host].provider
    chain = _checked(planners.plan(provider, request), provider, d.id)
    nodes = [Node(f"{d.id}/{s.kind.value}", s.kind, provider, target.host, d.id, s.params, observed.runtime)
             for s in chain]
    if artifact is None:
        return nodes
    check: dict[str, Any] = {"image": artifact.image, "expectedLabels": dict(artifact.labels)}
    if artifact.digest is not None:
        check["expectedDigest"] = artifact.digest
    verify = Node(f"{d.id}/{StepKind.VERIFY_ARTIFACT.value}", StepKind.VERIFY_ARTIFACT, catalog.registry_provider,
                  None, d.id, check, observed.artifact)
    return [verify, *nodes]


def deploy_target(d: DesiredService) -> Target:
    """Where the service runs: its environment's target, or in local-manifest mode its `localMode`
    host and compose section (target-side build, B1-B4)."""
    env = d.environment
    if env is not None:
        assert env.target is not None, "a deploying service has a target"
        return env.target
    ms = d.microservice
    c: Mapping[str, Any] = ms.local_mode.get("compose", {})
    compose = ComposeTarget(file=c["file"], project=c["project"], service=c["service"], image=c["image"],
                            health_port=c["healthPort"]) if c else None
    return Target(host=str(ms.local_mode.get("host", ms.deployment_host)), compose=compose, k3s=None)


def _artifact(d: DesiredService, catalog: Catalog) -> ArtifactRef:
    art = for_service(catalog, d.microservice)
    if art is not None and art.mirror_image:  # P10: pull-only by the verified mirror digest
        return ArtifactRef(image=art.mirror_image, labels=art.expected_labels, digest=art.pin)
    return ArtifactRef(image=catalog.registry_image(d.id, d.resolved_commit), labels=d.expected_labels())


def _checked(chain: Sequence[PlannedStep], provider: str, service: str) -> Sequence[PlannedStep]:
    kinds = [s.kind for s in chain]
    problem = None
    if not chain or kinds[-1] is not StepKind.VERIFY_LIVE:
        problem = "the chain must end in verify-live (V4)"
    elif len(set(kinds)) != len(kinds):
        problem = "a step kind appears twice"
    elif ENGINE_STEPS & set(kinds):
        problem = "verify-artifact and apply-prerequisite are the engine's steps"
    if problem:
        raise ProviderPlanInvalid(f"provider {provider!r} planned {[k.value for k in kinds]} for {service}: {problem}",
                                  path=service)
    return chain


def prerequisite_node(name: str, spec: Mapping[str, Any], catalog: Catalog, source: ManifestSource,
                      observed: str | None) -> Node:
    host = str(spec["host"])
    return Node(f"prerequisite/{name}", StepKind.APPLY_PREREQUISITE, catalog.hosts[host].provider, host, None,
                {"manifest": spec["manifest"], "namespace": spec["namespace"], "manifestCommit": source.commit,
                 "manifestRemote": source.remote}, observed)


def build_graph(chains: Mapping[str, list[Node]], prerequisites: list[Node], requires: Mapping[str, tuple[str, ...]],
                depends_on: Mapping[str, tuple[str, ...]]) -> Graph:
    """Chain each service's nodes, hang them under their prerequisites and upstream services."""
    g = Graph()
    for n in prerequisites:
        g.add(n.id)
    for nodes in chains.values():
        for n in nodes:
            g.add(n.id)
        for a, b in zip(nodes, nodes[1:], strict=False):
            g.connect(a.id, b.id)
    for sid, nodes in chains.items():
        first_mutation = nodes[1] if len(nodes) > 1 else nodes[0]
        for req in requires.get(sid, ()):
            g.connect(f"prerequisite/{req}", first_mutation.id)
        for up in depends_on.get(sid, ()):
            if up in chains:
                g.connect(chains[up][-1].id, first_mutation.id)
    g.validate()
    return g
