"""The k3s-native provider against the lab's Kubernetes (kubelab) and its k3s containerd.

Every deploy here is the artifact-consumer chain the engine plans for a k3s target
(`engine/steps.py`): import-image -> apply-objects -> stamp -> rollout -> verify-live, with the same
`params`, after an apply-prerequisite of the namespace. The artifacts are the conftest's images (V1
labels, pushed to the lab registry); the manifests live in a real git repository and are read at a
commit. Everything is test-unique (`udtest<token>`) and removed afterwards: namespaces (and with them
the containers the lab controller ran), containerd images, Docker images.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import docker
import pytest
import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.lab.kube_fixtures import KUBECONFIG, ctr, kube_api, lab_containers, wait_for  # noqa: F401
from tests.labkit import context_tar
from tests.providers.support import Images, Source, deploy_env, free_port, init_repo, v1_labels
from udeploy.engine.errors import UsageError
from udeploy.engine.load.catalog import Catalog, Host, K3sTarget, Target
from udeploy.engine.provider_api import ObserveRequest, Presence, ProviderUnreachable, StepRequest, StepResult
from udeploy.providers import k3s_facts as facts
from udeploy.providers import k3s_native
from udeploy.providers.git import GitProvider
from udeploy.providers.k3s_containerd import Ctr
from udeploy.providers.k3s_native import K3sNativeProvider

REPO = Path(__file__).resolve().parents[2]
SVC_MANIFEST = "k3s/svc.k8s.yaml"
FOUNDATION = "k3s/foundation.k8s.yaml"
HEALTH_SH = ('mkdir -p /www && printf "%s" "$HEALTH" > /www/health && '
             'exec /bin/busybox httpd -f -p "${LISTEN_ADDR:+$LISTEN_ADDR:}$PORT" -h /www')


def _deployment(name: str, image: str, *, replicas: int = 1, command: list[str] | None = None,
                env: dict[str, str] | None = None, host_port: int | None = None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": name, "image": image, "ports": [{"name": "http", "containerPort": 8080}],
                                 "env": [{"name": k, "value": v} for k, v in (env or {}).items()]}
    if host_port:
        container["ports"][0]["hostPort"] = host_port
    if command:
        container["command"] = command
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name},
                                               "annotations": {"unidesk.ai/deploy-commit": "placeholder"}},
                                  "spec": {"containers": [container]}}}}


def _service(name: str, *, port: int = 8080, kind: str = "ClusterIP", selector: str | None = None) -> dict[str, Any]:
    ports: dict[str, Any] = {"name": "http", "port": port, "targetPort": "http"}
    if kind == "NodePort":
        ports["nodePort"] = 30080
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"type": kind, "selector": {"app": selector or name}, "ports": [ports]}}


def _yaml(*docs: dict[str, Any], namespace: str | None = None) -> str:
    out = []
    for doc in docs:
        doc = json.loads(json.dumps(doc))
        if namespace and doc["kind"] != "Namespace":
            doc["metadata"]["namespace"] = namespace
        out.append(yaml.safe_dump(doc, sort_keys=False))
    return "---\n".join(out)


@attrs.frozen
class K3sLab:
    """The provider, the test namespace and the git remote holding its manifests."""

    provider: K3sNativeProvider
    namespace: str
    remote: str
    manifest_commit: str
    images: Images
    local: str  # the containerd-local image name (importImage without ":{commit}")
    token: str

    def params(self, kind: str, commit: str, **extra: Any) -> dict[str, Any]:
        """The node params engine/steps.py records for a k3s artifact consumer."""
        base = {"namespace": self.namespace, "deployments": ["svc"]}
        source = {"manifestCommit": self.manifest_commit, "manifestRemote": self.remote}
        if kind == "import-image":
            out = {"image": self.images.ref(commit), "localImage": f"{self.local}:{commit}"}
        elif kind == "apply-prerequisite":
            out = {"manifest": FOUNDATION, "namespace": self.namespace, **source}
        elif kind == "apply-objects":
            out = {**base, "manifest": SVC_MANIFEST, "objects": ["Deployment/svc", "Service/svc"], **source}
        elif kind == "stamp":
            out = {**base, "image": f"{self.local}:{commit}", "annotations": deploy_env(commit)}
        elif kind == "rollout":
            out = dict(base)
        else:
            out = {**base, "healthService": "svc", "healthPort": 8080, "healthPath": "/health",
                   "expectedCommit": commit, "expectedRequestedCommit": commit[:7]}
        return {**out, **extra}

    def step(self, kind: str, commit: str, *, dry_run: bool = False, **extra: Any) -> StepResult:
        return self.provider.execute(StepRequest(f"svc/{kind}", kind, "svc", self.params(kind, commit, **extra),
                                                 dry_run))

    def deploy(self, commit: str) -> dict[str, StepResult]:
        results = {}
        for kind in ("import-image", "apply-objects", "stamp", "rollout", "verify-live"):
            results[kind] = self.step(kind, commit)
            assert results[kind].ok, f"{kind}: {results[kind].message}"
        return results

    @property
    def target(self) -> K3sTarget:
        return K3sTarget(namespace=self.namespace, manifest=SVC_MANIFEST, objects=("Deployment/svc", "Service/svc"),
                         stamp_deployments=("svc",), import_image=f"{self.local}:{{commit}}", health_service="svc",
                         health_port=8080)

    def request(self, service: str = "svc", read_health: bool = True, **target: Any) -> ObserveRequest:
        """An observe request keyed by `service` for the test target, with `target` fields changed."""
        k3s = attrs.evolve(self.target, **target)
        return ObserveRequest(service, Target(host="D601-k3s", compose=None, k3s=k3s), "/health", read_health)

    def observe(self, read_health: bool = True) -> Any:
        return self.provider.observe([self.request(read_health=read_health)])["svc"]


def _git_remote(root: Path, files: dict[str, str]) -> tuple[str, str]:
    bare, repo = init_repo(root, "manifests")
    clone = Path(repo.working_tree_dir or root / "manifests")
    for path, text in files.items():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_text(text)
    repo.git.add("-A")
    repo.git.commit("-q", "-m", "manifests")
    repo.git.push("-q", "origin", "HEAD:refs/heads/master")
    return bare.as_uri(), repo.head.commit.hexsha


def _remove_images(token: str) -> None:
    refs = [r for r in ctr("images", "ls", "-q").split() if f"udtest{token}" in r or f"udtest-{token}" in r]
    if refs:
        ctr("images", "rm", *refs)


def _delete_namespace(api: client.ApiClient, namespace: str) -> None:
    try:
        client.CoreV1Api(api).delete_namespace(namespace)
    except ApiException as exc:
        if exc.status != 404:
            raise
    wait_for(lambda: not lab_containers(namespace), timeout=30, what=f"the containers of {namespace} to go")


@pytest.fixture(scope="module")
def k3s(kube_api: client.ApiClient, require: Callable[..., None], hosts: dict[str, Host],  # noqa: F811
        catalog: Catalog, images: Images, token: str, git_cache: Path,
        tmp_path_factory: pytest.TempPathFactory) -> Iterator[K3sLab]:
    require("kubelab", "k3s-containerd", "registry")
    namespace, local = f"udtest-{token}", f"udtest{token}-svc"
    files = {
        FOUNDATION: _yaml({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                          {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "svc-config"},
                           "data": {"UNIDESK_ENV": "test"}}, namespace=namespace),
        SVC_MANIFEST: _yaml(_deployment("svc", f"{local}:placeholder", env=deploy_env("placeholder")),
                            _service("svc"), _deployment("extra", f"{local}:placeholder"), namespace=namespace),
        "k3s/nodeport.k8s.yaml": _yaml(_service("svc", kind="NodePort"), namespace=namespace),
        "k3s/hostport.k8s.yaml": _yaml(_deployment("svc", f"{local}:placeholder", host_port=18080),
                                       namespace=namespace),
        "k3s/foreign.k8s.yaml": _yaml(_service("svc"), namespace="unidesk"),
    }
    remote, commit = _git_remote(tmp_path_factory.mktemp("udtest-k3s-manifests"), files)
    provider = K3sNativeProvider.build(hosts["D601-k3s"], catalog, git=GitProvider(cache_dir=git_cache))
    lab = K3sLab(provider=provider, namespace=namespace, remote=remote, manifest_commit=commit, images=images,
                 local=local, token=token)
    try:
        yield lab
    finally:
        _delete_namespace(kube_api, namespace)
        _remove_images(token)
        provider.close()


@pytest.fixture(scope="module")
def deployed(k3s: K3sLab, source: Source) -> dict[str, Any]:
    """The namespace from its prerequisite manifest, then the service at the "old" commit."""
    prerequisite = k3s.step("apply-prerequisite", "")
    assert prerequisite.ok, prerequisite.message
    return {"commits": source.commits, "prerequisite": prerequisite, "old": k3s.deploy(source.commits["old"])}


def _containers(k3s: K3sLab, deployment: str) -> list[str]:
    """The lab controller's containerd containers of one Deployment (kubelab.<ns>.<name>.<hash>)."""
    return [c for c in lab_containers(k3s.namespace) if c.startswith(f"kubelab.{k3s.namespace}.{deployment}.")]


def _apps(k3s: K3sLab) -> client.AppsV1Api:
    return client.AppsV1Api(k3s.provider.kube.api)


def _core(k3s: K3sLab) -> client.CoreV1Api:
    return client.CoreV1Api(k3s.provider.kube.api)


def _raw(k3s: K3sLab, path: str) -> dict[str, Any]:
    found: dict[str, Any] = k3s.provider.kube.request("GET", path)
    return found


def _svc_health(k3s: K3sLab, name: str = "svc", port: int = 8080, namespace: str | None = None) -> dict[str, Any]:
    """GET /health through the API server's service proxy, the official client's call (C2)."""
    body = _core(k3s).connect_get_namespaced_service_proxy_with_path(
        name=f"{name}:{port}", namespace=namespace or k3s.namespace, path="health", _preload_content=False)
    return json.loads(body.data)


# -- E2: explicit kubeconfig and containerd socket only


def test_E2_build_refuses_a_host_without_explicit_kubeconfig_or_socket(hosts: dict[str, Host]) -> None:
    settings = dict(hosts["D601-k3s"].settings)
    for missing in ("kubeconfig", "containerdSocket"):
        host = Host(id="D601-k3s", provider="k3s-native", provider_id="D601", role="provider",
                    settings={k: v for k, v in settings.items() if k != missing})
        with pytest.raises(UsageError) as refused:
            K3sNativeProvider.build(host, None)
        assert missing in refused.value.message and refused.value.path == f"hosts.D601-k3s.{missing}"
    with pytest.raises(UsageError):
        K3sNativeProvider.build(None, None)


def test_E2_only_the_host_kubeconfig_counts(k3s: K3sLab, hosts: dict[str, Host], catalog: Catalog,
                                             monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    decoy = tmp_path / "decoy.yaml"  # the default context points elsewhere: it must not be used
    decoy.write_text(KUBECONFIG.read_text().replace("127.0.0.1:16443", "127.0.0.1:1"))
    monkeypatch.setenv("KUBECONFIG", str(decoy))
    monkeypatch.setenv("HOME", str(tmp_path))
    provider = K3sNativeProvider.build(hosts["D601-k3s"], catalog)
    try:
        assert provider.kube.server == "http://127.0.0.1:16443"
        assert provider.ctr.address == hosts["D601-k3s"].settings["containerdSocket"]
        state = provider.observe([k3s.request(namespace=f"{k3s.namespace}-absent")])["svc"]
        assert state.presence is Presence.ABSENT
    finally:
        provider.close()


def test_an_unanswering_api_server_is_provider_unreachable(k3s: K3sLab, hosts: dict[str, Host],
                                                            tmp_path: Path) -> None:
    dead = tmp_path / "dead.yaml"
    dead.write_text(KUBECONFIG.read_text().replace("127.0.0.1:16443", "127.0.0.1:1"))
    host = attrs.evolve(hosts["D601-k3s"], settings={**hosts["D601-k3s"].settings, "kubeconfig": str(dead)})
    provider = K3sNativeProvider.build(host, None)
    with pytest.raises(ProviderUnreachable) as down:
        provider.observe([k3s.request()])
    assert "D601-k3s" in down.value.message and "127.0.0.1:1" in down.value.message
    result = provider.execute(StepRequest("svc/rollout", "rollout", "svc", k3s.params("rollout", "c")))
    assert not result.ok and "did not answer: connection refused" in result.message
    provider.close()


# -- C2, V2, V4: the deploy chain


def test_C2_import_image_lands_in_the_k3s_containerd(k3s: K3sLab, images: Images, source: Source) -> None:
    commit = source.commits["old"]
    stored_as = f"docker.io/library/{k3s.local}:{commit}"
    dry = k3s.step("import-image", commit, dry_run=True)
    assert dry.ok and "would pull" in dry.message, dry.message
    assert stored_as not in ctr("images", "ls", "-q").split()

    result = k3s.step("import-image", commit)
    assert result.ok, result.message
    listed = {line.split()[0]: line.split()[2] for line in ctr("images", "ls").splitlines()[1:]}
    assert listed[stored_as] == images.digests[commit]  # the registry's manifest digest, tagged locally
    assert result.facts["digest"] == images.digests[commit]
    again = k3s.step("import-image", commit)
    assert again.ok and again.message.startswith("already held"), again.message


def test_C2_V2_V4_deploy_verifies_commit_through_the_service_proxy(k3s: K3sLab, deployed: dict[str, Any]) -> None:
    old = deployed["commits"]["old"]
    assert deployed["prerequisite"].facts["applied"][0]["ref"] == f"Namespace/{k3s.namespace}"
    applied = deployed["old"]["apply-objects"].facts["applied"]
    assert [a["ref"] for a in applied] == ["Deployment/svc", "Service/svc"]
    assert k3s.provider.kube.get(f"/apis/apps/v1/namespaces/{k3s.namespace}/deployments/extra") is None  # not listed
    svc = _core(k3s).read_namespaced_service("svc", k3s.namespace)
    assert svc.spec.type == "ClusterIP"

    # V2: the stamp is on the Deployment as pod-template annotations and as container env.
    dep = _raw(k3s, f"/apis/apps/v1/namespaces/{k3s.namespace}/deployments/svc")
    template = dep["spec"]["template"]
    container = template["spec"]["containers"][0]
    assert container["image"] == f"{k3s.local}:{old}"
    env = {e["name"]: e["value"] for e in container["env"]}
    for key, value in deploy_env(old).items():
        assert env[key] == value
        assert template["metadata"]["annotations"]["unidesk.ai/deploy-" + key[15:].lower().replace("_", "-")] == value

    # C2/V4: health through the Kubernetes API service proxy reports the deployed commit.
    health = _svc_health(k3s)
    assert health["deploy"] == {"repo": deploy_env(old)["UNIDESK_DEPLOY_REPO"], "commit": old,
                                "requestedCommit": old[:7]}
    verify = deployed["old"]["verify-live"]
    assert verify.facts["health"]["commit"] == old and verify.facts["mismatches"] == []

    state = k3s.observe()
    assert state.presence is Presence.RUNNING
    assert state.target == f"D601-k3s:{k3s.namespace}/Deployment/svc"
    assert state.live_commit == old
    assert dict(state.deploy_env) == deploy_env(old)
    assert dict(state.labels) == v1_labels(old)  # read from the image config in the k3s containerd
    assert state.image_id and state.image_id.startswith("sha256:")
    assert state.health is not None and state.health.deploy_commit == old
    assert len(_containers(k3s, "svc")) == 1


def test_V4_healthy_service_at_another_commit_fails_verify_live(k3s: K3sLab, deployed: dict[str, Any]) -> None:
    old, new = deployed["commits"]["old"], deployed["commits"]["new"]
    assert _svc_health(k3s)["deploy"]["commit"] == old  # healthy, at the old commit
    started = time.monotonic()
    result = k3s.step("verify-live", new)
    assert not result.ok
    assert f"does not run {new[:12]}" in result.message
    assert "UNIDESK_DEPLOY_COMMIT" in result.message and "health deploy.commit" in result.message
    assert time.monotonic() - started < 10  # a settled answer is final: no waiting out the timeout


def test_V4_health_from_another_commit_fails_even_when_the_stamp_matches(k3s: K3sLab,
                                                                          deployed: dict[str, Any]) -> None:
    """The stamp says `new`, the running process reports `old`: only the health check can tell."""
    old, new = deployed["commits"]["old"], deployed["commits"]["new"]
    liar = _deployment("liar", f"{k3s.local}:{old}", env=deploy_env(new), command=[
        "/bin/busybox", "sh", "-c", f"UNIDESK_DEPLOY_COMMIT={old} exec /bin/busybox sh /srv/serve.sh"])
    liar["spec"]["template"]["metadata"]["annotations"] = {
        "unidesk.ai/deploy-commit": new, "unidesk.ai/deploy-requested-commit": new[:7]}
    _apps(k3s).create_namespaced_deployment(k3s.namespace, liar)
    _core(k3s).create_namespaced_service(k3s.namespace, _service("liar"))
    rolled = k3s.step("rollout", new, deployments=["liar"])
    assert rolled.ok, rolled.message
    result = k3s.step("verify-live", new, deployments=["liar"], healthService="liar")
    assert not result.ok
    assert result.facts["mismatches"] == [f"health deploy.commit: expected {new!r}, got {old!r}"]


def test_V4_second_deploy_replaces_the_container_and_verifies_the_new_commit(k3s: K3sLab,
                                                                             deployed: dict[str, Any]) -> None:
    old, new = deployed["commits"]["old"], deployed["commits"]["new"]
    [before] = _containers(k3s, "svc")
    generation = _raw(k3s, f"/apis/apps/v1/namespaces/{k3s.namespace}/deployments/svc")["metadata"]["generation"]

    results = {kind: k3s.step(kind, new) for kind in ("import-image", "apply-objects")}
    assert all(r.ok for r in results.values()), {k: r.message for k, r in results.items()}
    # Re-applying the manifest (placeholders) keeps the live image and stamp: nothing rolls yet.
    assert [a["action"] for a in results["apply-objects"].facts["applied"]] == ["unchanged", "unchanged"]
    assert _raw(k3s, f"/apis/apps/v1/namespaces/{k3s.namespace}/deployments/svc")["metadata"]["generation"] \
        == generation
    for kind in ("stamp", "rollout", "verify-live"):
        result = k3s.step(kind, new)
        assert result.ok, f"{kind}: {result.message}"
    assert _svc_health(k3s)["deploy"]["commit"] == new
    [after] = _containers(k3s, "svc")
    assert after != before
    assert k3s.observe().live_commit == new
    stale = k3s.step("verify-live", old)  # the old commit is no longer what runs
    assert not stale.ok and "health deploy.commit" in stale.message


@pytest.mark.req("K1")
def test_observe_identity_is_stable_while_the_controller_writes_status(k3s: K3sLab,
                                                                       deployed: dict[str, Any]) -> None:
    """The identity (and so the fingerprint apply compares) follows the spec, not status writes."""
    new = deployed["commits"]["new"]
    _apps(k3s).create_namespaced_deployment(k3s.namespace, _deployment("watch", f"{k3s.local}:{new}",
                                                                       env=deploy_env(new)))
    request = k3s.request(read_health=False, stamp_deployments=("watch",), health_service="watch")
    path = f"/apis/apps/v1/namespaces/{k3s.namespace}/deployments/watch"

    def observe() -> Any:
        return k3s.provider.observe([request])["svc"]

    created = observe()
    assert k3s.step("rollout", new, deployments=["watch"]).ok
    first = observe()
    assert first.presence is Presence.RUNNING and first.identity == created.identity

    # Make the controller write status again: it restores the counts it owns on its next tick.
    tampered = k3s.provider.kube.request("PATCH", f"{path}/status", body={"status": {"readyReplicas": 0}},
                                         content_type="application/merge-patch+json")
    rv = tampered["metadata"]["resourceVersion"]
    wait_for(lambda: (d := _raw(k3s, path))["metadata"]["resourceVersion"] != rv
             and d["status"].get("readyReplicas") == 1, what="the controller to rewrite the status")
    second = observe()
    assert second.identity == first.identity
    assert second.fingerprint == first.fingerprint  # what apply compares to detect a stale plan


def _observed(dep: dict[str, Any] | None) -> bool:
    status = (dep or {}).get("status") or {}
    return dep is not None and int(status.get("observedGeneration") or 0) >= int(dep["metadata"].get("generation") or 0)


@pytest.mark.req("K3")
@pytest.mark.parametrize("own_reads_up_to", [0, k3s_native.OWN_READS_UP_TO], ids=["namespace-lists", "own-reads"])
def test_K3_batched_observe_lists_each_namespace_once_and_reads_what_single_reads_read(
        k3s: K3sLab, deployed: dict[str, Any], monkeypatch: pytest.MonkeyPatch, own_reads_up_to: int) -> None:
    """K3: one `observe` call for several services of a host answers each exactly as reading it alone
    does (GET of its Deployment, its pods by label selector, and a one-service batch): two running
    Deployments, one absent in a listed namespace, one in a namespace that does not exist. A
    namespace asked for more than `OWN_READS_UP_TO` Deployments has its Deployments and Pods listed
    once (no Pods unless an asked-for Deployment exists and is not ready by its own status); one
    asked for that many or fewer reads only its own (a GET per Deployment, Pods by selector where
    it exists and is not ready). Both paths answer the same RuntimeState (and so the same
    fingerprints)."""
    monkeypatch.setattr(k3s_native, "OWN_READS_UP_TO", own_reads_up_to)
    old = deployed["commits"]["old"]
    if facts.read_deployment(k3s.provider.kube, k3s.namespace, "batchside") is None:
        _apps(k3s).create_namespaced_deployment(k3s.namespace, _deployment("batchside", f"{k3s.local}:{old}",
                                                                           env=deploy_env(old)))
    assert k3s.step("rollout", old, deployments=["batchside"]).ok
    kube = k3s.provider.kube
    if facts.read_deployment(kube, k3s.namespace, "idle") is None:  # never ready: its Pods are read
        _apps(k3s).create_namespaced_deployment(k3s.namespace, _deployment("idle", f"{k3s.local}:{old}", replicas=0))
    settle = time.monotonic() + 20
    while time.monotonic() < settle and not _observed(facts.read_deployment(kube, k3s.namespace, "idle")):
        time.sleep(0.2)
    absent_namespace = f"{k3s.namespace}-absent"
    requests = [k3s.request(), k3s.request("batchside", stamp_deployments=("batchside",), health_service="batchside"),
                k3s.request("ghost", stamp_deployments=("ghost",)),
                k3s.request("idle", stamp_deployments=("idle",), health_service="idle"),
                k3s.request("elsewhere", namespace=absent_namespace)]
    containerd = k3s.provider.ctr

    def alone(request: ObserveRequest) -> Any:
        """The per-object reader: GET the Deployment, then its pods by label selector."""
        t = request.target.k3s
        name = t.stamp_deployments[0]
        dep = facts.read_deployment(kube, t.namespace, name)
        state = facts.deployment_state(containerd, f"D601-k3s:{t.namespace}/Deployment/{name}", dep,
                                       facts.selected_pods(kube, dep) if dep is not None else [])
        if state.presence is not Presence.ABSENT:
            health = facts.read_health(kube, t.namespace, t.health_service, t.health_port, request.health_path)
            state = attrs.evolve(state, health=health.state)
        return state

    gets: list[str] = []
    real_request = facts.Kube.request

    def counting_request(self: facts.Kube, method: str, path: str, **kwargs: Any) -> Any:
        if method == "GET":
            gets.append(path)
        return real_request(self, method, path, **kwargs)

    before = {r.service_id: alone(r) for r in requests}
    with monkeypatch.context() as counting:
        counting.setattr(facts.Kube, "request", counting_request)
        batch = k3s.provider.observe(requests, parallelism=3)
    assert batch == before == {r.service_id: k3s.provider.observe([r])[r.service_id] for r in requests}
    assert {s: state.fingerprint for s, state in batch.items()} == {s: state.fingerprint for s, state in before.items()}
    assert [batch[s].presence for s in ("svc", "batchside", "ghost", "idle", "elsewhere")] == [
        Presence.RUNNING, Presence.RUNNING, Presence.ABSENT, Presence.NOT_READY, Presence.ABSENT]
    assert batch["batchside"].live_commit == old and batch["svc"].health is not None
    assert batch["idle"].detail == "scaled to 0 replicas", batch["idle"]
    if own_reads_up_to == 0:  # Pods listed once, for the one asked-for Deployment that is not ready
        expected = [f"/apis/apps/v1/namespaces/{k3s.namespace}/deployments",
                    f"/api/v1/namespaces/{k3s.namespace}/pods",
                    f"/apis/apps/v1/namespaces/{absent_namespace}/deployments"]
    else:  # a GET per Deployment; Pods by selector only for the one that exists and is not ready
        expected = [f"/apis/apps/v1/namespaces/{r.target.k3s.namespace}/deployments/{r.target.k3s.stamp_deployments[0]}"
                    for r in requests] + [f"/api/v1/namespaces/{k3s.namespace}/pods"]
    assert sorted(gets) == sorted(expected), gets


@pytest.mark.req("C2")
def test_rollout_of_an_image_missing_from_containerd_fails_naming_ImagePullBackOff(
        k3s: K3sLab, deployed: dict[str, Any]) -> None:
    new = deployed["commits"]["new"]
    _apps(k3s).create_namespaced_deployment(k3s.namespace, _deployment("ghost", f"{k3s.local}:{new}",
                                                                       env=deploy_env(new)))
    stamped = k3s.step("stamp", new, deployments=["ghost"], image=f"udtest{k3s.token}-never-imported:{new}")
    assert stamped.ok, stamped.message
    started = time.monotonic()
    result = k3s.step("rollout", new, deployments=["ghost"])
    assert not result.ok
    assert "ImagePullBackOff" in result.message and f"udtest{k3s.token}-never-imported" in result.message
    assert time.monotonic() - started < 15
    state = k3s.provider.observe([k3s.request("ghost", read_health=False, stamp_deployments=("ghost",))])["ghost"]
    assert state.presence is Presence.NOT_READY and "ImagePullBackOff" in (state.detail or "")


@pytest.mark.parametrize(("manifest", "objects", "why"), [
    ("k3s/nodeport.k8s.yaml", ["Service/svc"], "NodePort"),
    ("k3s/hostport.k8s.yaml", ["Deployment/svc"], "hostPort 18080"),
    ("k3s/foreign.k8s.yaml", ["Service/svc"], "in namespace unidesk"),
])
def test_E2_apply_objects_refuses_exposure_and_foreign_namespaces(k3s: K3sLab, deployed: dict[str, Any],
                                                                  manifest: str, objects: list[str], why: str) -> None:
    before = _raw(k3s, f"/api/v1/namespaces/{k3s.namespace}/services/svc")["metadata"]["resourceVersion"]
    result = k3s.step("apply-objects", "", manifest=manifest, objects=objects)
    assert not result.ok and "refused" in result.message and why in result.message, result.message
    after = _raw(k3s, f"/api/v1/namespaces/{k3s.namespace}/services/svc")["metadata"]["resourceVersion"]
    assert after == before


@pytest.mark.req("O6")
def test_dry_run_changes_nothing(k3s: K3sLab, deployed: dict[str, Any]) -> None:
    dry = deployed["commits"]["dry"]
    paths = [f"/apis/apps/v1/namespaces/{k3s.namespace}/deployments/svc",
             f"/api/v1/namespaces/{k3s.namespace}/services/svc", f"/api/v1/namespaces/{k3s.namespace}"]
    before = [_raw(k3s, p)["metadata"] for p in paths]
    containers = lab_containers(k3s.namespace)
    for kind in ("apply-prerequisite", "import-image", "apply-objects", "stamp", "rollout", "verify-live"):
        result = k3s.step(kind, dry, dry_run=True)
        assert result.ok and result.message.startswith(("would", "D601-k3s containerd would")), \
            f"{kind}: {result.message}"
    after = [_raw(k3s, p)["metadata"] for p in paths]
    assert [(m["resourceVersion"], m.get("generation")) for m in after] == \
        [(m["resourceVersion"], m.get("generation")) for m in before]
    assert f"docker.io/library/{k3s.local}:{dry}" not in ctr("images", "ls", "-q").split()
    assert lab_containers(k3s.namespace) == containers


# -- E3: the sandbox image


@pytest.fixture(scope="module")
def pause_images(k3s: K3sLab, lab: dict[str, Any],
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A genuine pause-like image (busybox copied as /pause, `Entrypoint ["/pause"]`, FROM scratch) and
    a sleep-wrapper fake, built on the main engine and imported with `ctr images import`."""
    busybox = lab["images"]["busybox"]
    dockerfiles = {
        "genuine": f"FROM {busybox} AS src\nFROM scratch\nCOPY --from=src /bin/busybox /pause\n"
                   'ENTRYPOINT ["/pause"]\n',
        "fake": f'FROM {busybox}\nENTRYPOINT ["/bin/busybox", "sh", "-c", "sleep infinity"]\n',
    }
    engine = docker.DockerClient(base_url=lab["main"]["docker_host"], timeout=120)
    names = {kind: f"udtest{k3s.token}/{kind}-pause:3.6" for kind in dockerfiles}
    try:
        for kind, dockerfile in dockerfiles.items():
            engine.images.build(fileobj=context_tar({"Dockerfile": dockerfile}), custom_context=True,
                                tag=names[kind], rm=True)
            tarball = tmp_path_factory.mktemp("pause") / f"{kind}.tar"
            with tarball.open("wb") as out:
                for chunk in engine.images.get(names[kind]).save(named=names[kind]):
                    out.write(chunk)
            ctr("images", "import", str(tarball))
        yield names
    finally:
        for name in names.values():
            try:
                engine.images.remove(name, force=True)
            except docker.errors.ImageNotFound:
                pass
        engine.close()


def test_E3_genuine_pause_image_passes(k3s: K3sLab, pause_images: dict[str, str]) -> None:
    check = k3s.provider.pause_image_check(pause_images["genuine"])
    assert check["ok"], check
    assert check["entrypoint"] == ["/pause"] and check["storedAs"] == f"docker.io/{pause_images['genuine']}"


def test_E3_sleep_wrapper_and_absent_pause_images_are_rejected(k3s: K3sLab, pause_images: dict[str, str]) -> None:
    fake = k3s.provider.pause_image_check(pause_images["fake"])
    assert not fake["ok"] and fake["present"]
    assert "sleep" in fake["reason"] and "/pause" in fake["reason"]
    absent = k3s.provider.pause_image_check(f"udtest{k3s.token}/absent-pause:3.6")
    assert not absent["ok"] and not absent["present"] and "is not in" in absent["reason"]


# -- E4: the Code Queue image gate


def test_E4_code_queue_image_gate(k3s: K3sLab, deployed: dict[str, Any]) -> None:
    image = f"udtest{k3s.token}-code-queue:d601"
    names = ["code-queue", "code-queue-read", "code-queue-write", "d601-provider-egress-proxy",
             "d601-tcp-egress-gateway"]
    for name in names:  # scaled to 0: the gate reads the references, nothing needs to run
        _apps(k3s).create_namespaced_deployment(k3s.namespace, _deployment(name, image, replicas=0))
    gate = k3s.provider.code_queue_image_gate(image, k3s.namespace, names)
    assert not gate["ok"] and gate["degradedReason"] == "image-missing-in-containerd"  # not imported yet

    ctr("images", "tag", f"docker.io/library/{k3s.local}:{deployed['commits']['old']}", f"docker.io/library/{image}")
    gate = k3s.provider.code_queue_image_gate(image, k3s.namespace, names)
    assert gate["ok"], gate["failures"]
    assert gate["storedAs"] == f"docker.io/library/{image}"

    other = f"docker.io/udtest{k3s.token}/code-queue:d601"  # resolves elsewhere: kubelet would try to pull it
    _apps(k3s).patch_namespaced_deployment("d601-tcp-egress-gateway", k3s.namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": "d601-tcp-egress-gateway", "image": other}]}}}})
    gate = k3s.provider.code_queue_image_gate(image, k3s.namespace, [*names, "code-queue-missing"])
    assert not gate["ok"] and gate["degradedReason"] == "deployment-image-mismatch"
    assert len(gate["failures"]) == 2
    assert "d601-tcp-egress-gateway references docker.io/udtest" in gate["failures"][0]
    assert "code-queue-missing does not exist" in gate["failures"][1]
    assert [n for n, d in gate["deployments"].items() if not d["ok"]] == ["d601-tcp-egress-gateway",
                                                                          "code-queue-missing"]


# -- E5: Code Queue diagnostics


def _scheduler_health(**extra: Any) -> str:
    return json.dumps({"status": "ok", "deploy": {"commit": "c"}, **extra})


@pytest.fixture(scope="module")
def code_queue(k3s: K3sLab, deployed: dict[str, Any], kube_api: client.ApiClient) -> Iterator[str]:  # noqa: F811
    """A namespace with the Code Queue dependencies and fake schedulers serving chosen /health JSON."""
    namespace = f"{k3s.namespace}-cq"
    image = f"{k3s.local}:{deployed['commits']['old']}"  # the sample image: busybox httpd serving /health
    apps, core = _apps(k3s), _core(k3s)
    core.create_namespace({"metadata": {"name": namespace}})
    schedulers = {
        "sched-ok": _scheduler_health(storage={"lastError": None, "postgresRoute": {"ok": True}},
                                      reconcile={"recoverableActiveTasks": 1, "localRuns": 1}),
        "sched-last-error": _scheduler_health(storage={"lastError": "connection reset by peer"}),
        "sched-pg-route": _scheduler_health(storage={"lastError": None, "postgresRoute": {
            "target": "d601-tcp-egress-gateway.unidesk.svc.cluster.local:15432", "ok": False,
            "error": "ECONNREFUSED"}}),
        "sched-recoverable": _scheduler_health(reconcile={"recoverableActiveTasks": ["t1", "t2"], "localRuns": []}),
    }
    deployments = [_deployment("d601-provider-egress-proxy", image), _deployment("d601-tcp-egress-gateway", image),
                   _deployment("broken-proxy", f"udtest{k3s.token}-never-imported:1"),
                   _deployment("lonely-gateway", image)]
    deployments += [_deployment(name, image, env={"HEALTH": body}, command=["/bin/busybox", "sh", "-c", HEALTH_SH])
                    for name, body in schedulers.items()]
    for dep in deployments:
        apps.create_namespaced_deployment(namespace, dep)
        name = dep["metadata"]["name"]
        core.create_namespaced_service(namespace, _service(name, port=4222 if name.startswith("sched") else 8080,
                                                           selector="nobody" if name == "lonely-gateway" else None))
    core.create_namespaced_service(namespace, _service("sched-down", port=4222, selector="nobody"))
    ready = [d["metadata"]["name"] for d in deployments if d["metadata"]["name"] != "broken-proxy"]
    rolled = k3s.provider.execute(StepRequest("cq/rollout", "rollout", "code-queue",
                                              {"namespace": namespace, "deployments": ready}))
    assert rolled.ok, rolled.message
    try:
        yield namespace
    finally:
        _delete_namespace(kube_api, namespace)


def test_E5_healthy_code_queue_is_ok(k3s: K3sLab, code_queue: str) -> None:
    report = k3s.provider.code_queue_diagnostics(code_queue, scheduler_service="sched-ok")
    assert report["status"] == "ok" and report["degradedReason"] is None, report["degradedReasons"]
    assert report["scheduler"]["port"] == 4222
    assert all(d["available"] and d["readyEndpoints"] for d in report["dependencies"].values())


@pytest.mark.parametrize(("deployments", "scheduler", "status", "reasons"), [
    (("broken-proxy", "d601-tcp-egress-gateway"), "sched-ok", "degraded",
     ["dependency-unavailable", "dependency-endpoints-not-ready"]),
    (("d601-provider-egress-proxy", "lonely-gateway"), "sched-ok", "degraded", ["dependency-endpoints-not-ready"]),
    (("d601-provider-egress-proxy", "d601-tcp-egress-gateway", "d601-absent"), "sched-ok", "degraded",
     ["dependency-unavailable", "dependency-endpoints-not-ready"]),
    (("d601-provider-egress-proxy", "d601-tcp-egress-gateway"), "sched-last-error", "degraded",
     ["storage-last-error"]),
    (("d601-provider-egress-proxy", "d601-tcp-egress-gateway"), "sched-pg-route", "degraded",
     ["postgres-route-failure"]),
    (("d601-provider-egress-proxy", "d601-tcp-egress-gateway"), "sched-recoverable", "degraded",
     ["recoverable-active-without-local-run"]),
    (("d601-provider-egress-proxy", "d601-tcp-egress-gateway"), "sched-down", "failing",
     ["scheduler-health-unreachable"]),
])
def test_E5_each_degraded_reason(k3s: K3sLab, code_queue: str, deployments: tuple[str, ...], scheduler: str,
                                 status: str, reasons: list[str]) -> None:
    report = k3s.provider.code_queue_diagnostics(code_queue, deployments, scheduler)
    assert report["status"] == status
    assert [r["reason"] for r in report["degradedReasons"]] == reasons
    assert report["degradedReason"] == reasons[0]
    assert all(r["detail"] for r in report["degradedReasons"])


@pytest.mark.req("E2")
def test_lab_controller_binds_service_containers_to_loopback(k3s: K3sLab, lab: dict[str, Any], tmp_path: Path) -> None:
    """scripts/kubelab/controller.py passes LISTEN_ADDR=127.0.0.1 with PORT, so images that honour it
    (the sample images do) listen on loopback only. Proven on a private kubelab of this checkout (own
    port, kubeconfig and containerd namespace), whatever the version of the lab's running one."""
    namespace = f"udtest{k3s.token}-kubelab"
    private = Ctr(lab["k3s"]["containerd_address"], "test", namespace=namespace)
    base = "127.0.0.1:5000/lab/busybox:latest"
    assert private.run("images", "pull", "--plain-http", base).returncode == 0
    port, kubeconfig = free_port(), tmp_path / "kubeconfig.yaml"
    server = subprocess.Popen([sys.executable, str(REPO / "scripts/kubelab/serve.py"), "--port", str(port),
                               "--kubeconfig", str(kubeconfig), "--containerd-namespace", namespace,
                               "--log-dir", str(tmp_path / "logs")], stdout=subprocess.DEVNULL,
                              stderr=(tmp_path / "serve.log").open("w"))
    try:
        wait_for(kubeconfig.exists, what="the private kubelab's kubeconfig")
        api = config.new_client_from_config(config_file=str(kubeconfig), persist_config=False)
        core = client.CoreV1Api(api)
        core.create_namespace({"metadata": {"name": "loopback"}})
        client.AppsV1Api(api).create_namespaced_deployment("loopback", _deployment("web", base, command=[
            "/bin/busybox", "sh", "-c", HEALTH_SH], env={"HEALTH": "{}"}))

        def ready_port() -> str | None:
            pods = core.list_namespaced_pod("loopback").items
            ok = pods and pods[0].status.container_statuses and pods[0].status.container_statuses[0].ready
            return pods[0].metadata.annotations["lab.udeploy/port"] if ok else None

        listen = wait_for(ready_port, what="the private kubelab to run the container")
        sockets = subprocess.run(["ss", "-Hltn", f"sport = :{listen}"], capture_output=True, text=True,
                                 check=True).stdout.split()
        assert f"127.0.0.1:{listen}" in sockets and f"0.0.0.0:{listen}" not in sockets and f"*:{listen}" not in sockets
        core.delete_namespace("loopback")
        wait_for(lambda: not private.checked("containers", "ls", "-q").split(), what="the container to go")
        api.close()
    finally:
        server.terminate()
        server.wait(30)
        private.run("images", "rm", base)
        for digest in private.checked("content", "ls", "-q").split():
            private.run("content", "rm", digest)
        private.run("namespaces", "rm", namespace)  # `ctr -n X namespaces rm X` works: -n is ignored there
