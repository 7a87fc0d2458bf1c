"""The compose-host provider against the lab's real engines: main-server over SSH, D601 on a socket.

Every deploy here is the artifact-consumer chain the engine plans for a Compose target
(`engine/steps.py`): transfer-image -> stamp -> recreate -> verify-live, with the same `params`.
Each host gets its own test project `udtest<token>` under the host's real `composeRoot`, removed
afterwards (containers, project directory, local images).
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import docker.errors
import pytest

from tests.providers.support import (
    AUTH_FLAGS,
    SECRET_KEYS,
    Images,
    Source,
    deploy_env,
    free_port,
    v1_labels,
)
from udeploy.engine.errors import UsageError
from udeploy.engine.load.catalog import Catalog, ComposeTarget, Host, Target
from udeploy.engine.provider_api import ObserveRequest, Presence, ProviderUnreachable, StepRequest, StepResult
from udeploy.providers import compose_facts as facts
from udeploy.providers import compose_host
from udeploy.providers.compose_host import ComposeHostProvider
from udeploy.providers.git import GitProvider

HOSTS = ["main-server", "D601"]
LAB_COMPONENTS = {"main-server": ("sshd", "main-docker", "registry"),
                  "D601": ("d601-docker", "registry", "egress-proxy")}


@attrs.frozen
class Deployment:
    """One host's provider and the test project on it."""

    host: str
    provider: ComposeHostProvider
    project: str
    project_dir: Path  # the same machine in the lab, so tests can look at the host's files directly
    source: Source
    images: Images

    @property
    def target(self) -> ComposeTarget:
        return ComposeTarget(file=self.source.compose_files[self.host], project=self.project, service="svc",
                             image=self.source.local_image, health_port=self.source.ports[self.host])

    def compose(self) -> dict[str, Any]:
        return {"project": self.project, "service": "svc", "file": self.source.compose_files[self.host],
                "manifestCommit": self.source.manifest_commit, "manifestRemote": self.source.remote}

    def params(self, kind: str, commit: str, **extra: Any) -> dict[str, Any]:
        """The node params engine/steps.py records for a Compose artifact consumer."""
        if kind == "transfer-image":
            return {"image": self.images.ref(commit), "localImage": self.source.local_image,
                    "localTags": ["latest", commit]}
        if kind == "stamp":
            return {**self.compose(), "env": deploy_env(commit), "secretKeys": [], **extra}
        if kind == "recreate":
            return {**self.compose(), "command": "up -d --no-build --no-deps --force-recreate svc"}
        return {**self.compose(), "healthPort": self.source.ports[self.host], "healthPath": "/health",
                "expectedCommit": commit, "expectedLabels": v1_labels(commit), **extra}

    def step(self, kind: str, commit: str, *, dry_run: bool = False, **extra: Any) -> StepResult:
        request = StepRequest(f"svc/{kind}", kind, "svc", self.params(kind, commit, **extra), dry_run)
        return self.provider.execute(request)

    def deploy(self, commit: str, **stamp_extra: Any) -> dict[str, StepResult]:
        results = {}
        for kind in ("transfer-image", "stamp", "recreate", "verify-live"):
            results[kind] = self.step(kind, commit, **(stamp_extra if kind == "stamp" else {}))
            assert results[kind].ok, f"{self.host} {kind}: {results[kind].message}"
        return results

    def request(self, service: str = "svc", project: str | None = None) -> ObserveRequest:
        """An observe request for `service` of the test project (or of `project`), keyed by `service`."""
        compose = attrs.evolve(self.target, service=service, project=project or self.project)
        return ObserveRequest(service, Target(host=self.host, compose=compose, k3s=None))

    def observe(self, service: str = "svc") -> Any:
        return self.provider.observe([self.request(service)])[service]


@pytest.fixture(scope="module", params=HOSTS)
def deployment(request: pytest.FixtureRequest, hosts: dict[str, Host], catalog: Catalog, images: Images,
               source: Source, require: Callable[..., None], token: str, git_cache: Path) -> Iterator[Deployment]:
    host_id = request.param
    require(*LAB_COMPONENTS[host_id])
    host = hosts[host_id]
    provider = ComposeHostProvider.build(host, catalog, git=GitProvider(cache_dir=git_cache))
    project = f"udtest{token}"
    project_dir = Path(str(host.settings["composeRoot"])) / project
    yield Deployment(host_id, provider, project, project_dir, source, images)
    _cleanup(provider, project, project_dir, source, images)


def _cleanup(provider: ComposeHostProvider, project: str, project_dir: Path, source: Source, images: Images) -> None:
    """Remove what the tests made on the host: the project's containers and network (the engine has a
    bounded pool of subnets), local images, directory."""
    client = provider.shell.docker()
    doomed: list[Callable[[], Any]] = []
    mine = {"label": f"com.docker.compose.project={project}"}
    for container in client.containers.list(all=True, filters=mine):
        doomed.append(partial(container.remove, force=True))
    doomed.extend(network.remove for network in client.networks.list(filters=mine))
    for name in (source.local_image, f"{source.local_image}-built", f"{images.registry}/{images.repository}"):
        for image in client.images.list(name=name):
            for tag in image.tags:
                if tag.rsplit(":", 1)[0] == name:
                    doomed.append(partial(client.images.remove, tag, force=True))
    for remove in doomed:
        try:
            remove()
        except docker.errors.APIError as exc:
            print(f"cleanup on {provider.host.id}: {exc}")
    shutil.rmtree(project_dir, ignore_errors=True)
    provider.close()


def test_C3_V2_transfer_stamp_recreate_verify_live(deployment: Deployment) -> None:
    """C3: pull + retag, stamp (V2 env from the compose file at the manifest commit), recreate one service,
    verify the running commit (V4). C4: the image run is the registry artifact, nothing was built."""
    new = deployment.source.commits["new"]
    results = deployment.deploy(new)
    transfer, stamp, recreate, verify = results.values()

    state = deployment.observe()
    assert state.presence is Presence.RUNNING
    assert state.target == f"{deployment.host}:{deployment.project}/svc"
    assert state.identity == recreate.facts["containerAfter"] != recreate.facts["containerBefore"]
    assert state.image == f"{deployment.source.local_image}:latest"
    assert state.image_id == transfer.facts["imageId"]
    assert f"{deployment.images.ref(new).rsplit(':', 1)[0]}@{deployment.images.digests[new]}" in \
        transfer.facts["repoDigests"], "the running image is the pushed artifact, by digest (C4: no build)"
    assert {k: v for k, v in state.labels.items() if k.startswith("unidesk.ai/")} == v1_labels(new)
    assert dict(state.deploy_env) == deploy_env(new) and state.live_commit == new
    assert state.health is not None and state.health.reachable and state.health.status == 200
    assert (state.health.deploy_commit, state.health.deploy_requested_commit) == (new, new[:7])
    assert verify.facts["health"]["commit"] == new and verify.facts["mismatches"] == []

    # Stamp: the compose file is the blob at the manifest commit; env files Compose v1 needs exist.
    compose_file = deployment.project_dir / Path(deployment.source.compose_files[deployment.host]).name
    assert stamp.facts["composeFile"] == str(compose_file)
    assert compose_file.read_bytes() == (deployment.source.clone / deployment.source.compose_files[
        deployment.host]).read_bytes()
    assert (deployment.project_dir / "env" / "svc.env").read_text().splitlines() == [
        f"{k}={v}" for k, v in deploy_env(new).items()]
    assert sorted(Path(p).name for p in stamp.facts["createdEnvFiles"]) in ([], ["other.env", "other.extra.env"])
    assert (deployment.project_dir / "env" / "other.extra.env").exists()
    assert "--no-build --no-deps --force-recreate svc" in recreate.facts["command"]
    assert deployment.observe("other").presence is Presence.ABSENT, "--no-deps: only the one service runs"


def test_V4_healthy_old_commit_fails_verify_live(deployment: Deployment) -> None:
    """V4: a healthy service running an older commit must fail verification, and say why."""
    old, new = deployment.source.commits["old"], deployment.source.commits["new"]
    deployment.deploy(old)
    started = time.monotonic()
    result = deployment.step("verify-live", new)
    assert not result.ok
    assert time.monotonic() - started < 5, "a wrong commit fails at once; only an unanswered health waits"
    assert result.facts["health"]["reachable"] and result.facts["health"]["status"] == 200
    assert result.facts["health"]["commit"] == old, "the old service is healthy"
    for named in ("image label unidesk.ai/source-commit", "env UNIDESK_DEPLOY_COMMIT", "health deploy.commit"):
        assert any(m.startswith(named) for m in result.facts["mismatches"]), (named, result.message)
    assert new[:12] in result.message


def test_dry_run_changes_nothing(deployment: Deployment) -> None:
    """O6 --dry-run: every read and check runs, nothing changes (container id, files, image tags)."""
    old, dry = deployment.source.commits["old"], deployment.source.commits["dry"]
    deployment.deploy(old)
    client = deployment.provider.shell.docker()
    before = _snapshot(deployment)
    for kind in ("transfer-image", "stamp", "recreate", "verify-live"):
        request = StepRequest(f"svc/{kind}", kind, "svc", deployment.params(kind, dry), dry_run=True)
        result = deployment.provider.execute(request)
        assert result.ok and result.message.startswith("would"), (kind, result.message)
    assert _snapshot(deployment) == before
    assert not client.images.list(name=f"{deployment.source.local_image}:{dry}")
    assert not client.images.list(name=deployment.images.ref(dry))
    assert deployment.step("verify-live", old).ok


def test_P7_secret_presence_and_stamp_copy_names_and_lengths_only(deployment: Deployment) -> None:
    """P7: the secret gate reports key names, booleans and lengths; a missing key stops before mutation;
    the values are copied on the host and never appear in a result; health auth flags are verified."""
    new = deployment.source.commits["new"]
    values = {SECRET_KEYS[0]: "client-id-VALUE-1a2b", SECRET_KEYS[1]: "client-SECRET-VALUE-3c4d5e"}
    secrets_file = deployment.project_dir / "svc.secrets.env"
    secrets_file.parent.mkdir(parents=True, exist_ok=True)
    secrets_file.write_text("# test secrets\n" + "".join(f"{k}={v}\n" for k, v in values.items()))
    source = f"{deployment.host}:compose-env:svc.secrets.env"

    presence = deployment.provider.secret_presence(source, SECRET_KEYS, deployment.project)
    assert presence["secretSource"] == source and presence["requiredSecretsPresent"] is False
    assert presence["missingSecretKeys"] == [SECRET_KEYS[2]]
    assert presence["presentSecretKeyLengths"] == {k: len(v) for k, v in values.items()}
    assert SECRET_KEYS[2] in presence["recommendedAction"]
    _assert_no_values(presence, values)

    env_file = deployment.project_dir / "env" / "svc.env"
    env_before = env_file.read_bytes() if env_file.exists() else None
    stamp: dict[str, Any] = {"secretKeys": SECRET_KEYS, "secretSource": source}
    refused = deployment.step("stamp", new, **stamp)
    assert not refused.ok and "missing runtime secrets" in refused.message
    assert (env_file.read_bytes() if env_file.exists() else None) == env_before, "refused before mutation"
    _assert_no_values(refused.facts, values)

    values[SECRET_KEYS[2]] = "token-KEY-VALUE-6f7g"
    with secrets_file.open("a") as f:
        f.write(f"export {SECRET_KEYS[2]}={values[SECRET_KEYS[2]]}\n")
    results = deployment.deploy(new, **stamp)
    assert results["stamp"].facts["secretKeysCopied"] == SECRET_KEYS
    assert results["stamp"].facts["runtimeSecrets"]["requiredSecretsPresent"] is True
    for result in results.values():
        _assert_no_values({"message": result.message, "facts": result.facts}, values)
    assert oct(env_file.stat().st_mode & 0o777) == "0o600"
    auth = deployment.step("verify-live", new, healthAuthFlags=AUTH_FLAGS)
    assert auth.ok, auth.message
    assert auth.facts["health"]["auth"] == dict.fromkeys(AUTH_FLAGS, True)
    _assert_no_values(auth.facts, values)

    # Without the secrets the service is healthy but not configured: P7 says that is a failed deploy.
    deployment.deploy(new)
    unconfigured = deployment.step("verify-live", new, healthAuthFlags=AUTH_FLAGS)
    assert not unconfigured.ok and "health auth.loggedIn is False" in unconfigured.message


def test_observe_absent_service(deployment: Deployment) -> None:
    state = deployment.observe("never-deployed")
    assert state.presence is Presence.ABSENT and state.health is None and state.identity is None


@pytest.mark.parametrize("own_reads_up_to", [0, compose_host.OWN_READS_UP_TO], ids=["project-lists", "own-reads"])
def test_K3_batched_observe_lists_each_project_once_and_reads_what_single_reads_read(
        deployment: Deployment, monkeypatch: pytest.MonkeyPatch, own_reads_up_to: int) -> None:
    """K3: one `observe` call for several services of a host answers each exactly as reading it alone
    does (the per-service list-and-inspect reader, and a one-service batch): running, exited, absent
    in a listed project, absent in a project that has no container. A project asked for more than
    `OWN_READS_UP_TO` services has its containers listed once, never once per service; one asked for
    that many or fewer lists only those services' containers (never the whole project), and both
    paths answer the same RuntimeState (and so the same fingerprints)."""
    monkeypatch.setattr(compose_host, "OWN_READS_UP_TO", own_reads_up_to)
    provider, project = deployment.provider, deployment.project
    client = provider.shell.docker()
    if deployment.observe().presence is Presence.ABSENT:
        deployment.deploy(deployment.source.commits["new"])
    for service, command in (("side", "sleep 600"), ("quit", "exit 3")):  # more services of the project
        client.containers.run(f"{deployment.source.local_image}:latest", entrypoint=["/bin/busybox", "sh", "-c"],
                              command=[command], detach=True, network_mode="none",
                              environment={"UNIDESK_DEPLOY_COMMIT": service},
                              labels={"com.docker.compose.project": project, "com.docker.compose.service": service})
    wait_until_exited = time.monotonic() + 20
    while deployment.observe("quit").presence is Presence.RUNNING and time.monotonic() < wait_until_exited:
        time.sleep(0.2)
    requests = [deployment.request(s) for s in ("svc", "side", "quit", "never-deployed")]
    requests.append(deployment.request("elsewhere", project=f"{project}none"))

    def alone(request: ObserveRequest) -> Any:
        """The per-service reader: one list call filtered to project/service, then one inspect."""
        c = request.target.compose
        where = f"{deployment.host}:{c.project}/{c.service}"
        state = facts.container_state(provider.shell, where, facts.service_container(provider.shell, c.project,
                                                                                     c.service))
        if state.presence is not Presence.ABSENT:
            state = attrs.evolve(state, health=facts.read_health(provider.shell, c.health_port, request.health_path))
        return state

    listed: list[Any] = []
    real_list = client.api.containers

    def counting_list(*args: Any, **kwargs: Any) -> Any:
        listed.append(kwargs.get("filters"))
        return real_list(*args, **kwargs)

    before = {r.service_id: alone(r) for r in requests}
    with monkeypatch.context() as counting:
        counting.setattr(client.api, "containers", counting_list)
        batch = provider.observe(requests, parallelism=3)
    assert batch == before == {r.service_id: provider.observe([r])[r.service_id] for r in requests}
    assert {s: state.fingerprint for s, state in batch.items()} == {s: state.fingerprint for s, state in before.items()}
    assert [batch[s].presence for s in ("svc", "side", "quit", "never-deployed", "elsewhere")] == [
        Presence.RUNNING, Presence.RUNNING, Presence.NOT_READY, Presence.ABSENT, Presence.ABSENT]
    assert batch["side"].deploy_env == {"UNIDESK_DEPLOY_COMMIT": "side"}
    if own_reads_up_to == 0:
        expected = [[f"com.docker.compose.project={p}"] for p in (project, f"{project}none")]
    else:
        expected = [[f"com.docker.compose.project={r.target.compose.project}",
                     f"com.docker.compose.service={r.target.compose.service}"] for r in requests]
    assert sorted(f["label"] for f in listed) == sorted(expected), listed


@pytest.mark.parametrize("host_id", HOSTS)
def test_B1_B4_target_side_build_from_git_archive(
        host_id: str, hosts: dict[str, Host], catalog: Catalog, source: Source, images: Images, token: str,
        require: Callable[..., None], git_cache: Path) -> None:
    """B1: the host fetches the repo and builds from `git archive` of the commit (the operator's untracked
    file never reaches the context); B4: the next build uses --cache-from the current image."""
    require(*LAB_COMPONENTS[host_id])
    host = hosts[host_id]
    provider = ComposeHostProvider.build(host, catalog, git=GitProvider(cache_dir=git_cache))
    project = f"udtest{token}b"
    project_dir = Path(str(host.settings["composeRoot"])) / project
    image = f"{source.local_image}-built"
    try:
        commits = source.commits
        results = []
        for commit in (commits["old"], commits["new"]):
            export = StepRequest("svc/export-source", "export-source", "svc",
                                 {"repo": source.remote, "commit": commit, "context": "svc", "project": project})
            build = StepRequest("svc/build-image", "build-image", "svc",
                                {"dockerfile": "svc/Dockerfile", "context": "svc", "image": f"{image}:{commit}",
                                 "labels": v1_labels(commit), "project": project})
            dry = provider.execute(attrs.evolve(build, dry_run=True))
            assert dry.ok and dry.message.startswith("would")
            exported = provider.execute(export)
            assert exported.ok, exported.message
            assert f"target_source_commit={commit}" in exported.facts["log"]
            build_dir = Path(exported.facts["buildDir"])
            assert build_dir.is_relative_to(project_dir)
            assert (build_dir / "svc" / "VERSION").read_text() == ("old\n" if commit == commits["old"] else "new\n")
            assert not (build_dir / "svc" / "UNTRACKED-OPERATOR-FILE").exists()
            built = provider.execute(build)
            assert built.ok, (built.message, built.facts.get("log"))
            results.append(built)
        assert "target_build_cache_from=none" in results[0].facts["log"]
        assert f"target_build_cache_from={image}:latest" in results[1].facts["log"]
        labels = provider.shell.docker().images.get(f"{image}:latest").labels
        assert {k: labels[k] for k in v1_labels(commits["new"])} == v1_labels(commits["new"])
    finally:
        client = provider.shell.docker()
        for found in client.images.list(name=image):
            for tag in found.tags:
                client.images.remove(tag, force=True)
        shutil.rmtree(project_dir, ignore_errors=True)
        shutil.rmtree(provider.layout.mirror_dir(source.remote), ignore_errors=True)
        provider.close()


def test_unreachable_hosts_raise_provider_unreachable(catalog: Catalog) -> None:
    """A host that does not answer raises ProviderUnreachable naming the host, never a raw traceback."""
    target = ComposeTarget(file="x.yml", project="p", service="s", image="i", health_port=1)
    dead = [
        Host("gone-socket", "compose-host", "gone", "", {"docker": {"socket": "unix:///nonexistent/docker.sock"},
                                                         "composeRoot": "/nonexistent"}),
        Host("gone-ssh", "compose-host", "gone", "", {"docker": {"ssh": {"host": "127.0.0.1", "port": free_port(),
                                                                         "user": "root"}},
                                                      "composeRoot": "/nonexistent"}),
    ]
    for host in dead:
        provider = ComposeHostProvider.build(host, catalog)
        with pytest.raises(ProviderUnreachable) as raised:
            provider.observe([ObserveRequest("s", Target(host=host.id, compose=target, k3s=None))])
        assert raised.value.path == host.id
        with pytest.raises(ProviderUnreachable):
            provider.execute(StepRequest("s/transfer-image", "transfer-image", "s",
                                         {"image": "127.0.0.1:5000/x:y", "localImage": "x", "localTags": ["latest"]}))


def test_P7_secret_source_comes_from_the_catalog(hosts: dict[str, Host], catalog: Catalog) -> None:
    provider = ComposeHostProvider.build(hosts["main-server"], catalog)
    source = provider.secret_source_for("baidu-netdisk", "unidesk-dev")
    assert source == "main-server:compose-env:baidu-netdisk.secrets.env"
    assert provider.secret_path(source, "unidesk-dev") == \
        f"{hosts['main-server'].settings['composeRoot']}/unidesk-dev/baidu-netdisk.secrets.env"
    assert provider.secret_source_for("backend-core", "unidesk") is None
    for bad in ("D601:compose-env:x.env", "main-server:vault:x", "main-server:compose-env:../x.env"):
        with pytest.raises(UsageError):
            provider.secret_path(bad, "unidesk")


def _snapshot(deployment: Deployment) -> dict[str, Any]:
    client = deployment.provider.shell.docker()
    files = sorted(p for p in deployment.project_dir.rglob("*") if p.is_file())
    return {
        "identity": deployment.observe().identity,
        "files": {str(p): p.read_bytes() for p in files},
        "tags": sorted(t for i in client.images.list(name=deployment.source.local_image) for t in i.tags),
    }


def _assert_no_values(doc: Any, values: dict[str, str]) -> None:
    text = json.dumps(doc, default=str)
    for value in values.values():
        assert value not in text
