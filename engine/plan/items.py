"""The environment plan item of one service (O3, P7, P8): what a reviewer reads to judge the
artifact matrix without running anything. Built from the joined desired state; live facts (the
artifact digest, the secret presence) are passed in when the plan was refreshed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from udeploy.engine.load.catalog import GATING_MODES, Catalog, EnvironmentSettings, LiveApplyMode, SourceKind
from udeploy.engine.load.desired import DesiredService
from udeploy.engine.load.upstream import for_service
from udeploy.engine.provider_api import ArtifactState

# What an artifact consumer must never do at deploy time (C4, E2), listed in every item.
FORBIDDEN_ACTIONS = (
    "docker build", "docker compose build", "server rebuild", "source compile during CD",
    "NodePort Service", "hostPort", "public business port", "mutable tag as deployment truth",
)


def deployment_path(d: DesiredService) -> str:
    env = d.environment
    kind = d.microservice.source_kind
    if env is None:
        return "target-side-build" if kind is SourceKind.DOCKERFILE else "unsupported"
    if env.consumer_kind == "unsupported" or env.live_apply.mode is LiveApplyMode.UNSUPPORTED:
        return "unsupported"
    if kind is SourceKind.UPSTREAM_IMAGE:
        return "upstream-image"
    if kind is not SourceKind.DOCKERFILE:
        return "unsupported"
    if env.consumer_kind == "d601-dev-target-side-build":
        return "target-side-build"
    return "artifact-consumer"


def build_item(d: DesiredService, catalog: Catalog, settings: EnvironmentSettings | None, env_name: str | None,
               *, artifact: ArtifactState | None = None, secrets: Mapping[str, Any] | None = None) -> dict[str, Any]:
    ms, env = d.microservice, d.environment
    path = deployment_path(d)
    consumer_kind = env.consumer_kind if env and path != "unsupported" else "unsupported"
    live = env.live_apply if env else None
    dry_run_only = bool(live and live.dry_run_only) or path == "unsupported"
    item: dict[str, Any] = {
        "deploymentPath": path,
        "artifactConsumer": {
            "consumerKind": consumer_kind,
            "registryImage": _registry_image(d, catalog, path),
            "registry": {
                "address": catalog.registry,
                "repository": f"{catalog.repository_prefix}/{d.id}",
                "tag": d.resolved_commit,
                "digest": artifact.digest if artifact and artifact.exists else None,
                "digestProvenance": "registry manifest digest read at plan time" if artifact else None,
                "role": "content cache; the pushed git commit stays the version source of truth",
            },
            "source": {"repo": d.repo, "commit": d.resolved_commit, "requestedCommit": d.requested_commit,
                       "dockerfile": ms.dockerfile, "commitOverride": d.commit_override},
            "build": {"producer": "CI (udeploy artifact publish)", "where": "CI, never the runtime target",
                      "forbiddenActions": list(FORBIDDEN_ACTIONS)},
            "noRuntimeSourceBuild": path in ("artifact-consumer", "upstream-image", "unsupported"),
            "dryRunOnly": dry_run_only,
        },
        "target": _target(d, settings, env_name, path),
        "validation": _validation(d, path),
        "liveApply": {"allowed": bool(live and live.mode is LiveApplyMode.ENABLED) and path != "unsupported",
                      "mode": live.mode.value if live else "unsupported",
                      "reason": live.reason if live else "no environment target in local-manifest mode"},
    }
    if env and env.runtime_secrets:
        item["artifactConsumer"]["runtimeSecrets"] = dict(secrets) if secrets is not None else {
            "secretSource": env.runtime_secrets.secret_source, "requiredSecretsPresent": None,
            "missingSecretKeys": None, "requiredSecretKeys": list(env.runtime_secrets.required_keys),
            "recommendedAction": "refresh the plan to read the secret source (names and lengths only)"}
    upstream = upstream_block(d, catalog) if path == "upstream-image" else None
    if upstream is not None:
        item["artifactConsumer"]["upstream"] = upstream
    if env and env.boundary is not None:
        item["boundary"] = dict(env.boundary)
    if env and env.excluded_targets:
        item["excludedTargets"] = list(env.excluded_targets)
    if live and live.mode in GATING_MODES:
        item["dryRunOnly"] = dry_run_only  # blockedReason beside it is the typed `ServiceChange.blocked`
    return item


def _registry_image(d: DesiredService, catalog: Catalog, path: str) -> str | None:
    if path == "artifact-consumer":
        return catalog.registry_image(d.id, d.resolved_commit)
    art = for_service(catalog, d.microservice) if path == "upstream-image" else None
    return art.mirror_image if art else None


def upstream_block(d: DesiredService, catalog: Catalog) -> dict[str, Any] | None:
    art = for_service(catalog, d.microservice)
    if art is None:
        return None
    return {"artifact": art.id, "upstreamImage": art.upstream_image, "upstreamSourceRevision": art.source_revision,
            "digestPin": art.pin, "mirror": art.mirror, "pullBy": "mirror digest only",
            "localImageIdIsAPin": False}


def _target(d: DesiredService, settings: EnvironmentSettings | None, env_name: str | None,
            path: str) -> dict[str, Any]:
    env = d.environment
    target = env.target if env else None
    out: dict[str, Any] = {
        "namespace": settings.namespace if settings else None,
        "providerId": settings.provider_id if settings else None,
        "databaseFingerprint": settings.database_fingerprint if settings else None,
        "deployCommandShape": "none" if path == "unsupported" or env_name is None else
        f"udeploy apply --env {env_name} --service {d.id} [--commit <full-sha>]",
    }
    if target is None or path == "unsupported":
        return out
    out["host"] = target.host
    if target.compose:
        c = target.compose
        out["compose"] = {"project": c.project, "service": c.service, "file": c.file, "image": c.image,
                          "recreate": f"up -d --no-build --no-deps --force-recreate {c.service}"}
    if target.k3s:
        k = target.k3s
        out["namespace"] = k.namespace
        out["k3s"] = {"manifest": k.manifest, "objects": list(k.objects), "stampDeployments": list(k.stamp_deployments),
                      "importImage": k.import_image.replace("{commit}", d.resolved_commit),
                      "healthService": f"{k.health_service}:{k.health_port}"}
    return out


def _validation(d: DesiredService, path: str) -> dict[str, Any]:
    if path == "unsupported":
        return {"checks": [], "note": "nothing is deployed, so nothing is verified"}
    env = d.environment
    k3s = bool(env and env.target and env.target.k3s)
    checks = ["image labels unidesk.ai/service-id, source-repo, source-commit, dockerfile (V1)",
              "UNIDESK_DEPLOY_SERVICE_ID, _REPO, _COMMIT, _REQUESTED_COMMIT (V2)",
              f"{d.microservice.health_path} deploy.commit == {d.resolved_commit} (V3, V4)"]
    if env and env.runtime_secrets:
        checks.append(f"{d.microservice.health_path} auth flags all true: "
                      + ", ".join(env.runtime_secrets.health_auth_flags) + " (P7)")
    return {"via": "kubernetes-service-proxy" if k3s else "docker-container", "checks": checks,
            "requestedCommit": d.resolved_commit}
