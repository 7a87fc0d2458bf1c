"""`udeploy validate`: the static checks of the k3s manifests (D1-D4, E2, object schemas), the db
guard run for real (D5), and an optional dry-run against the configured Kubernetes API.

The pure rules are `engine.checks.manifest_rules`. Running the guard script and the API dry-run are
provider work, reached by name through the `db-guard` and `kube-dry-run` capabilities
(`engine.provider_api.DbGuardRunner`, `ManifestDryRunner`). This module reads the manifests, joins
the results into one `Validation` and renders it (`validation_json`). A finding is not a crash:
warnings (a file no named rule set claims, so only the generic rules ran) are a manifest's `notes`,
not findings.

config.json is pull-request content: it is checked against its JSON Schema before anything in it
is used (a violation is `manifest-invalid` naming its JSON path), and a manifest path it names must
stay inside the repository (no absolute path, no `..`, no symlink out), or it is refused by name
before anything is read.

The guard script is pull-request content too: the `db-guard` capability runs it on the Docker
engine the operator names (`sandbox_docker_host`, else the standard docker environment), never one
the repository names. `skip_db_guard` is the operator's explicit way to leave D5's run out.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import Path, PurePosixPath
from typing import Any

import attrs

from udeploy.engine.checks.manifest_rules import (
    KUBERNETES_VERSION,
    address,
    check_manifest,
    db_guard_request,
    rule_sets_for,
    rules_for,
    split_address,
)
from udeploy.engine.errors import Diagnostic, InputTooLarge, ManifestInvalid, Severity, UsageError
from udeploy.engine.load.input_files import MAX_MANIFEST_BYTES, read_input
from udeploy.engine.load.jsonschema_check import check, parse_json
from udeploy.engine.load.k8s_manifest import MAX_YAML_BYTES, K8sObject, parse_manifest
from udeploy.engine.provider_api import DbGuardRunner, ManifestDryRunner, capable, provider_class

READ, DRY_RUN = "MANIFEST-READ", "K8S-DRY-RUN"
_PLAIN_KEY = re.compile(r"[a-zA-Z][a-zA-Z0-9_]*")
DB_GUARD_CAPABILITY, DRY_RUN_CAPABILITY = "db-guard", "kube-dry-run"  # `udeploy.providers` entry points


@attrs.frozen
class ValidateRequest:
    """What the operator asked for. `manifests` empty: every manifest config.json names."""

    repo: Path
    manifests: tuple[Path, ...] = ()
    dry_run: bool = False  # --kubectl-dry-run
    kubeconfig: Path | None = None  # --kubeconfig, else the k3s-native host's in config.json
    sandbox_docker_host: str | None = None  # the operator's engine for D5, never config.json's
    skip_db_guard: bool = False


@attrs.frozen
class Loaded:
    path: str  # as config.json names it, or as given with --manifest
    objects: tuple[K8sObject, ...]
    findings: tuple[Diagnostic, ...]  # errors and warnings of the static rules


@attrs.frozen
class ManifestReport:
    """One manifest's result. `db_guard` and `dry_run` are the capabilities' own reports, kept as
    they give them; None when D5 does not apply / no dry run was asked for."""

    loaded: Loaded
    rules: tuple[str, ...]
    rule_sets: tuple[str, ...]
    findings: tuple[Diagnostic, ...]  # errors only: rules, D5 run, dry-run rejections
    db_guard: Mapping[str, Any] | None = None
    dry_run: tuple[Mapping[str, str], ...] | None = None

    @property
    def notes(self) -> tuple[Diagnostic, ...]:
        return tuple(d for d in self.loaded.findings if d.severity is not Severity.ERROR)


@attrs.frozen
class Validation:
    manifests: tuple[ManifestReport, ...]
    dry_run: Mapping[str, Any] | None  # the dry runner's header, None without --kubectl-dry-run

    @property
    def ok(self) -> bool:
        return not any(m.findings for m in self.manifests)


# --- config.json, read as untrusted JSON ----------------------------------------------------------

def _is_file(path: Path) -> bool:
    """A regular file is there; a name too long for the file system is simply not one."""
    try:
        return path.is_file()
    except OSError:
        return False


def read_config(repo: Path) -> Any:
    """config.json under `repo`, checked against its JSON Schema (`manifest-invalid` naming the path)."""
    config = repo / "config.json"
    if not _is_file(config):
        raise UsageError(f"no config.json under {repo}: pass --repo or --manifest", path=str(config))
    doc = parse_json(read_input(config, label="config.json", max_bytes=MAX_MANIFEST_BYTES, error=ManifestInvalid),
                     str(config))
    check(doc, "config", "config.json")
    return doc


def configured_manifests(config: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(manifest path, its JSON path in config.json) for every `environments.*.prerequisites.*.manifest`,
    then every microservice's k3s manifest; first-seen order, no repeats. `config` passed its schema."""
    found = [(pre["manifest"], f"$.environments{_key(env_id)}.prerequisites{_key(pre_id)}.manifest")
             for env_id, env in config["environments"].items()
             for pre_id, pre in env.get("prerequisites", {}).items()]
    found += [(target["k3s"]["manifest"], f"$.microservices[{i}].environments{_key(env_id)}.target.k3s.manifest")
              for i, service in enumerate(config["microservices"])
              for env_id, env in service["environments"].items()
              if (target := env["target"]) and "k3s" in target]
    first_seen: dict[str, str] = {}
    for path, at in found:
        first_seen.setdefault(path, at)
    return list(first_seen.items())


def _key(key: str) -> str:
    """A JSON path step written as jsonschema writes it (`ValidationError.json_path`), so a path
    refusal and a schema violation name the same place the same way."""
    if _PLAIN_KEY.fullmatch(key):
        return f".{key}"
    return "['" + key.replace("\\", "\\\\").replace("'", "\\'") + "']"


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


def repo_manifests(repo: Path, config: Mapping[str, Any]) -> list[tuple[str, Path]]:
    """(label, file) for every manifest config.json names, each checked to stay inside `repo`."""
    return [(manifest, inside_repo(repo, manifest, at)) for manifest, at in configured_manifests(config)]


def kubeconfig_for(config: Any, override: Path | None) -> tuple[Path | None, str]:
    """The explicitly configured kubeconfig (E2: never the default context or ~/.kube/config).

    Defensive about `config`'s shape: it is any JSON value here (tests hand it hostile ones)."""
    if override:
        return override, "--kubeconfig"
    hosts = config.get("hosts") if isinstance(config, dict) else None
    for host_id, host in (hosts.items() if isinstance(hosts, dict) else ()):
        host = host if isinstance(host, dict) else {}
        kubeconfig = host.get("kubeconfig")
        if host.get("provider") == "k3s-native" and isinstance(kubeconfig, str) and kubeconfig:
            return Path(kubeconfig), f"config.json hosts.{host_id}.kubeconfig"
    return None, "none"


# --- the manifests --------------------------------------------------------------------------------

def load(label: str, file: Path) -> Loaded:
    """The parsed objects and the static rules' findings; a file that cannot be read is a finding."""
    try:
        objects = parse_manifest(read_input(file, label=label, max_bytes=MAX_YAML_BYTES, error=ManifestInvalid), label)
    except OSError as exc:
        return Loaded(label, (), (Diagnostic(Severity.ERROR, READ, f"cannot read {label}: {exc.strerror}",
                                             address=label),))
    except (ManifestInvalid, InputTooLarge) as exc:
        return Loaded(label, (), (Diagnostic(Severity.ERROR, READ, f"{exc.message} ({exc.code})", address=label),))
    return Loaded(label, objects, check_manifest(label, objects))


def _capability(name: str, capability: type[Any], *args: Any) -> Any:
    """Open the provider registered under `name`; it must implement `capability`."""
    return capable(provider_class(name).open(*args), capability, name)


def report(m: Loaded, db_guard: DbGuardRunner, dry_runner: ManifestDryRunner | None) -> ManifestReport:
    """Join one manifest's rule findings, its D5 run (when D5 applies) and its dry-run rejections."""
    rules = rules_for(m.path, m.objects) if m.objects else ()
    findings = [d for d in m.findings if d.severity is Severity.ERROR]
    guard_report: Mapping[str, Any] | None = None
    if "D5" in rules:
        guard_report, guard_findings = db_guard.run(db_guard_request(m.path, m.objects))
        findings += guard_findings
    dry_run = tuple(dry_runner.run(o) for o in m.objects) if dry_runner else None
    findings += [Diagnostic(Severity.ERROR, DRY_RUN, f"{r['object']}: {r['message']}",
                            address=address(m.path, r["object"]))
                 for r in dry_run or () if r["outcome"] == "rejected"]
    return ManifestReport(m, rules, rule_sets_for(m.objects), tuple(findings), guard_report, dry_run)


def validate(request: ValidateRequest, say: Callable[[str], None] = lambda _: None) -> Validation:
    """Check the requested manifests (default: every one config.json names) and run D5 and the
    optional dry-run through their capabilities, which are always closed again."""
    repo = request.repo
    # With --manifest, config.json is optional (it may name the kubeconfig); without, it lists the manifests.
    config: Any = read_config(repo) if not request.manifests or _is_file(repo / "config.json") else None
    targets = [(str(p), p) for p in request.manifests] if request.manifests else repo_manifests(repo, config)
    say(f"validating {len(targets)} manifest(s)")
    loaded = [load(label, file) for label, file in targets]
    creating = frozenset(o.name for m in loaded for o in m.objects if o.kind == "Namespace")
    dry_runner: ManifestDryRunner | None = (
        _capability(DRY_RUN_CAPABILITY, ManifestDryRunner, *kubeconfig_for(config, request.kubeconfig), creating, say)
        if request.dry_run else None)
    try:
        db_guard: DbGuardRunner = _capability(DB_GUARD_CAPABILITY, DbGuardRunner, request.sandbox_docker_host,
                                              request.skip_db_guard)
        try:
            reports = tuple(report(m, db_guard, dry_runner) for m in loaded)
        finally:
            db_guard.close()
    finally:
        if dry_runner:
            dry_runner.close()
    return Validation(reports, dry_runner.header if dry_runner else None)


# --- the JSON document `udeploy validate` prints ----------------------------------------------------

def _finding_json(d: Diagnostic) -> dict[str, Any]:
    return {"rule": d.code, "severity": d.severity.value, "object": split_address(d.address)[1],
            "summary": d.summary}


def _manifest_json(r: ManifestReport) -> dict[str, Any]:
    doc: dict[str, Any] = {"path": r.loaded.path, "rules": list(r.rules), "ruleSets": list(r.rule_sets),
                           "objects": [{"object": o.ref, "namespace": o.namespace} for o in r.loaded.objects]}
    if r.db_guard is not None:
        doc["dbGuard"] = r.db_guard
    if r.dry_run is not None:
        doc["dryRun"] = list(r.dry_run)
    doc["findings"] = [_finding_json(d) for d in r.findings]
    doc["notes"] = [_finding_json(d) for d in r.notes]
    return doc


def validation_json(v: Validation) -> dict[str, Any]:
    return {"ok": v.ok, "kubernetesVersion": KUBERNETES_VERSION, "dryRun": v.dry_run,
            "manifests": [_manifest_json(m) for m in v.manifests]}
