"""The step chain each deploying service needs, and the edges between them (K2).

Artifact consumer on Compose: verify-artifact -> transfer-image -> stamp -> recreate -> verify-live.
Artifact consumer on k3s:     verify-artifact -> import-image -> apply-objects -> stamp -> rollout
                              -> verify-live, after the environment prerequisites it requires.
Target-side build (local):    export-source -> build-image -> stamp -> recreate -> verify-live.
A service's first mutating step waits for the verify-live of every service it `dependsOn`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from udeploy.engine.load.catalog import Catalog, ComposeTarget, K3sTarget, Target
from udeploy.engine.load.desired import DesiredService
from udeploy.engine.load.source import ManifestSource
from udeploy.engine.load.upstream import for_service
from udeploy.engine.plan.graph import Graph
from udeploy.engine.plan.model import Node, StepKind


@attrs.frozen
class Observed:
    """Fingerprints of what one service's nodes were planned against."""

    artifact: str | None = None
    runtime: str | None = None


def deploy_stamp(d: DesiredService) -> dict[str, str]:
    """V2: the runtime env / annotations every deploy writes."""
    return {"UNIDESK_DEPLOY_SERVICE_ID": d.id, "UNIDESK_DEPLOY_REPO": d.repo,
            "UNIDESK_DEPLOY_COMMIT": d.resolved_commit, "UNIDESK_DEPLOY_REQUESTED_COMMIT": d.requested_commit}


def v1_labels(service_id: str, repo: str, commit: str, dockerfile: str | None) -> dict[str, str]:
    """V1: the labels every artifact carries (CI stamps them, CD checks them)."""
    return {"unidesk.ai/service-id": service_id, "unidesk.ai/source-repo": repo,
            "unidesk.ai/source-commit": commit, "unidesk.ai/dockerfile": dockerfile or ""}


def expected_labels(d: DesiredService) -> dict[str, str]:
    return v1_labels(d.id, d.repo, d.resolved_commit, d.microservice.dockerfile)


def service_nodes(d: DesiredService, catalog: Catalog, source: ManifestSource, observed: Observed) -> list[Node]:
    env = d.environment
    if env is None:
        return _target_side_build(d, observed)
    target = env.target
    assert target is not None, "a deploying service has a target"
    art = for_service(catalog, d.microservice)
    if art is not None and art.mirror_image:  # P10: pull-only by the verified mirror digest
        image, labels = art.mirror_image, art.expected_labels
        check = {"image": image, "expectedLabels": labels, "expectedDigest": art.pin}
    else:
        image, labels = catalog.registry_image(d.id, d.resolved_commit), expected_labels(d)
        check = {"image": image, "expectedLabels": labels}
    first = Node(f"{d.id}/verify-artifact", StepKind.VERIFY_ARTIFACT, "registry", None, d.id, check,
                 observed.artifact)
    if target.k3s:
        return [first] + _k3s_nodes(d, target, target.k3s, image, source, observed)
    assert target.compose is not None
    nodes = _compose_nodes(d, target, target.compose, image, source, observed)
    if art is not None:  # identity is the digest and the OCI labels, not the V1 labels of our own builds
        last = nodes[-1]
        nodes[-1] = attrs.evolve(last, params={**last.params, "expectedLabels": labels, "expectedDigest": art.pin})
    return [first] + nodes


def _compose_nodes(d: DesiredService, target: Target, c: ComposeTarget, image: str, source: ManifestSource,
                   observed: Observed) -> list[Node]:
    compose: dict[str, Any] = {"project": c.project, "service": c.service, "file": c.file,
                               "manifestCommit": source.commit, "manifestRemote": source.remote}
    secrets = d.environment.runtime_secrets if d.environment else None
    verify: dict[str, Any] = {**compose, "healthPort": c.health_port, "healthPath": d.microservice.health_path,
                              "expectedCommit": d.resolved_commit, "expectedLabels": expected_labels(d)}
    if secrets:
        verify["healthAuthFlags"] = list(secrets.health_auth_flags)
    node = _noder(d, "compose-host", target.host, observed.runtime)
    return [
        node(StepKind.TRANSFER_IMAGE, {"image": image, "localImage": c.image,
                                       "localTags": ["latest", d.resolved_commit]}),
        node(StepKind.STAMP, {**compose, "env": deploy_stamp(d),
                              "secretKeys": list(secrets.required_keys) if secrets else []}),
        node(StepKind.RECREATE, {**compose, "command": f"up -d --no-build --no-deps --force-recreate {c.service}"}),
        node(StepKind.VERIFY_LIVE, verify),
    ]


def _k3s_nodes(d: DesiredService, target: Target, k: K3sTarget, image: str, source: ManifestSource,
               observed: Observed) -> list[Node]:
    local_image = k.import_image.replace("{commit}", d.resolved_commit)
    base = {"namespace": k.namespace, "deployments": list(k.stamp_deployments)}
    node = _noder(d, "k3s-native", target.host, observed.runtime)
    return [
        node(StepKind.IMPORT_IMAGE, {"image": image, "localImage": local_image}),
        *_host_path_guard(d, k, node),
        node(StepKind.APPLY_OBJECTS, {**base, "manifest": k.manifest, "objects": list(k.objects),
                                      "manifestCommit": source.commit, "manifestRemote": source.remote}),
        node(StepKind.STAMP, {**base, "image": local_image, "annotations": deploy_stamp(d)}),
        node(StepKind.ROLLOUT, base),
        node(StepKind.VERIFY_LIVE, {**base, "healthService": k.health_service, "healthPort": k.health_port,
                                    "healthPath": d.microservice.health_path, "expectedCommit": d.resolved_commit,
                                    "expectedRequestedCommit": d.requested_commit}),
    ]


def _host_path_guard(d: DesiredService, k: K3sTarget, node: Any) -> list[Node]:
    """G1, E4: a rollout of a manifest that mounts the hostPath source first proves that source
    resolves and that the gate image is in containerd and referenced by every gated Deployment;
    the guard sits before any step that could restart a pod."""
    source = d.microservice.host_path_source
    if not source or source.get("manifest") != k.manifest:
        return []
    return [node(StepKind.GUARD_SOURCE, {"root": source["root"], "gateImage": source.get("gateImage"),
                                         "gateDeployments": list(source.get("gateDeployments", ())),
                                         "namespace": k.namespace})]


def _target_side_build(d: DesiredService, observed: Observed) -> list[Node]:
    """B1-B4, local-manifest mode only: the target fetches, archives, builds and recreates."""
    ms = d.microservice
    c: Mapping[str, Any] = ms.local_mode.get("compose", {})
    host = str(ms.local_mode.get("host", ms.deployment_host))
    node = _noder(d, "compose-host", host, observed.runtime)
    compose = {"project": c.get("project"), "service": c.get("service"), "file": c.get("file")}
    build: dict[str, Any] = {"dockerfile": ms.dockerfile, "context": ms.build_context, "project": c.get("project"),
                             "image": f"{c.get('image')}:{d.resolved_commit}", "labels": expected_labels(d)}
    if ms.local_mode.get("buildBaseArg"):  # B4: the declared warm build-base argument
        build["buildBaseArg"] = str(ms.local_mode["buildBaseArg"])
    # The compose declaration is read from git at the commit being built, never the operator's tree.
    declared = {"manifestRemote": d.repo, "manifestCommit": d.resolved_commit}
    return [
        node(StepKind.EXPORT_SOURCE, {"repo": d.repo, "commit": d.resolved_commit, "context": ms.build_context,
                                      "project": c.get("project")}),
        node(StepKind.BUILD_IMAGE, build),
        node(StepKind.STAMP, {**compose, **declared, "env": deploy_stamp(d)}),
        node(StepKind.RECREATE, {**compose,
                                 "command": f"up -d --no-build --no-deps --force-recreate {c.get('service')}"}),
        node(StepKind.VERIFY_LIVE, {**compose, "healthPort": c.get("healthPort"), "healthPath": ms.health_path,
                                    "expectedCommit": d.resolved_commit, "expectedLabels": expected_labels(d)}),
    ]


def _noder(d: DesiredService, provider: str, host: str, observed: str | None) -> Any:
    def make(kind: StepKind, params: dict[str, Any]) -> Node:
        return Node(f"{d.id}/{kind.value}", kind, provider, host, d.id, params, observed)
    return make


def prerequisite_node(name: str, spec: Mapping[str, Any], source: ManifestSource, observed: str | None) -> Node:
    return Node(f"prerequisite/{name}", StepKind.APPLY_PREREQUISITE, "k3s-native", str(spec["host"]), None,
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
