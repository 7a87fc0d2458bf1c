"""`udeploy validate`: the static checks of the k3s manifests (D1-D4, E2, object schemas), the db
guard run for real (D5), and an optional dry-run against the configured Kubernetes API.

The pure rules are `engine.manifest_rules`; running the guard script (`providers.db_guard`) and
the API dry-run (`providers.kube_dry_run`) are provider work; this module reads the manifests,
joins the results and renders the one JSON document. A finding is not a crash: the
document is always printed, exit 0 when nothing was found and 1 otherwise.

The guard script is pull-request content: it never runs on this machine, only in a locked-down
throwaway container on the Docker engine the operator names (`--sandbox-docker-host`, else the
standard docker environment), never one the repository names. No engine is a D5 finding, not a
pass; `--skip-db-guard` is the operator's explicit way to leave D5's run out.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import attrs
import typer

from engine.cli_common import RepoOpt, app, emit, guarded, progress
from engine.errors import Diagnostic, ManifestInvalid, Severity, UsageError
from engine.jsonschema_check import parse_json
from engine.k8s_manifest import K8sObject, parse_manifest
from engine.manifest_rules import KUBERNETES_VERSION, address, check_manifest, rules_for, split_address
from providers.db_guard import DbGuardSandbox
from providers.kube_dry_run import DryRunner

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
    return parse_json(config.read_bytes(), str(config))


def configured_manifests(config: Any) -> list[str]:
    """Every `environments.*.prerequisites.*.manifest`, then every microservice's k3s manifest."""
    paths = [p.get("manifest") for env in (config.get("environments") or {}).values()
             for p in (env.get("prerequisites") or {}).values()]
    paths += [(e.get("target") or {}).get("k3s", {}).get("manifest") for m in config.get("microservices") or []
              for e in (m.get("environments") or {}).values()]
    return list(dict.fromkeys(p for p in paths if isinstance(p, str)))  # first-seen order, no repeats


def load(label: str, file: Path) -> Loaded:
    try:
        objects = parse_manifest(file.read_bytes(), label)
    except OSError as exc:
        return Loaded(label, (), (Diagnostic(Severity.ERROR, READ, f"cannot read {label}: {exc.strerror}",
                                             address=label),))
    except ManifestInvalid as exc:
        return Loaded(label, (), (Diagnostic(Severity.ERROR, READ, exc.message, address=label),))
    return Loaded(label, objects, check_manifest(label, objects))


def kubeconfig_for(config: Any, override: Path | None) -> tuple[Path | None, str]:
    """The explicitly configured kubeconfig (E2: never the default context or ~/.kube/config)."""
    if override:
        return override, "--kubeconfig"
    for host_id, host in ((config or {}).get("hosts") or {}).items():
        if host.get("provider") == "k3s-native" and host.get("kubeconfig"):
            return Path(host["kubeconfig"]), f"config.json hosts.{host_id}.kubeconfig"
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
        findings = list(m.findings)
        doc: dict[str, Any] = {"path": m.path, "rules": list(rules_for(m.path, m.objects)) if m.objects else [],
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
                   else [(p, repo / p) for p in configured_manifests(config)])
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

