"""`udeploy validate --kubectl-dry-run` against throwaway API servers (emulator.py, own processes).

The lab's API server honours dryRun=All: every object is sent and nothing is stored. kmock's plain
emulator ignores it: the probe notices, no manifest object is sent, and the check falls back to
client-side decoding, saying so. The kubeconfig is always the explicit one (E2), never $KUBECONFIG.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from tests.validate.support import K3S, break_manifest, validate

EMULATOR = Path(__file__).with_name("emulator.py")
KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{{name: t, cluster: {{server: "{url}"}}}}]
contexts: [{{name: t, context: {{cluster: t, user: t}}}}]
current-context: t
users: [{{name: t, user: {{token: test}}}}]
"""
DEFAULT_NAMESPACES = ["default", "kube-public", "kube-system"]


@pytest.fixture
def emulator(tmp_path: Path) -> Iterator[Callable[[str], tuple[Path, client.ApiClient]]]:
    """start(mode) -> (a kubeconfig for it, a client); each emulator is stopped after the test."""
    procs: list[subprocess.Popen[str]] = []
    clients: list[client.ApiClient] = []

    def start(mode: str) -> tuple[Path, client.ApiClient]:
        proc = subprocess.Popen([sys.executable, str(EMULATOR), mode], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://"), f"emulator {mode} did not start"
        kubeconfig = tmp_path / f"kubeconfig-{mode}.yaml"
        kubeconfig.write_text(KUBECONFIG.format(url=url))
        cfg = client.Configuration()
        cfg.host = url
        clients.append(client.ApiClient(cfg))
        return kubeconfig, clients[-1]

    yield start
    for api in clients:
        api.close()
    for proc in procs:
        proc.terminate()
        proc.wait(timeout=10)


def outcomes(doc: dict[str, Any], file: str) -> dict[str, str]:
    manifest = next(m for m in doc["manifests"] if m["path"] == f"{K3S}/{file}")
    return {r["object"]: r["outcome"] for r in manifest["dryRun"]}


def namespaces(api: client.ApiClient) -> list[str]:
    return sorted(n.metadata.name for n in client.CoreV1Api(api).list_namespace().items)


def test_E2_D1_dry_run_sends_every_object_with_dry_run_and_the_server_stores_nothing(
        repo: Path, emulator: Callable[[str], tuple[Path, client.ApiClient]]) -> None:
    kubeconfig, api = emulator("lab")
    code, doc = validate("--repo", str(repo), "--kubectl-dry-run", "--kubeconfig", str(kubeconfig))
    assert code == 0, json.dumps(doc, indent=2)
    assert doc["dryRun"]["mode"] == "server" and doc["dryRun"]["reason"] is None
    assert doc["dryRun"]["source"] == "--kubeconfig"
    foundation = outcomes(doc, "dev/unidesk-dev-foundation.k8s.yaml")
    assert foundation.pop("Namespace/unidesk-dev") == "would-create"
    assert set(foundation.values()) == {"namespace-pending"}  # the foundation itself creates unidesk-dev
    assert set(outcomes(doc, "dev/unidesk-dev-core.k8s.yaml").values()) == {"namespace-pending"}
    assert set(outcomes(doc, "decision-center.k8s.yaml").values()) == {"namespace-missing"}
    assert namespaces(api) == DEFAULT_NAMESPACES
    assert client.CoreV1Api(api).list_namespaced_config_map("default").items == []  # the probe, too


def test_D1_D3_dry_run_in_existing_namespaces_checks_every_object_server_side(
        repo: Path, emulator: Callable[[str], tuple[Path, client.ApiClient]]) -> None:
    kubeconfig, api = emulator("lab")
    core = client.CoreV1Api(api)
    for name in ("unidesk-dev", "unidesk"):
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    code, doc = validate("--repo", str(repo), "--kubectl-dry-run", "--kubeconfig", str(kubeconfig))
    assert code == 0, json.dumps(doc, indent=2)
    foundation = outcomes(doc, "dev/unidesk-dev-foundation.k8s.yaml")
    assert foundation.pop("Namespace/unidesk-dev") == "would-update"
    assert set(foundation.values()) == {"would-create"}
    assert outcomes(doc, "dev/unidesk-dev-core.k8s.yaml") == {
        "Deployment/backend-core-dev": "would-create", "Service/backend-core-dev": "would-create",
        "Deployment/frontend-dev": "would-create", "Service/frontend-dev": "would-create"}
    assert client.AppsV1Api(api).list_deployment_for_all_namespaces().items == []
    assert core.list_service_for_all_namespaces().items == []


def test_D3_dry_run_server_rejection_is_a_finding(
        repo: Path, emulator: Callable[[str], tuple[Path, client.ApiClient]]) -> None:
    """The static rules pass a selector that matches no template label; the API server does not."""
    kubeconfig, api = emulator("lab")
    client.CoreV1Api(api).create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="unidesk-dev")))
    path = repo / K3S / "dev/unidesk-dev-core.k8s.yaml"
    break_manifest(path, [{"object": "Deployment/frontend-dev", "set": "spec/selector/matchLabels/app", "value": "x"}])
    code, doc = validate("--manifest", str(path), "--kubectl-dry-run", "--kubeconfig", str(kubeconfig))
    assert code == 1
    [finding] = doc["manifests"][0]["findings"]
    assert (finding["rule"], finding["object"]) == ("K8S-DRY-RUN", "Deployment/frontend-dev")
    assert "422 Invalid" in finding["summary"] and "selector" in finding["summary"]


def test_E2_a_server_that_ignores_dry_run_gets_no_manifest_object(
        repo: Path, emulator: Callable[[str], tuple[Path, client.ApiClient]]) -> None:
    kubeconfig, api = emulator("plain")
    code, doc = validate("--repo", str(repo), "--kubectl-dry-run", "--kubeconfig", str(kubeconfig))
    assert code == 0, json.dumps(doc, indent=2)
    assert doc["dryRun"]["mode"] == "structural"
    assert doc["dryRun"]["reason"] == "server-ignored-dry-run"
    assert "no manifest object was sent" in doc["dryRun"]["note"]
    assert set(outcomes(doc, "dev/unidesk-dev-foundation.k8s.yaml").values()) == {"decoded"}
    core = client.CoreV1Api(api)
    assert core.list_namespaced_config_map("default").items == []  # the probe was removed again
    assert core.list_namespaced_config_map("unidesk-dev").items == []
    with pytest.raises(ApiException, match="not declared"):  # kmock has never seen a Deployment at all
        client.AppsV1Api(api).list_deployment_for_all_namespaces()


def test_E2_unreachable_api_falls_back_to_the_structural_check(repo: Path, tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text(KUBECONFIG.format(url=f"http://127.0.0.1:{port}"))
    path = repo / K3S / "mdtodo.k8s.yaml"
    break_manifest(path, [{"object": "Deployment/mdtodo", "set": "spec/replicas", "value": "one"}])
    code, doc = validate("--manifest", str(path), "--kubectl-dry-run", "--kubeconfig", str(kubeconfig))
    assert code == 1
    assert (doc["dryRun"]["mode"], doc["dryRun"]["reason"]) == ("structural", "api-unreachable")
    assert [(r["object"], r["outcome"]) for r in doc["manifests"][0]["dryRun"]] == [
        ("Deployment/mdtodo", "rejected"), ("Service/mdtodo", "decoded")]
    assert {f["rule"] for f in doc["manifests"][0]["findings"]} == {"K8S-SCHEMA", "K8S-DRY-RUN"}


def test_E2_dry_run_never_falls_back_to_the_default_kubeconfig(
        repo: Path, emulator: Callable[[str], tuple[Path, client.ApiClient]], monkeypatch: pytest.MonkeyPatch) -> None:
    kubeconfig, _ = emulator("lab")
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))  # a default context that must not be used
    config = json.loads((repo / "config.json").read_text())
    del config["hosts"]["D601-k3s"]
    (repo / "config.json").write_text(json.dumps(config))
    code, doc = validate("--repo", str(repo), "--kubectl-dry-run")
    assert code == 0
    assert (doc["dryRun"]["mode"], doc["dryRun"]["reason"]) == ("structural", "kubeconfig-missing")
    assert os.environ["KUBECONFIG"] == str(kubeconfig)


def test_E2_dry_run_reads_the_kubeconfig_config_json_names(repo: Path) -> None:
    config = json.loads((repo / "config.json").read_text())
    config["hosts"]["D601-k3s"]["kubeconfig"] = str(repo / "no-such-kubeconfig.yaml")
    (repo / "config.json").write_text(json.dumps(config))
    code, doc = validate("--repo", str(repo), "--kubectl-dry-run")
    assert code == 0
    assert doc["dryRun"]["source"] == "config.json hosts.D601-k3s.kubeconfig"
    assert doc["dryRun"]["kubeconfig"] == str(repo / "no-such-kubeconfig.yaml")
    assert doc["dryRun"]["reason"] == "kubeconfig-missing"
