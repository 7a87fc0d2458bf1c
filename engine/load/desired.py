"""The desired state: deploy.json joined with the catalog and the k3s manifests, every commit
resolved to a full SHA through the remote (M3, M4, M5, M9).

This is the front door of every command. Argument rules that need no I/O (P3) run first, so a
refused command does no work at all.
"""

from __future__ import annotations

from pathlib import Path

import attrs

from udeploy.engine.errors import CatalogEntryMissing, ServiceNotFound
from udeploy.engine.load import policy_args
from udeploy.engine.load.catalog import Catalog, EnvironmentSettings, EnvironmentTarget, Microservice, read_catalog
from udeploy.engine.load.jsonschema_check import parse_json
from udeploy.engine.load.k8s_manifest import K8sObject, parse_manifest, select
from udeploy.engine.load.manifest import (
    CiDeclaration,
    DeployManifest,
    ServiceEntry,
    parse_deploy,
    require_known_environment,
)
from udeploy.engine.load.source import DEFAULT_REF, ManifestSource, Reader, open_env_source, open_file_source
from udeploy.engine.provider_api import SourceReader, source_reader


@attrs.frozen
class Request:
    """What the operator asked for; validated by `policy_args` before any I/O."""

    env: str | None = None
    file: Path | None = None
    services: tuple[str, ...] = ()
    commit: str | None = None
    checkout: Path = attrs.field(factory=Path.cwd)
    ref: str = DEFAULT_REF


def v1_labels(service_id: str, repo: str, commit: str, dockerfile: str | None) -> dict[str, str]:
    """V1: the labels every artifact carries (CI stamps them, CD checks them)."""
    return {"unidesk.ai/service-id": service_id, "unidesk.ai/source-repo": repo,
            "unidesk.ai/source-commit": commit, "unidesk.ai/dockerfile": dockerfile or ""}


@attrs.frozen
class DesiredService:
    id: str
    repo: str
    requested_commit: str  # as written in deploy.json, or the --commit override
    resolved_commit: str  # always 40 hex characters
    commit_override: bool
    entry_path: str
    microservice: Microservice
    environment: EnvironmentTarget | None  # None in local-manifest mode
    k3s_objects: tuple[K8sObject, ...] = ()

    def deploy_stamp(self) -> dict[str, str]:
        """V2: the runtime env / annotations every deploy writes."""
        return {"UNIDESK_DEPLOY_SERVICE_ID": self.id, "UNIDESK_DEPLOY_REPO": self.repo,
                "UNIDESK_DEPLOY_COMMIT": self.resolved_commit, "UNIDESK_DEPLOY_REQUESTED_COMMIT": self.requested_commit}

    def expected_labels(self) -> dict[str, str]:
        """V1: the labels the image built from this service's commit carries."""
        return v1_labels(self.id, self.repo, self.resolved_commit, self.microservice.dockerfile)


@attrs.frozen
class DesiredState:
    mode: str
    environment: str | None
    settings: EnvironmentSettings | None
    source: ManifestSource
    catalog: Catalog
    services: tuple[DesiredService, ...]
    ci: CiDeclaration | None


def load_desired(request: Request, git: SourceReader | None = None) -> DesiredState:
    policy_args.check_request(request)
    git = git or source_reader()
    reader: Reader
    if request.env is not None:
        require_known_environment(request.env)
        reader, source = open_env_source(git, request.checkout, request.ref)
        deploy_data = reader.read("deploy.json")
    else:
        assert request.file is not None
        reader, deploy_data, source = open_file_source(request.file, request.checkout)
    deploy_name = "deploy.json" if request.env else str(request.file)
    manifest = parse_deploy(parse_json(deploy_data, deploy_name), source=deploy_name, environment=request.env)
    catalog = read_catalog(reader)
    environment = request.env  # local mode plans against catalog defaults, not an environment
    joined = _join(manifest, catalog)
    selected = _select(joined, request.services)
    if request.commit is not None:
        policy_args.check_commit_override(request, selected[0][1], environment)
    memo = _Memo(reader, git)
    services = tuple(_desired(entry, ms, environment, memo, request) for entry, ms in selected)
    return DesiredState(
        mode="env" if request.env else "file", environment=request.env,
        settings=catalog.environments.get(request.env) if request.env else None,
        source=source, catalog=catalog, services=services, ci=manifest.ci)


Joined = list[tuple[ServiceEntry, Microservice]]


def _join(manifest: DeployManifest, catalog: Catalog) -> Joined:
    """M3: every deploy.json service must exist in config.json."""
    out = []
    for entry in manifest.services:
        ms = catalog.microservices.get(entry.id)
        if ms is None:
            raise CatalogEntryMissing(f"service {entry.id!r} is in deploy.json but not in config.json "
                                      "microservices[]", path=entry.path)
        out.append((entry, ms))
    return out


def _select(joined: Joined, wanted: tuple[str, ...]) -> Joined:
    if not wanted:
        return joined
    by_id = {e.id: (e, m) for e, m in joined}
    unknown = [s for s in wanted if s not in by_id]
    if unknown:
        raise ServiceNotFound(f"--service {', '.join(unknown)}: not in the selected deploy.json services "
                              f"({', '.join(sorted(by_id))})", path=unknown[0])
    return [by_id[s] for s in dict.fromkeys(wanted)]


class _Memo:
    """Work shared between services: many pin the same commit, several share one k3s manifest.
    Failures are not remembered, so each failing entry raises with its own path."""

    def __init__(self, reader: Reader, git: SourceReader) -> None:
        self.reader, self.git = reader, git
        self._commits: dict[tuple[str, str], str] = {}
        self._manifests: dict[str, tuple[K8sObject, ...]] = {}

    def resolve(self, repo: str, commit: str, path: str) -> str:
        if (repo, commit) not in self._commits:
            self._commits[(repo, commit)] = self.git.resolve(repo, commit, path=path)
        return self._commits[(repo, commit)]

    def manifest(self, path: str) -> tuple[K8sObject, ...]:
        if path not in self._manifests:
            self._manifests[path] = parse_manifest(self.reader.read(path), path)
        return self._manifests[path]


def _desired(entry: ServiceEntry, ms: Microservice, environment: str | None, memo: _Memo,
             request: Request) -> DesiredService:
    env_target = ms.environments.get(environment) if environment else None
    objects: tuple[K8sObject, ...] = ()
    if env_target and env_target.target and env_target.target.k3s:
        k3s = env_target.target.k3s
        objects = select(memo.manifest(k3s.manifest), k3s.objects, k3s.manifest)
    requested = request.commit or entry.commit_id
    resolved = memo.resolve(entry.repo, requested, f"{entry.path}.commitId")
    return DesiredService(id=entry.id, repo=entry.repo, requested_commit=requested, resolved_commit=resolved,
                          commit_override=request.commit is not None, entry_path=entry.path, microservice=ms,
                          environment=env_target, k3s_objects=objects)
