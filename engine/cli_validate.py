"""`udeploy validate`: the static checks of the k3s manifests (D1-D4, E2, object schemas), the db
guard run for real (D5), and an optional dry-run against the configured Kubernetes API.

The pure rules are `engine.manifest_rules`; this module reads files, runs the guard script with
`sh`, talks to the API server, and renders the one JSON document. A finding is not a crash: the
document is always printed, exit 0 when nothing was found and 1 otherwise.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any

import attrs
import typer
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException
from kubernetes.utils.create_from_yaml import create_from_yaml_single_item
from urllib3.exceptions import HTTPError

from engine.cli_common import RepoOpt, app, emit, guarded, progress
from engine.errors import Diagnostic, ManifestInvalid, Severity, UsageError
from engine.jsonschema_check import parse_json
from engine.k8s_manifest import K8sObject, parse_manifest
from engine.manifest_rules import (
    DB_GUARD,
    KUBERNETES_VERSION,
    address,
    check_manifest,
    db_guard_script,
    dev_database_url,
    rules_for,
    split_address,
)

READ, DRY_RUN = "MANIFEST-READ", "K8S-DRY-RUN"
# D5 inputs: the dev URL must pass (the Secret template's own, else this one); each of these
# production-looking URLs must be refused.
FALLBACK_DEV_URL = "postgres://unidesk_dev:dev@postgres-dev.unidesk-dev.svc.cluster.local:5432/unidesk_dev"
PROD_LIKE_URLS = (
    "postgres://unidesk:prod@unidesk-database:5432/unidesk",  # the production database (config.json prod)
    "postgres://unidesk:prod@d601-tcp-egress-gateway.unidesk.svc.cluster.local:15432/unidesk",  # its k3s route
    "postgres://unidesk_dev:dev@postgres-dev.unidesk-dev.svc.cluster.local:5432/unidesk",  # dev host, prod database
)
TIMEOUT = 5  # seconds per API call
# The kubernetes client is only partly typed: its untyped helpers are reached through Any.
_create_one: Any = create_from_yaml_single_item
_client_from_kubeconfig: Any = k8s_config.new_client_from_config


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


# --- D5: the db guard, for real ----------------------------------------------------------------

def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def run_db_guard(m: Loaded) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Run the ConfigMap's guard script with `sh`: the dev URL must pass, production-looking ones fail."""
    def finding(summary: str) -> Diagnostic:
        return Diagnostic(Severity.ERROR, "D5", summary, address=address(m.path, DB_GUARD[0]))

    script, sh = db_guard_script(m.objects), shutil.which("sh")
    if script is None:
        return {"ran": False}, [finding(f"{DB_GUARD[0]} has no {DB_GUARD[1]} to run")]
    if sh is None:
        return {"ran": False}, [finding("cannot run the db guard: no `sh` on PATH")]
    cases = [(dev_database_url(m.objects) or FALLBACK_DEV_URL, True), *((u, False) for u in PROD_LIKE_URLS)]
    runs, findings = [], []
    with tempfile.TemporaryDirectory(prefix="udeploy-db-guard-") as tmp:
        file = Path(tmp) / DB_GUARD[1]
        file.write_text(script)
        for url, should_pass in cases:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": url}
            try:
                done = subprocess.run([sh, str(file)], env=env, capture_output=True, text=True, timeout=10)
                code, output = done.returncode, (done.stdout + done.stderr).strip()
            except subprocess.TimeoutExpired:
                code, output = None, "timed out after 10s"
            runs.append({"databaseUrl": _redact(url), "expect": "accept" if should_pass else "reject",
                         "exitCode": code, "accepted": code == 0, "output": _redact(output)[-500:]})
            if (code == 0) != should_pass:
                verb = "rejected the dev" if should_pass else "accepted the production-looking"
                findings.append(finding(f"{DB_GUARD[1]} {verb} DATABASE_URL {_redact(url)}"))
    return {"ran": True, "script": f"{DB_GUARD[0]}#{DB_GUARD[1]}", "runs": runs}, findings


# --- --kubectl-dry-run ------------------------------------------------------------------------

def kubeconfig_for(config: Any, override: Path | None) -> tuple[Path | None, str]:
    """The explicitly configured kubeconfig (E2: never the default context or ~/.kube/config)."""
    if override:
        return override, "--kubeconfig"
    for host_id, host in ((config or {}).get("hosts") or {}).items():
        if host.get("provider") == "k3s-native" and host.get("kubeconfig"):
            return Path(host["kubeconfig"]), f"config.json hosts.{host_id}.kubeconfig"
    return None, "none"


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text.split())[:limit]


def _api_message(exc: ApiException) -> tuple[str, str | None]:
    """The Status message, and the namespace when the server says the namespace is missing."""
    try:
        status = parse_json(exc.body or "", "status")
    except ManifestInvalid:
        return _one_line(f"{exc.status} {exc.reason}"), None
    details = status.get("details") or {}
    missing_ns = details.get("name") if exc.status == 404 and details.get("kind") == "namespaces" else None
    return _one_line(f"{exc.status} {status.get('reason')}: {status.get('message')}"), missing_ns


@attrs.define
class DryRunner:
    """Dry-runs objects against one API server, or decodes them client-side when it cannot."""

    header: dict[str, Any]
    api: Any = None  # kubernetes ApiClient in server mode, None in structural mode
    creating: set[str] = attrs.field(factory=set)  # namespaces the validated manifests create

    @classmethod
    def open(cls, kubeconfig: Path | None, source: str) -> DryRunner:
        header: dict[str, Any] = {"kubeconfig": str(kubeconfig) if kubeconfig else None, "source": source,
                                  "server": None}

        def structural(reason: str, note: str) -> DryRunner:
            progress(f"dry-run: {note}; checking structure client-side")
            return cls({**header, "mode": "structural", "reason": reason, "note": note})

        if kubeconfig is None or not kubeconfig.is_file():
            return structural("kubeconfig-missing", f"no kubeconfig at {kubeconfig}" if kubeconfig
                              else "config.json names no k3s-native kubeconfig")
        try:
            api = _client_from_kubeconfig(config_file=str(kubeconfig))
        except (k8s_config.ConfigException, OSError, ValueError) as exc:
            return structural("kubeconfig-invalid", _one_line(f"{kubeconfig}: {exc}"))
        header["server"] = api.configuration.host
        reason, note = _probe(api)
        if reason is None:
            progress(f"dry-run: {header['server']} honours dryRun=All")
            return cls({**header, "mode": "server", "reason": None,
                        "note": "every object sent with dryRun=All; the server stored nothing"}, api)
        api.close()
        return structural(reason, note)

    def run(self, o: K8sObject) -> dict[str, str]:
        if not isinstance(o.body.get("apiVersion"), str):
            return {"object": o.ref, "outcome": "rejected", "message": "no apiVersion"}
        outcome, message = self._server(o) if self.api else _structural(o)
        return {"object": o.ref, "outcome": outcome, "message": message}

    def _server(self, o: K8sObject) -> tuple[str, str]:
        try:
            _create_one(self.api, dict(o.body), namespace=o.namespace or "default", dry_run="All",
                        _request_timeout=TIMEOUT)
            return "would-create", ""
        except AttributeError:  # the client maps the kind to no API method
            return "rejected", f"the Kubernetes client has no API for {o.body.get('apiVersion')} {o.kind}"
        except (HTTPError, OSError) as exc:
            return "rejected", _one_line(f"API call failed: {exc}")
        except ApiException as exc:
            message, missing_ns = _api_message(exc)
            if exc.status == 409:
                return self._update(o)
            if missing_ns and missing_ns in self.creating:
                return "namespace-pending", f"namespace {missing_ns} does not exist yet; a validated manifest " \
                                            "creates it"
            if missing_ns:
                return "namespace-missing", f"namespace {missing_ns} does not exist on the server: apply would fail"
            return "rejected", message

    def _update(self, o: K8sObject) -> tuple[str, str]:
        try:  # what `kubectl apply` does for an existing object: a server-side apply, dry-run
            _create_one(self.api, dict(o.body), apply=True, dry_run="All", _request_timeout=TIMEOUT)
            return "would-update", ""
        except Exception as exc:  # discovery or patch failed: the object exists, its update is unchecked
            return "exists", _one_line(f"already exists; the dry-run update failed: {exc}")

    def close(self) -> None:
        if self.api:
            self.api.close()


def _probe(api: Any) -> tuple[str | None, str]:
    """Does the server honour dryRun=All? Dry-run create a throwaway ConfigMap, then look for it.

    Returns (None, "") when it does, else (reason, note) for the structural fallback.
    """
    core = k8s.CoreV1Api(api)
    name = f"udeploy-dry-run-probe-{uuid.uuid4().hex[:10]}"
    body = k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name=name, namespace="default"))
    try:
        core.create_namespaced_config_map("default", body, dry_run="All", _request_timeout=TIMEOUT)
    except (HTTPError, OSError):
        return "api-unreachable", "the API server is not reachable"
    except ApiException as exc:
        return "api-refused-probe", f"the API server refused the dry-run probe: {_api_message(exc)[0]}"
    try:
        core.read_namespaced_config_map(name, "default", _request_timeout=TIMEOUT)
    except (HTTPError, OSError):
        return "api-unreachable", "the API server stopped answering after the dry-run probe"
    except ApiException as exc:
        if exc.status == 404:
            return None, ""
        return "api-refused-probe", f"the API server refused the probe read: {_api_message(exc)[0]}"
    try:  # the server stored our probe: remove it again
        core.delete_namespaced_config_map(name, "default", _request_timeout=TIMEOUT)
        left = "since deleted"
    except (ApiException, HTTPError, OSError) as exc:
        left = _one_line(f"left behind, delete it by hand: {exc}", 160)
    return "server-ignored-dry-run", (f"the API server ignored dryRun=All (it stored the probe ConfigMap "
                                      f"default/{name}, {left}); no manifest object was sent to it")


def _structural(o: K8sObject) -> tuple[str, str]:
    """Decode into the official client's model, as `kubectl apply --dry-run=client` decodes objects."""
    model = str(o.body.get("apiVersion", "")).rpartition("/")[2].capitalize() + o.kind
    if not hasattr(k8s, model):
        return "rejected", f"the Kubernetes client has no model {model}"
    try:
        decoder: Any = k8s.ApiClient()
        decoder._ApiClient__deserialize(dict(o.body), model)
    except (ValueError, TypeError) as exc:
        return "rejected", _one_line(str(exc))
    return "decoded", ""


# --- the command --------------------------------------------------------------------------------

def _finding_json(d: Diagnostic) -> dict[str, Any]:
    return {"rule": d.code, "severity": d.severity.value, "object": split_address(d.address)[1],
            "summary": d.summary}


def validate_manifests(manifests: Iterable[tuple[str, Path]], *, dry_runner: DryRunner | None) -> dict[str, Any]:
    loaded = [load(label, file) for label, file in manifests]
    if dry_runner:
        dry_runner.creating = {o.name for m in loaded for o in m.objects if o.kind == "Namespace"}
    docs = []
    for m in loaded:
        findings = list(m.findings)
        doc: dict[str, Any] = {"path": m.path, "rules": list(rules_for(m.path, m.objects)) if m.objects else [],
                               "objects": [{"object": o.ref, "namespace": o.namespace} for o in m.objects]}
        if "D5" in doc["rules"]:
            doc["dbGuard"], guard_findings = run_db_guard(m)
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
) -> None:
    """Check the k3s manifests: object schemas, dev isolation (D1-D4), ClusterIP-only (E2), db guard (D5)."""

    def run() -> int:
        config = None if manifest and not (repo / "config.json").is_file() else _read_config(repo)
        targets = ([(str(p), p) for p in manifest] if manifest
                   else [(p, repo / p) for p in configured_manifests(config)])
        progress(f"validating {len(targets)} manifest(s)")
        runner = DryRunner.open(*kubeconfig_for(config, kubeconfig)) if kubectl_dry_run else None
        try:
            doc = validate_manifests(targets, dry_runner=runner)
        finally:
            if runner:
                runner.close()
        emit(doc)
        return 0 if doc["ok"] else 1

    guarded(run)
