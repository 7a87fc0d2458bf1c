"""The environment plan item of one service (O3, P7, P8): what a reviewer reads to judge the
artifact matrix without running anything. Built from the joined desired state; live facts (the
artifact digest, the secret presence) are passed in when the plan was refreshed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from udeploy.engine.load.catalog import GATING_MODES, Catalog, EnvironmentSettings, LiveApplyMode, SourceKind
from udeploy.engine.load.desired import DesiredService
from udeploy.engine.load.upstream import for_service
from udeploy.engine.plan.plan_item import (
    ArtifactConsumer,
    BuildRecord,
    ComposeRecord,
    DeploymentPath,
    K3sRecord,
    LiveApplyRecord,
    PlanItem,
    RegistryRecord,
    SourceRecord,
    TargetRecord,
    UpstreamRecord,
    Validation,
)
from udeploy.engine.provider_api import ArtifactState

# What an artifact consumer must never do at deploy time (C4, E2), listed in every item.
FORBIDDEN_ACTIONS = (
    "docker build", "docker compose build", "server rebuild", "source compile during CD",
    "NodePort Service", "hostPort", "public business port", "mutable tag as deployment truth",
)


def deployment_path(d: DesiredService) -> DeploymentPath:
    env = d.environment
    kind = d.microservice.source_kind
    if env is None:
        return DeploymentPath.TARGET_SIDE_BUILD if kind is SourceKind.DOCKERFILE else DeploymentPath.UNSUPPORTED
    if env.consumer_kind == "unsupported" or env.live_apply.mode is LiveApplyMode.UNSUPPORTED:
        return DeploymentPath.UNSUPPORTED
    if kind is SourceKind.UPSTREAM_IMAGE:
        return DeploymentPath.UPSTREAM_IMAGE
    if kind is not SourceKind.DOCKERFILE:
        return DeploymentPath.UNSUPPORTED
    if env.consumer_kind == "d601-dev-target-side-build":
        return DeploymentPath.TARGET_SIDE_BUILD
    return DeploymentPath.ARTIFACT_CONSUMER


def build_item(d: DesiredService, catalog: Catalog, settings: EnvironmentSettings | None, env_name: str | None,
               *, artifact: ArtifactState | None = None, secrets: Mapping[str, Any] | None = None,
               subject: str | None = None) -> PlanItem:
    ms, env = d.microservice, d.environment
    path = deployment_path(d)
    unsupported = path is DeploymentPath.UNSUPPORTED
    live = env.live_apply if env else None
    dry_run_only = bool(live and live.dry_run_only) or unsupported
    runtime_secrets: Mapping[str, Any] | None = None
    if env and env.runtime_secrets:
        runtime_secrets = dict(secrets) if secrets is not None else {
            "secretSource": env.runtime_secrets.secret_source, "requiredSecretsPresent": None,
            "missingSecretKeys": None, "requiredSecretKeys": list(env.runtime_secrets.required_keys),
            "recommendedAction": "refresh the plan to read the secret source (names and lengths only)"}
    consumer = ArtifactConsumer(
        consumer_kind=env.consumer_kind if env and not unsupported else "unsupported",
        registry_image=_registry_image(d, catalog, path),
        registry=RegistryRecord(
            address=catalog.registry, repository=f"{catalog.repository_prefix}/{d.id}", tag=d.resolved_commit,
            digest=artifact.digest if artifact and artifact.exists else None,
            digest_provenance="registry manifest digest read at plan time" if artifact else None,
            role="content cache; the pushed git commit stays the version source of truth"),
        source=SourceRecord(repo=d.repo, commit=d.resolved_commit, requested_commit=d.requested_commit,
                            dockerfile=ms.dockerfile, commit_override=d.commit_override, subject=subject),
        build=BuildRecord(producer="CI (udeploy artifact publish)", where="CI, never the runtime target",
                          forbidden_actions=FORBIDDEN_ACTIONS),
        no_runtime_source_build=path is not DeploymentPath.TARGET_SIDE_BUILD,
        dry_run_only=dry_run_only,
        runtime_secrets=runtime_secrets,
        upstream=upstream_record(d, catalog) if path is DeploymentPath.UPSTREAM_IMAGE else None)
    return PlanItem(
        deployment_path=path,
        artifact_consumer=consumer,
        target=_target(d, settings, env_name, path),
        validation=_validation(d, path),
        live_apply=LiveApplyRecord(
            allowed=bool(live and live.mode is LiveApplyMode.ENABLED) and not unsupported,
            mode=live.mode if live else LiveApplyMode.UNSUPPORTED,
            reason=live.reason if live else "no environment target in local-manifest mode"),
        boundary=dict(env.boundary) if env and env.boundary is not None else None,
        excluded_targets=tuple(env.excluded_targets) if env and env.excluded_targets else None,
        # blockedReason beside it is the typed `ServiceChange.blocked`
        dry_run_only=dry_run_only if live and live.mode in GATING_MODES else None)


def _registry_image(d: DesiredService, catalog: Catalog, path: DeploymentPath) -> str | None:
    if path is DeploymentPath.ARTIFACT_CONSUMER:
        return catalog.registry_image(d.id, d.resolved_commit)
    art = for_service(catalog, d.microservice) if path is DeploymentPath.UPSTREAM_IMAGE else None
    return art.mirror_image if art else None


def upstream_record(d: DesiredService, catalog: Catalog) -> UpstreamRecord | None:
    art = for_service(catalog, d.microservice)
    if art is None:
        return None
    return UpstreamRecord(artifact=art.id, upstream_image=art.upstream_image,
                          upstream_source_revision=art.source_revision, digest_pin=art.pin, mirror=art.mirror,
                          pull_by="mirror digest only", local_image_id_is_a_pin=False)


def _target(d: DesiredService, settings: EnvironmentSettings | None, env_name: str | None,
            path: DeploymentPath) -> TargetRecord:
    env = d.environment
    target = env.target if env else None
    out = TargetRecord(
        namespace=settings.namespace if settings else None,
        provider_id=settings.provider_id if settings else None,
        database_fingerprint=settings.database_fingerprint if settings else None,
        deploy_command_shape="none" if path is DeploymentPath.UNSUPPORTED or env_name is None else
        f"udeploy apply --env {env_name} --service {d.id} [--commit <full-sha>]")
    if target is None or path is DeploymentPath.UNSUPPORTED:
        return out
    out = attrs.evolve(out, host=target.host)
    if target.compose:
        c = target.compose
        out = attrs.evolve(out, compose=ComposeRecord(
            project=c.project, service=c.service, file=c.file, image=c.image,
            recreate=f"up -d --no-build --no-deps --force-recreate {c.service}"))
    if target.k3s:
        k = target.k3s
        out = attrs.evolve(out, namespace=k.namespace, k3s=K3sRecord(
            manifest=k.manifest, objects=k.objects, stamp_deployments=k.stamp_deployments,
            import_image=k.import_image.replace("{commit}", d.resolved_commit),
            health_service=f"{k.health_service}:{k.health_port}"))
    return out


def _validation(d: DesiredService, path: DeploymentPath) -> Validation:
    if path is DeploymentPath.UNSUPPORTED:
        return Validation(checks=(), note="nothing is deployed, so nothing is verified")
    env = d.environment
    k3s = bool(env and env.target and env.target.k3s)
    checks = ["image labels unidesk.ai/service-id, source-repo, source-commit, dockerfile (V1)",
              "UNIDESK_DEPLOY_SERVICE_ID, _REPO, _COMMIT, _REQUESTED_COMMIT (V2)",
              f"{d.microservice.health_path} deploy.commit == {d.resolved_commit} (V3, V4)"]
    if env and env.runtime_secrets:
        checks.append(f"{d.microservice.health_path} auth flags all true: "
                      + ", ".join(env.runtime_secrets.health_auth_flags) + " (P7)")
    return Validation(via="kubernetes-service-proxy" if k3s else "docker-container", checks=tuple(checks),
                      requested_commit=d.resolved_commit)
