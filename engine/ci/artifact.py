"""The CI producer side (C1, S1): publish `<registry>/unidesk/<id>:<commit>` from a pushed commit,
and report which pinned commits have artifacts.

It reads the manifests at the remote ref like environment mode does, builds only from
`git archive` of the resolved commit, stamps the V1 labels, pushes, then reads the artifact back
from the registry as evidence. It never touches a runtime target or deploy.json. When the
registry or the builder is missing the answer is a structured `infra-blocked` result.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from udeploy.engine.errors import ServiceNotFound, UdeployError
from udeploy.engine.load.catalog import SourceKind, read_catalog
from udeploy.engine.load.desired import v1_labels
from udeploy.engine.load.jsonschema_check import parse_json
from udeploy.engine.load.manifest import parse_deploy
from udeploy.engine.load.source import DEFAULT_REF, open_env_source
from udeploy.engine.provider_api import (
    ArtifactState,
    ProviderUnreachable,
    PublishRequest,
    SourceReader,
    image_publisher,
    registry_reader,
    source_reader,
)


def infra_blocked(what: str, reason: str, **extra: Any) -> dict[str, Any]:
    return {"status": "infra-blocked", "blocked": what, "reason": reason, **extra}


def publish(checkout: Path, service: str, commit: str, *, dry_run: bool = False, ref: str = DEFAULT_REF,
            git: SourceReader | None = None) -> dict[str, Any]:
    git = git or source_reader()
    reader, source = open_env_source(git, checkout, ref)
    catalog = read_catalog(reader)
    ms = catalog.microservices.get(service)
    if ms is None:
        raise ServiceNotFound(f"no microservice {service!r} in config.json", path=service)
    if ms.source_kind is not SourceKind.DOCKERFILE:
        return {"status": "unsupported", "service": service,
                "reason": f"{service} has no Dockerfile source artifact ({ms.source_kind.value}); CI publishes "
                          "only Dockerfile services"}
    full = git.resolve(ms.repo_url, commit, path="--commit")
    image = catalog.registry_image(service, full)
    labels = v1_labels(ms.id, ms.repo_url, full, ms.dockerfile)
    registry = registry_reader(catalog)
    if not registry.health():
        return infra_blocked("registry", f"registry {catalog.registry} does not answer /v2/", service=service,
                             image=image, commit=full)
    existing = registry.artifact(image, refresh=True)
    result: dict[str, Any] = {"service": service, "commit": full, "requestedCommit": commit, "image": image,
                              "labels": labels, "manifestRef": source.ref, "manifestCommit": source.commit,
                              "dryRun": dry_run}
    if existing.exists and dict(existing.labels).items() >= labels.items():
        return {**result, "status": "already-published", "digest": existing.digest, "evidence": _evidence(existing)}
    if dry_run:
        return {**result, "status": "would-publish", "dockerfile": ms.dockerfile, "context": ms.build_context}
    if catalog.builder_host is None:
        return infra_blocked("builder", "CI.json names no builder.host", **result)
    publisher = image_publisher(catalog, reuse=registry)
    try:
        context = git.archive(ms.repo_url, f"{full}:{ms.build_context}")
        dockerfile = _relative(ms.dockerfile or "Dockerfile", ms.build_context or "")
        published = publisher.publish(PublishRequest(image=image, context=context, dockerfile=dockerfile,
                                                     labels=labels))
    except ProviderUnreachable as exc:
        return infra_blocked(catalog.builder_host, exc.message, **result)
    evidence = registry.artifact(image, refresh=True)
    return {**result, "status": "published", "digest": published.digest, "imageId": published.image_id,
            "evidence": _evidence(evidence)}


def status(checkout: Path, *, ref: str = DEFAULT_REF, git: SourceReader | None = None) -> dict[str, Any]:
    """Registry reachability and, per environment, which pinned commits have artifacts (S1)."""
    git = git or source_reader()
    reader, source = open_env_source(git, checkout, ref)
    catalog = read_catalog(reader)
    registry = registry_reader(catalog)
    if not registry.health():
        return infra_blocked("registry", f"registry {catalog.registry} does not answer /v2/")
    deploy = parse_json(reader.read("deploy.json"), "deploy.json")
    environments: dict[str, list[dict[str, Any]]] = {}
    for env in ("dev", "prod"):
        try:
            manifest = parse_deploy(deploy, source="deploy.json", environment=env)
        except UdeployError:
            continue
        rows: list[dict[str, Any]] = []
        for entry in manifest.services:
            ms = catalog.microservices.get(entry.id)
            if ms is None or ms.source_kind is not SourceKind.DOCKERFILE:
                rows.append({"service": entry.id, "commit": entry.commit_id, "artifact": "not-applicable"})
                continue
            full = git.resolve(entry.repo, entry.commit_id, path=entry.path)
            state = registry.head(catalog.registry_image(entry.id, full))
            rows.append({"service": entry.id, "commit": full, "image": state.image,
                         "artifact": "present" if state.exists else "missing", "digest": state.digest})
        environments[env] = rows
    return {"status": "ok", "registry": catalog.registry, "manifestRef": source.ref,
            "manifestCommit": source.commit, "environments": environments}


def _evidence(state: ArtifactState) -> dict[str, Any]:
    return {"digest": state.digest, "labels": dict(state.labels)}


def _relative(path: str, base: str) -> str:
    base = base.rstrip("/") + "/"
    return path[len(base):] if base != "/" and path.startswith(base) else path
