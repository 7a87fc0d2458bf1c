"""The lab's Kubernetes (scripts/kubelab): the official client against the kmock-based API
server, and the lab controller running Deployments as containers in the k3s containerd."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.lab.kube_fixtures import (  # noqa: F401  (fixtures)
    KUBECONFIG,
    deployment,
    health,
    kube_api,
    kube_namespace,
    kube_sample_image,
    lab_containers,
    rolled_out,
    service,
    wait_for,
)


def test_client_loads_lab_kubeconfig_and_round_trips_objects(
    kube_api: client.ApiClient, kube_namespace: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path  # noqa: F811
) -> None:
    # Only the explicit file counts: the default locations point nowhere.
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    monkeypatch.setenv("HOME", str(tmp_path))
    contexts, active = config.list_kube_config_contexts(config_file=str(KUBECONFIG))
    assert [c["name"] for c in contexts] == ["udeploy-lab"]
    assert active["context"] == {"cluster": "udeploy-lab", "user": "udeploy-lab"}
    api = config.new_client_from_config(config_file=str(KUBECONFIG), context="udeploy-lab")
    assert api.configuration.host == "http://127.0.0.1:16443"
    assert api.configuration.api_key["BearerToken"].startswith("Bearer ")
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    assert client.VersionApi(api).get_code().git_version.startswith("v1.")

    created = apps.create_namespaced_deployment(kube_namespace, deployment("web", "absent-image:v1", "c1"))
    assert created.metadata.namespace == kube_namespace
    assert created.metadata.generation == 1 and created.metadata.uid
    core.create_namespaced_service(kube_namespace, service("web"))

    read = apps.read_namespaced_deployment("web", kube_namespace)
    assert read.spec.template.spec.containers[0].image == "absent-image:v1"
    svc = core.read_namespaced_service("web", kube_namespace)
    assert svc.spec.type == "ClusterIP" and svc.spec.cluster_ip
    listed = apps.list_namespaced_deployment(kube_namespace, label_selector="app=web").items
    assert [d.metadata.name for d in listed] == ["web"]
    assert apps.list_namespaced_deployment(kube_namespace, label_selector="app=other").items == []

    # The client's default patch is a strategic merge: env merges by name, the image stays.
    patched = apps.patch_namespaced_deployment("web", kube_namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": "web", "env": [{"name": "UNIDESK_DEPLOY_COMMIT", "value": "c2"}]}]}}}})
    container = patched.spec.template.spec.containers[0]
    assert container.image == "absent-image:v1"
    assert {e.name: e.value for e in container.env}["UNIDESK_DEPLOY_COMMIT"] == "c2"
    assert patched.metadata.generation == 2

    with pytest.raises(ApiException) as conflict:
        apps.create_namespaced_deployment(kube_namespace, deployment("web", "absent-image:v1", "c1"))
    assert conflict.value.status == 409


def test_rollout_runs_the_image_and_a_patch_replaces_the_container(
    kube_api: client.ApiClient, kube_namespace: str, kube_sample_image: str  # noqa: F811
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(kube_namespace, deployment("web", kube_sample_image, "c0ffee1"))
    core.create_namespaced_service(kube_namespace, service("web"))

    dep = wait_for(lambda: rolled_out(apps, "web", kube_namespace), what="the first rollout")
    assert dep.status.ready_replicas == 1 and dep.status.observed_generation == 1
    assert {c.type: c.status for c in dep.status.conditions} == {"Available": "True", "Progressing": "True"}
    first = health(core, "web", kube_namespace)
    assert first["status"] == "ok"
    assert first["service"] == "web"
    assert first["deploy"]["commit"] == first["deploy"]["requestedCommit"] == "c0ffee1"
    [old_container] = lab_containers(kube_namespace)

    apps.patch_namespaced_deployment("web", kube_namespace, {"spec": {"template": {"spec": {"containers": [
        {"name": "web", "env": [{"name": "UNIDESK_DEPLOY_COMMIT", "value": "beef002"}]}]}}}})
    dep = wait_for(lambda: rolled_out(apps, "web", kube_namespace), what="the rollout of the patch")
    assert dep.metadata.generation == dep.status.observed_generation == 2
    assert health(core, "web", kube_namespace)["deploy"]["commit"] == "beef002"
    [new_container] = lab_containers(kube_namespace)
    assert new_container != old_container

    apps.delete_namespaced_deployment("web", kube_namespace)
    wait_for(lambda: not lab_containers(kube_namespace), what="the container of the deleted Deployment to go")


def test_absent_image_reports_image_pull_back_off(
    kube_api: client.ApiClient, kube_namespace: str  # noqa: F811
) -> None:
    apps, core = client.AppsV1Api(kube_api), client.CoreV1Api(kube_api)
    apps.create_namespaced_deployment(kube_namespace, deployment("web", "kubelab-never-imported:v1", "c1"))
    core.create_namespaced_service(kube_namespace, service("web"))

    def observed() -> client.V1Deployment | None:
        dep = apps.read_namespaced_deployment_status("web", kube_namespace)
        return dep if dep.status.observed_generation == 1 else None

    status = wait_for(observed, what="the controller to observe the Deployment").status
    assert not status.ready_replicas and not status.available_replicas
    conditions = {c.type: c for c in status.conditions}
    assert conditions["Available"].status == "False"
    assert "ImagePullBackOff" in conditions["Available"].message
    assert "ImagePullBackOff" in conditions["Progressing"].message

    [pod] = core.list_namespaced_pod(kube_namespace, label_selector="app=web").items
    assert pod.status.phase == "Pending"
    assert pod.status.container_statuses[0].state.waiting.reason == "ImagePullBackOff"
    assert lab_containers(kube_namespace) == []
    with pytest.raises(ApiException) as unavailable:  # no ready endpoint behind the Service
        core.connect_get_namespaced_service_proxy_with_path(name="web:8080", namespace=kube_namespace, path="health")
    assert unavailable.value.status == 503
