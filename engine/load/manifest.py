"""deploy.json: which service runs which commit, and nothing else (M1, M2, M6, M8).

Service entries are checked for runtime topology before the schema runs, so the error names the
entry and the forbidden field (M2) rather than a generic "additional property".
"""

from __future__ import annotations

from typing import Any

import attrs

from udeploy.engine.errors import ForbiddenServiceField, ManifestInvalid, UnknownEnvironment
from udeploy.engine.load.catalog import ENVIRONMENTS
from udeploy.engine.load.jsonschema_check import check_remembered
from udeploy.engine.load.repo_url import check_repo_url

# M2: what a deploy.json service entry must never say, by the category the spec names.
FORBIDDEN_FIELDS = {
    "provider": "provider ID", "providerId": "provider ID", "provider_id": "provider ID",
    "host": "provider ID", "target": "provider ID",
    "port": "port", "ports": "port", "healthPort": "port",
    "composeService": "compose service name", "compose": "compose service name", "service": "compose service name",
    "containerName": "compose service name",
    "namespace": "Kubernetes namespace", "k8sNamespace": "Kubernetes namespace",
    "health": "health path", "healthPath": "health path", "healthUrl": "health path",
    "env": "environment variables", "environment": "environment variables", "envVars": "environment variables",
    "dockerfile": "Dockerfile path", "dockerfilePath": "Dockerfile path", "buildContext": "Dockerfile path",
    "build": "build command", "buildCommand": "build command", "buildArgs": "build command",
    "command": "build command",
}


@attrs.frozen
class ServiceEntry:
    id: str
    repo: str
    commit_id: str
    path: str  # JSON path of the entry, for errors


@attrs.frozen
class CiDeclaration:
    """M6: the one allowed non-service declaration under environments.dev; not a service."""

    repo: str
    script_path: str
    timeout_ms: int


@attrs.frozen
class DeployManifest:
    schema_version: int
    services: tuple[ServiceEntry, ...]
    ci: CiDeclaration | None = None


def require_known_environment(env: str) -> None:
    if env not in ENVIRONMENTS:
        raise UnknownEnvironment(
            f"unknown environment {env!r}: only {', '.join(ENVIRONMENTS)} are declared; a new lane "
            "(e.g. dev-v1) must be added to deploy.json and the CLI before use", path=env)


def parse_deploy(doc: Any, *, source: str, environment: str | None) -> DeployManifest:
    """Validate deploy.json and select one environment (env mode) or the v1 list (file mode).

    `environment=None` is local-manifest mode: v1 and v2 are accepted; a v2 document then needs
    exactly one environment.
    """
    if not isinstance(doc, dict):
        raise ManifestInvalid(f"{source} must be a JSON object", path=f"{source}#$")
    version = doc.get("schemaVersion")
    if isinstance(version, bool):  # JSON true would pass `== 1` in Python
        version = None
    if version == 1 and environment is not None:
        raise ManifestInvalid(
            f"{source} is schemaVersion 1, which only local-manifest mode (--file) accepts; "
            "environment commands need schemaVersion 2", path=f"{source}#$.schemaVersion")
    if version not in (1, 2):
        raise ManifestInvalid(f"{source}: schemaVersion must be 1 or 2, not {version!r}",
                              path=f"{source}#$.schemaVersion")
    _reject_forbidden_fields(doc, source)
    check_remembered(doc, f"deploy.v{version}", source)
    if version == 1:
        return DeployManifest(1, _entries(doc["services"], f"{source}#$.services"))
    return _select_environment(doc, source, environment)


def _select_environment(doc: dict[str, Any], source: str, environment: str | None) -> DeployManifest:
    envs = doc["environments"]
    if environment is None:
        # Local mode reads a v2 file only when it is unambiguous: exactly one environment.
        if len(envs) != 1:
            raise ManifestInvalid(f"{source} is schemaVersion 2 with {len(envs)} environments; local "
                                  "mode needs one (or use --env)", path=f"{source}#$.environments")
        environment = next(iter(envs))
    require_known_environment(environment)
    if environment not in envs:
        raise UnknownEnvironment(f"{source} declares no environment {environment!r}",
                                 path=f"{source}#$.environments")
    env = envs[environment]
    base = f"{source}#$.environments.{environment}"
    ci = env.get("ci")
    if ci:  # the CI declaration's repo reaches git like a service's (issue 9)
        check_repo_url(ci["repo"], f"{base}.ci.repo")
    return DeployManifest(
        2, _entries(env["services"], f"{base}.services"),
        CiDeclaration(ci["repo"], ci["scriptPath"], ci["timeoutMs"]) if ci else None)


def _entries(items: list[dict[str, Any]], base: str) -> tuple[ServiceEntry, ...]:
    seen: set[str] = set()
    out = []
    for i, e in enumerate(items):
        path = f"{base}[{i}]"
        if e["id"] in seen:
            raise ManifestInvalid(f"service {e['id']!r} is listed twice", path=path)
        seen.add(e["id"])
        check_repo_url(e["repo"], f"{path}.repo")  # refused at parse time, so `plan --no-refresh` refuses too
        out.append(ServiceEntry(id=e["id"], repo=e["repo"], commit_id=e["commitId"], path=path))
    return tuple(out)


def _reject_forbidden_fields(doc: dict[str, Any], source: str) -> None:
    """M2, before the schema: name the entry and the field."""
    lists: list[tuple[str, Any]] = [(f"{source}#$.services", doc.get("services"))]
    envs = doc.get("environments")
    if isinstance(envs, dict):
        lists += [(f"{source}#$.environments.{n}.services", e.get("services"))
                  for n, e in envs.items() if isinstance(e, dict)]
    for base, items in lists:
        if not isinstance(items, list):
            continue
        for i, entry in enumerate(items):
            if not isinstance(entry, dict):
                continue
            for field in entry:
                if field in FORBIDDEN_FIELDS:
                    sid = entry.get("id", f"#{i}")
                    raise ForbiddenServiceField(
                        f"service entry {sid!r} must not carry {FORBIDDEN_FIELDS[field]} ({field!r}): "
                        "deploy.json says only which commit runs; config.json and the manifests say "
                        "where and how", path=f"{base}[{i}].{field}",
                        details={"service": sid, "field": field, "category": FORBIDDEN_FIELDS[field]})
