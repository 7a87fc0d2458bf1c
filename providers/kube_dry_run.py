"""`udeploy validate --kubectl-dry-run` (the `kube-dry-run` capability, `engine.provider_api.ManifestDryRunner`):
send each manifest object to the configured Kubernetes API with dryRun=All, after proving the server
honours dry-run (it stores nothing); otherwise decode the objects client-side with the official
models, and say so."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
from kubernetes import client as k8s
from kubernetes.client.exceptions import ApiException
from kubernetes.utils.create_from_yaml import create_from_yaml_single_item
from urllib3.exceptions import HTTPError

from udeploy.engine.errors import ManifestInvalid
from udeploy.engine.load.jsonschema_check import parse_json
from udeploy.engine.load.k8s_manifest import K8sObject
from udeploy.providers.kubeconfig import KubeconfigRefused, new_client

TIMEOUT = 5  # seconds per API call
# The kubernetes client is only partly typed: its untyped helpers are reached through Any.
_create_one: Any = create_from_yaml_single_item


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
    creating: frozenset[str] = frozenset()  # namespaces the validated manifests create

    @classmethod
    def open(cls, kubeconfig: Path | None, source: str, creating: frozenset[str] = frozenset(),
             say: Callable[[str], None] = lambda _: None) -> DryRunner:
        header: dict[str, Any] = {"kubeconfig": str(kubeconfig) if kubeconfig else None, "source": source,
                                  "server": None}

        def structural(reason: str, note: str) -> DryRunner:
            say(f"dry-run: {note}; checking structure client-side")
            return cls({**header, "mode": "structural", "reason": reason, "note": note}, creating=creating)

        if kubeconfig is None or not kubeconfig.is_file():
            return structural("kubeconfig-missing", f"no kubeconfig at {kubeconfig}" if kubeconfig
                              else "config.json names no k3s-native kubeconfig")
        try:
            api: Any = new_client(kubeconfig)
        except KubeconfigRefused as exc:
            return structural("kubeconfig-refused", _one_line(exc.message))
        header["server"] = api.configuration.host
        reason, note = _probe(api)
        if reason is None:
            say(f"dry-run: {header['server']} honours dryRun=All")
            return cls({**header, "mode": "server", "reason": None,
                        "note": "every object sent with dryRun=All; the server stored nothing"}, api, creating)
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
