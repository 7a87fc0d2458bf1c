"""Fixtures for the lab's Kubernetes (scripts/kubelab): its API, a namespace, a sample image.

Import them into a test module (tests/lab/conftest.py belongs to the rest of the lab). Each
fixture checks the component it needs by contacting it, and fails (never skips) when it is down.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

REPO = Path(__file__).resolve().parents[2]
KUBECONFIG = Path("/var/lib/udeploy-lab/k3s/kubeconfig.yaml")  # the fixed layout of docs/lab.md
CONTAINERD = "/run/udeploy-lab/k3s/containerd.sock"
CONTAINER_PREFIX = "kubelab."  # the controller's containerd IDs: kubelab.<ns>.<deployment>.<hash>


def _down(what: str) -> None:
    pytest.fail(f"lab not running: run `scripts/lab up` ({what})", pytrace=False)


def ctr(*args: str) -> str:
    """`ctr` against the k3s containerd, namespace k8s.io."""
    result = subprocess.run(["ctr", "--address", CONTAINERD, "-n", "k8s.io", *args],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, f"ctr {' '.join(args)}: {result.stderr}"
    return result.stdout


def lab_containers(namespace: str) -> list[str]:
    return [c for c in ctr("containers", "ls", "-q").split() if c.startswith(f"{CONTAINER_PREFIX}{namespace}.")]


def wait_for(check: Callable[[], Any], timeout: float = 20, what: str = "condition") -> Any:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}", pytrace=False)
        time.sleep(0.1)
    return result


@pytest.fixture(scope="session")
def kube_api() -> Iterator[client.ApiClient]:
    """A client for the lab API, configured from the lab kubeconfig only (never ~/.kube)."""
    if not KUBECONFIG.is_file():
        _down(f"no kubeconfig at {KUBECONFIG}")
    api = config.new_client_from_config(config_file=str(KUBECONFIG), context="udeploy-lab")
    try:
        client.VersionApi(api).get_code(_request_timeout=5)
    except Exception as exc:
        _down(f"the Kubernetes API at {api.configuration.host} does not answer: {exc}")
    try:
        ctr("version")
    except (AssertionError, OSError, subprocess.TimeoutExpired) as exc:
        _down(f"the k3s containerd at {CONTAINERD} does not answer: {exc}")
    yield api
    api.close()


@pytest.fixture()
def kube_namespace(kube_api: client.ApiClient) -> Iterator[str]:
    """A fresh namespace; deleting it at the end removes its objects and their containers."""
    core = client.CoreV1Api(kube_api)
    name = f"kubelab-test-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    try:
        core.delete_namespace(name)
    except ApiException as exc:
        if exc.status != 404:
            raise
    wait_for(lambda: not lab_containers(name), what=f"the containers of namespace {name} to go")


@pytest.fixture(scope="session")
def kube_sample_image(kube_api: client.ApiClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A sample-service image (busybox httpd serving /health, see docs/lab.md) imported into the
    k3s containerd. Yields its short Kubernetes reference; containerd stores docker.io/library/..."""
    spec = importlib.util.spec_from_file_location("kubelab_testimage", REPO / "scripts/kubelab/testimage.py")
    assert spec and spec.loader
    testimage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(testimage)
    ref = f"kubelab-sample:{uuid.uuid4().hex[:8]}"
    tarball = tmp_path_factory.mktemp("kubelab") / "sample.tar"
    tarball.write_bytes(testimage.build(ref))
    ctr("images", "import", str(tarball))
    yield ref
    ctr("images", "rm", f"docker.io/library/{ref}")


def deployment(name: str, image: str, commit: str) -> dict[str, Any]:
    """A Deployment of the sample image stamped with `commit`, as a manifest would declare it."""
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": {"unidesk.ai/deploy-commit": commit}},
                "spec": {"containers": [{
                    "name": name,
                    "image": image,
                    "ports": [{"containerPort": 8080}],
                    "env": [
                        {"name": "UNIDESK_DEPLOY_SERVICE_ID", "value": name},
                        {"name": "UNIDESK_DEPLOY_COMMIT", "value": commit},
                        {"name": "UNIDESK_DEPLOY_REQUESTED_COMMIT", "value": commit},
                    ],
                }]},
            },
        },
    }


def service(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"type": "ClusterIP", "selector": {"app": name},
                 "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]},
    }


def rolled_out(apps: client.AppsV1Api, name: str, namespace: str) -> client.V1Deployment | None:
    """The Deployment once its rollout is complete by `kubectl rollout status` rules, else None."""
    dep = apps.read_namespaced_deployment_status(name, namespace)
    status, want = dep.status, dep.spec.replicas
    done = (
        (status.observed_generation or 0) >= dep.metadata.generation
        and (status.updated_replicas or 0) >= want
        and (status.replicas or 0) == (status.updated_replicas or 0)
        and (status.available_replicas or 0) >= (status.updated_replicas or 0)
    )
    return dep if done else None


def health(core: client.CoreV1Api, service_name: str, namespace: str) -> dict[str, Any]:
    """GET /health of a Service through the API server's service proxy (as udeploy verifies)."""
    body = core.connect_get_namespaced_service_proxy_with_path(
        name=f"{service_name}:8080", namespace=namespace, path="health"
    )
    return json.loads(body)
