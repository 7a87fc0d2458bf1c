"""`udeploy validate`: the static checks of the k3s manifests (D1-D4, E2, object schemas), the db
guard run for real (D5), and an optional dry-run against the configured Kubernetes API.

The pure rules are `engine.manifest_rules`; running the guard script (`providers.db_guard`) and
the API dry-run (`providers.kube_dry_run`) are provider work; this module reads the manifests,
joins the results and renders the one JSON document. A finding is not a crash: the
document is always printed, exit 0 when nothing was found and 1 otherwise. Warnings (a file no
named rule set claims, so only the generic rules ran) are the manifest's `notes`, not findings.

config.json is pull-request content: a field of the wrong JSON type is a `manifest-invalid` naming
its JSON path, and a manifest path it names must stay inside the repository (no absolute path, no
`..`, no symlink out), or it is refused by name before anything is read.

The guard script is pull-request content: it never runs on this machine, only in a locked-down
throwaway container on the Docker engine the operator names (`--sandbox-docker-host`, else the
standard docker environment), never one the repository names. No engine is a D5 finding, not a
pass; `--skip-db-guard` is the operator's explicit way to leave D5's run out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import attrs
import typer

from udeploy.engine.checks.manifest_rules import (
    KUBERNETES_VERSION,
    address,
    check_manifest,
    rule_sets_for,
    rules_for,
    split_address,
)
from udeploy.engine.cli.common import RepoOpt, app, emit, guarded, progress
from udeploy.engine.errors import Diagnostic, InputTooLarge, ManifestInvalid, Severity, UsageError
from udeploy.engine.load.input_files import MAX_MANIFEST_BYTES, read_input
from udeploy.engine.load.jsonschema_check import parse_json
from udeploy.engine.load.k8s_manifest import MAX_YAML_BYTES, K8sObject, parse_manifest
from udeploy.providers.db_guard import DbGuardSandbox
from udeploy.providers.kube_dry_run import DryRunner

READ, DRY_RUN = "MANIFEST-READ", "K8S-DRY-RUN"


@attrs.frozen
class Loaded:
    path: str  # as config.json names it, or as given with --manifest
    objects: tuple[K8sObject, ...]
    findings: tuple[Diagnostic, ...]


def _read_config(repo: Path) -> Any:
    config = repo / "config.json"
    if not config.is_file():
        raise UsageError(f"no config.json under {repo}: pass --repo or --manifest", path=str(config))
    return parse_json(read_input(config, label="config.json", max_bytes=MAX_MANIFEST_BYTES, error=ManifestInvalid),
                      str(config))


# --- config.json, read as untrusted JSON ----------------------------------------------------------

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_JSON_TYPE_NAMES: dict[type, str] = {dict: "an object", list: "a list", str: "a string"}


def _json_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if _IDENTIFIER.fullmatch(key) else f"{parent}[{key!r}]"


def _field(value: Any, key: str, expected: type, where: str) -> Any:
    """value[key] when present and of the `expected` JSON type, None when absent; else `manifest-invalid`."""
    found = value.get(key) if isinstance(value, dict) else None
    if found is not None and not isinstance(found, expected):
        at = _json_path(where, key)
        kind = _JSON_TYPE_NAMES[expected]
        raise ManifestInvalid(f"config.json {at} must be {kind}, not {type(found).__name__}", path=f"config.json#{at}")
    return found


def _entries(value: dict[str, Any] | None, where: str) -> Iterable[tuple[str, dict[str, Any]]]:
    """(JSON path, object) for every value of an object of objects; a non-object value is `manifest-invalid`."""
    for key in value or {}:
        at = _json_path(where, key)
        entry = value[key] if value else None
        if not isinstance(entry, dict):
            raise ManifestInvalid(f"config.json {at} must be an object, not {type(entry).__name__}",
                                  path=f"config.json#{at}")
        yield at, entry


def configured_manifests(config: Any) -> list[tuple[str, str]]:
    """(manifest path, its JSON path in config.json) for every `environments.*.prerequisites.*.manifest`,
    then every microservice's k3s manifest; first-seen order, no repeats."""
    if not isinstance(config, dict):
        raise ManifestInvalid(f"config.json must be an object, not {type(config).__name__}", path="config.json#$")
    found: list[tuple[Any, str]] = []
    for env_at, env in _entries(_field(config, "environments", dict, "$"), "$.environments"):
        for pre_at, pre in _entries(_field(env, "prerequisites", dict, env_at), f"{env_at}.prerequisites"):
            found.append((_field(pre, "manifest", str, pre_at), _json_path(pre_at, "manifest")))
    for i, service in enumerate(_field(config, "microservices", list, "$") or []):
        service_at = _json_path("$.microservices", i)
        if not isinstance(service, dict):
            raise ManifestInvalid(f"config.json {service_at} must be an object", path=f"config.json#{service_at}")
        for env_at, env in _entries(_field(service, "environments", dict, service_at), f"{service_at}.environments"):
            target = _field(env, "target", dict, env_at)
            k3s = _field(target, "k3s", dict, f"{env_at}.target")
            found.append((_field(k3s, "manifest", str, f"{env_at}.target.k3s"), f"{env_at}.target.k3s.manifest"))
    first_seen: dict[str, str] = {}
    for path, at in found:
        if isinstance(path, str):
            first_seen.setdefault(path, at)
    return list(first_seen.items())


def inside_repo(repo: Path, manifest: str, at: str) -> Path:
    """The file config.json names, refused by name when it could leave the repository."""
    pure = PurePosixPath(manifest)
    refusals = [(not manifest.strip(), "is empty"), (pure.is_absolute(), "is absolute"),
                (".." in pure.parts, "climbs out with '..'"), ("\\" in manifest, "holds a backslash"),
                ("\0" in manifest, "holds a NUL byte")]
    refusal = next((reason for bad, reason in refusals if bad), None)
    file = repo / manifest
    if refusal is None:
        try:
            if not file.resolve().is_relative_to(repo.resolve()):
                refusal = "leaves the repository through a symlink"
        except (OSError, RuntimeError):  # a symlink loop: reading it fails, and says so, in `load`
            pass
    if refusal:
        raise ManifestInvalid(f"config.json {at} names manifest {manifest[:200]!r}, which {refusal}: refused "
                              "(manifests must be relative paths inside the repository)", path=f"config.json#{at}")
    return file


def repo_manifests(repo: Path, config: Any) -> list[tuple[str, Path]]:
    """(label, file) for every manifest config.json names, each checked to stay inside `repo`."""
    return [(manifest, inside_repo(repo, manifest, at)) for manifest, at in configured_manifests(config)]


def load(label: str, file: Path) -> Loaded:
    try:
        objects = parse_manifest(read_input(file, label=label, max_bytes=MAX_YAML_BYTES, error=ManifestInvalid), label)
    except OSError as exc:
        return Loaded(label, (), (Diagnostic(Severity.ERROR, READ, f"cannot read {label}: {exc.strerror}",
                                             address=label),))
    except (ManifestInvalid, InputTooLarge) as exc:
        return Loaded(label, (), (Diagnostic(Severity.ERROR, READ, f"{exc.message} ({exc.code})", address=label),))
    return Loaded(label, objects, check_manifest(label, objects))


def kubeconfig_for(config: Any, override: Path | None) -> tuple[Path | None, str]:
    """The explicitly configured kubeconfig (E2: never the default context or ~/.kube/config)."""
    if override:
        return override, "--kubeconfig"
    hosts = config.get("hosts") if isinstance(config, dict) else None
    for host_id, host in (hosts.items() if isinstance(hosts, dict) else ()):
        host = host if isinstance(host, dict) else {}
        kubeconfig = host.get("kubeconfig")
        if host.get("provider") == "k3s-native" and isinstance(kubeconfig, str) and kubeconfig:
            return Path(kubeconfig), f"config.json hosts.{host_id}.kubeconfig"
    return None, "none"


# --- the command --------------------------------------------------------------------------------

def _finding_json(d: Diagnostic) -> dict[str, Any]:
    return {"rule": d.code, "severity": d.severity.value, "object": split_address(d.address)[1],
            "summary": d.summary}


def validate_manifests(manifests: Iterable[tuple[str, Path]], *, dry_runner: DryRunner | None,
                       db_guard: DbGuardSandbox) -> dict[str, Any]:
    loaded = [load(label, file) for label, file in manifests]
    if dry_runner:
        dry_runner.creating = {o.name for m in loaded for o in m.objects if o.kind == "Namespace"}
    docs = []
    for m in loaded:
        findings = [d for d in m.findings if d.severity is Severity.ERROR]
        doc: dict[str, Any] = {"path": m.path, "rules": list(rules_for(m.path, m.objects)) if m.objects else [],
                               "ruleSets": list(rule_sets_for(m.objects)),
                               "objects": [{"object": o.ref, "namespace": o.namespace} for o in m.objects]}
        if "D5" in doc["rules"]:
            doc["dbGuard"], guard_findings = db_guard.run(m.path, m.objects)
            findings += guard_findings
        if dry_runner:
            doc["dryRun"] = [dry_runner.run(o) for o in m.objects]
            findings += [Diagnostic(Severity.ERROR, DRY_RUN, f"{r['object']}: {r['message']}",
                                    address=address(m.path, r["object"]))
                         for r in doc["dryRun"] if r["outcome"] == "rejected"]
        doc["findings"] = [_finding_json(d) for d in findings]
        doc["notes"] = [_finding_json(d) for d in m.findings if d.severity is not Severity.ERROR]
        docs.append(doc)
    return {"ok": not any(d["findings"] for d in docs), "kubernetesVersion": KUBERNETES_VERSION,
            "dryRun": dry_runner.header if dry_runner else None, "manifests": docs}


@app.command("validate")
def validate_command(
    manifest: Annotated[list[Path] | None, typer.Option("--manifest", help="Validate this k3s manifest "
                                                        "(repeatable; default: every manifest config.json names).")]
    = None,
    repo: RepoOpt = Path("."),
    kubectl_dry_run: Annotated[bool, typer.Option("--kubectl-dry-run", help="Also dry-run every object (dryRun=All) "
                                                  "against the configured k3s API; falls back to a client-side "
                                                  "structural check, and says so, when it cannot.")] = False,
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig", help="Kubeconfig for --kubectl-dry-run "
                                                    "(default: the k3s-native host's in config.json).")] = None,
    sandbox_docker_host: Annotated[str | None, typer.Option(
        "--sandbox-docker-host", envvar="UDEPLOY_SANDBOX_DOCKER_HOST",
        help="Docker engine that runs the manifest's db-guard script (D5) in throwaway containers without "
             "network (default: DOCKER_HOST, else the local socket). Never taken from the repository.")] = None,
    skip_db_guard: Annotated[bool, typer.Option("--skip-db-guard", help="Do not run the db-guard script (D5); "
                                                "the report says it was skipped.")] = False,
) -> None:
    """Check the k3s manifests: object schemas, dev isolation (D1-D4), ClusterIP-only (E2), db guard (D5)."""

    def run() -> int:
        config = None if manifest and not (repo / "config.json").is_file() else _read_config(repo)
        targets = ([(str(p), p) for p in manifest] if manifest
                   else repo_manifests(repo, config))
        progress(f"validating {len(targets)} manifest(s)")
        runner = DryRunner.open(*kubeconfig_for(config, kubeconfig), say=progress) if kubectl_dry_run else None
        db_guard = DbGuardSandbox(docker_host=sandbox_docker_host, skip=skip_db_guard)
        try:
            doc = validate_manifests(targets, dry_runner=runner, db_guard=db_guard)
        finally:
            db_guard.close()
            if runner:
                runner.close()
        emit(doc)
        return 0 if doc["ok"] else 1

    guarded(run)

