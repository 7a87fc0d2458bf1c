"""The sample monorepo: the materializer against real git, the fixture's internal consistency, and one
real build of a sample image on the lab's main Docker engine.

The materializer is tests/sample_repo.py; the fixture is fixtures/unidesk-sample (see its README).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
import urllib.request
from pathlib import Path

import docker
import pytest
import yaml

from tests.sample_repo import FIXTURE, REPO_URL, SampleRepo, materialize

CONFIG = json.loads((FIXTURE / "config.json").read_text())
MAIN_DOCKER = "unix:///run/udeploy-lab/main/docker.sock"  # docs/lab.md
LAB_DOWN = "run `scripts/lab up`"


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> SampleRepo:
    """Read-only use: tests that commit materialize their own."""
    return materialize(tmp_path_factory.mktemp("sample"), colliding_short_sha=True)


def git(
    sample: SampleRepo, *args: str, cwd: Path | None = None, check: bool = True
) -> subprocess.CompletedProcess:
    """The git CLI with the sample's env only (no user ~/.gitconfig, no system config)."""
    return subprocess.run(
        ["git", *args],
        cwd=cwd or sample.workdir,
        env={**os.environ, **sample.env},
        capture_output=True,
        check=check,
    )


def fresh_clone(sample: SampleRepo, dest: Path) -> Path:
    git(sample, "clone", "-q", REPO_URL, str(dest))
    return dest


def archive(sample: SampleRepo, sha: str, path: str) -> tarfile.TarFile:
    """`git archive <sha>:<path>`: the service directory as the root of a build context."""
    out = git(sample, "archive", "--format=tar", f"{sha}:{path}", cwd=sample.clone).stdout
    return tarfile.open(fileobj=io.BytesIO(out))


def test_github_url_resolves_to_the_local_origin(sample: SampleRepo, tmp_path: Path) -> None:
    refs = git(sample, "ls-remote", REPO_URL).stdout.decode()
    assert f"{sample.commits['deploy']}\trefs/heads/master" in refs
    clone = fresh_clone(sample, tmp_path / "c")
    assert json.loads((clone / "deploy.json").read_text()) == sample.deploy_json()
    # The mapping lives only in the sample's own config file.
    assert "insteadof" in git(sample, "config", "--global", "--list").stdout.decode().lower()
    bare = subprocess.run(
        ["git", "config", "--global", "--list"],
        env={**os.environ, "GIT_CONFIG_GLOBAL": "/dev/null"},
        capture_output=True,
        check=False,
    )
    assert str(sample.origin) not in bare.stdout.decode()


@pytest.mark.req("M5")
def test_deploy_json_pins_resolve_to_full_shas(sample: SampleRepo, tmp_path: Path) -> None:
    clone = fresh_clone(sample, tmp_path / "c")
    doc = json.loads((clone / "deploy.json").read_text())
    expected = sample.commits["frontend-v2"]  # every "@HEAD" of the template
    for env, length in (("dev", 7), ("prod", 40)):
        services = doc["environments"][env]["services"]
        assert services and all(s["repo"] == REPO_URL for s in services)
        for entry in services:
            assert len(entry["commitId"]) == length, entry
            resolved = git(sample, "rev-parse", "--verify", f"{entry['commitId']}^{{commit}}", cwd=clone)
            assert resolved.stdout.decode().strip() == expected
    assert doc["environments"]["dev"]["ci"]["scriptPath"] == "scripts/ci/run-dev-e2e.sh"
    assert (clone / "scripts/ci/run-dev-e2e.sh").stat().st_mode & 0o111


@pytest.mark.req("M5")
def test_short_sha_collision_is_shared_by_exactly_two_commits(sample: SampleRepo, tmp_path: Path) -> None:
    prefix = sample.collision_prefix
    assert prefix and len(prefix) == 7
    clone = fresh_clone(sample, tmp_path / "c")
    commits = git(sample, "rev-list", "--all", cwd=clone).stdout.decode().split()
    sharing = {c for c in commits if c.startswith(prefix)}
    assert sharing == {sample.commits["collision-a"], sample.commits["collision-b"]}
    ambiguous = git(sample, "rev-parse", "--verify", f"{prefix}^{{commit}}", cwd=clone, check=False)
    assert ambiguous.returncode != 0
    assert "ambiguous" in ambiguous.stderr.decode()


def test_materialize_is_reproducible(sample: SampleRepo, tmp_path: Path) -> None:
    again = materialize(tmp_path, colliding_short_sha=True)
    assert again.commits == sample.commits
    assert again.collision_prefix == sample.collision_prefix


@pytest.mark.req("B1")
def test_git_archive_of_a_service_path_yields_its_build_context(sample: SampleRepo) -> None:
    path = "src/components/backend-core"
    for name, version in (("initial", b"1\n"), ("backend-core-v2", b"2\n")):
        tar = archive(sample, sample.commits[name], path)
        assert {"Dockerfile", "serve.sh", "VERSION"} <= set(tar.getnames())
        assert tar.extractfile("VERSION").read() == version
        assert tar.getmember("serve.sh").mode & 0o111
        assert b"FROM unidesk-lab/busybox:latest" in tar.extractfile("Dockerfile").read()


def test_commit_change_and_set_pin_push_to_origin(tmp_path: Path) -> None:
    repo = materialize(tmp_path)
    sha = repo.commit_change("src/components/frontend/VERSION", "3\n", "frontend: v3", name="frontend-v3")
    assert repo.commits["frontend-v3"] == sha
    pin = repo.set_pin("dev", "frontend", sha)
    assert git(repo, "ls-remote", REPO_URL, "refs/heads/master").stdout.decode().startswith(pin)
    pinned = {s["id"]: s["commitId"] for s in repo.deploy_json()["environments"]["dev"]["services"]}
    assert pinned["frontend"] == sha and pinned["backend-core"] == repo.short(repo.commits["frontend-v2"])
    with pytest.raises(KeyError):
        repo.set_pin("prod", "no-such-service", sha)


# -- the fixture agrees with config.json


def _compose_targets() -> list[tuple[str, str, dict]]:
    return [
        (m["id"], e["target"]["host"], e["target"]["compose"])
        for m in CONFIG["microservices"]
        for e in m["environments"].values()
        if (e.get("target") or {}).get("compose")
    ]


@pytest.mark.req("C3")
def test_every_compose_target_is_declared_in_its_compose_file(tmp_path: Path) -> None:
    for service_id, host, target in _compose_targets():
        doc = yaml.safe_load((FIXTURE / target["file"]).read_text())
        assert doc["version"] == "3.7"
        svc = doc["services"][target["service"]]
        assert svc["image"] == f"{target['image']}:latest", service_id
        assert "container_name" not in svc and "build" not in svc
        if host == "main-server":
            assert svc["ports"] == [f"127.0.0.1:{target['healthPort']}:8080"]
        else:  # D601: no bridge
            assert svc["network_mode"] == "host"
            assert f"PORT={target['healthPort']}" in svc["environment"]
    if not shutil.which("docker-compose"):
        return
    # Compose v1 must accept every file once the executor has created the env files.
    compose = shutil.copytree(FIXTURE / "deploy/compose", tmp_path / "compose")
    (compose / "env").mkdir()
    for f in compose.glob("*.yml"):
        for svc in yaml.safe_load(f.read_text())["services"].values():
            for env_file in [svc["env_file"]] if isinstance(svc["env_file"], str) else svc["env_file"]:
                (compose / env_file).touch()
        subprocess.run(["docker-compose", "-f", str(f), "config", "-q"], check=True, capture_output=True)


def _manifest(rel: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((FIXTURE / rel).read_text()) if d]


@pytest.mark.req("E2")
def test_every_k3s_target_object_exists_and_is_stampable() -> None:
    for m in CONFIG["microservices"]:
        for env in m["environments"].values():
            k3s = (env.get("target") or {}).get("k3s")
            if not k3s:
                continue
            docs = {f"{d['kind']}/{d['metadata']['name']}": d for d in _manifest(k3s["manifest"])}
            for ref in k3s["objects"]:
                assert docs[ref]["metadata"]["namespace"] == k3s["namespace"], ref
            for name in k3s["stampDeployments"]:
                pod = docs[f"Deployment/{name}"]["spec"]["template"]
                assert pod["metadata"]["labels"]["app"] == name
                assert pod["metadata"]["annotations"]["unidesk.ai/deploy-commit"] == "placeholder"
                assert m["id"] in [c["name"] for c in pod["spec"]["containers"]]
            health = docs[f"Service/{k3s['healthService']['name']}"]["spec"]
            assert health["type"] == "ClusterIP"
            assert k3s["healthService"]["port"] in [p["port"] for p in health["ports"]]


@pytest.mark.req("E4")
def test_production_code_queue_manifest_uses_the_gate_image_and_hostpath() -> None:
    gate = next(m for m in CONFIG["microservices"] if m["id"] == "code-queue")["hostPathSource"]
    docs = {d["metadata"]["name"]: d for d in _manifest(gate["manifest"]) if d["kind"] == "Deployment"}
    assert sorted(docs) == sorted(gate["gateDeployments"])
    for name, d in docs.items():
        images = {c["image"] for c in d["spec"]["template"]["spec"]["containers"]}
        assert images == {gate["gateImage"]}, name
    mounts = docs["code-queue"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {v["mountPath"] for v in mounts} == {"/app", "/root/unidesk"}
    assert docs["code-queue"]["spec"]["template"]["spec"]["volumes"][0]["hostPath"]["path"] == gate["root"]


@pytest.mark.req("D5")
@pytest.mark.parametrize(
    "url, ok",
    [
        ("postgres://u:p@postgres-dev.unidesk-dev.svc.cluster.local:5432/unidesk_dev", True),
        ("postgresql://u@postgres-dev:5432/unidesk_dev?sslmode=disable", True),
        ("postgres://u:p@unidesk-database:5432/unidesk", False),
        ("postgres://u:p@postgres-dev.unidesk-dev.svc.cluster.local:5432/unidesk", False),
        ("postgres://u:p@d601-tcp-egress-gateway.unidesk.svc.cluster.local:15432/unidesk_dev", False),
        ("", False),
    ],
)
def test_dev_db_guard_rejects_production_looking_urls(url: str, ok: bool, tmp_path: Path) -> None:
    docs = _manifest("src/components/microservices/k3sctl-adapter/k3s/dev/unidesk-dev-foundation.k8s.yaml")
    guard = next(d for d in docs if d["metadata"]["name"] == "unidesk-dev-db-guard")["data"]["db-guard.sh"]
    script = tmp_path / "db-guard.sh"
    script.write_text(guard)
    result = subprocess.run(
        ["busybox", "sh", str(script)] if shutil.which("busybox") else ["sh", str(script)],
        env={"DATABASE_URL": url},
        capture_output=True,
        check=False,
    )
    assert (result.returncode == 0) == ok, result.stderr


@pytest.mark.req("G1")
def test_code_queue_sample_sources_resolve() -> None:
    """The fixture's baseline is healthy: every relative import target exists."""
    src = FIXTURE / "src/components/microservices/code-queue/src"
    pattern = re.compile(r"""(?:from\s+|import\s*\(\s*|import\s+)["'](\.{1,2}/[^"']+)["']""")
    targets = [(f, t) for f in src.rglob("*.ts") for t in pattern.findall(f.read_text())]
    assert any(t == "./runtime-preflight" for _, t in targets)
    for importer, target in targets:
        base = (importer.parent / target).resolve()
        assert base.with_suffix(".ts").exists() or (base / "index.ts").exists(), (importer, target)


# -- a real image on the lab's main engine


def _main_engine() -> docker.DockerClient:
    try:
        client = docker.DockerClient(base_url=MAIN_DOCKER, timeout=60)
        client.ping()
        client.images.get("unidesk-lab/busybox:latest")
        return client
    except Exception as exc:  # any failure here means the lab is not usable
        problem = f"{type(exc).__name__}: {exc}"
    pytest.fail(
        f"lab main Docker engine or base image unavailable at {MAIN_DOCKER} ({problem}): {LAB_DOWN}",
        pytrace=False,
    )


def _build(client: docker.DockerClient, sample: SampleRepo, sha: str, path: str, tag: str):
    context = io.BytesIO(git(sample, "archive", "--format=tar", f"{sha}:{path}", cwd=sample.clone).stdout)
    labels = {
        "unidesk.ai/service-id": "backend-core",
        "unidesk.ai/source-repo": REPO_URL,
        "unidesk.ai/source-commit": sha,
        "unidesk.ai/dockerfile": f"{path}/Dockerfile",
    }
    image, _ = client.images.build(
        fileobj=context, custom_context=True, tag=tag, labels=labels, rm=True, forcerm=True
    )
    return image


@pytest.mark.req("V3")
def test_sample_image_reports_its_stamped_commit(tmp_path: Path) -> None:
    client = _main_engine()
    repo = materialize(tmp_path / "repo")
    sha, path = repo.commits["backend-core-v2"], "src/components/backend-core"
    tag = f"udeploy-test/backend-core:{sha}"
    image = _build(client, repo, sha, path, tag)
    stamp = {
        "UNIDESK_DEPLOY_SERVICE_ID": "backend-core",
        "UNIDESK_DEPLOY_REPO": REPO_URL,
        "UNIDESK_DEPLOY_COMMIT": sha,
        "UNIDESK_DEPLOY_REQUESTED_COMMIT": repo.short(sha),
    }
    container = client.containers.run(
        tag, detach=True, environment=stamp, ports={"8080/tcp": ("127.0.0.1", None)}
    )
    try:
        assert image.labels["unidesk.ai/source-commit"] == sha
        container.reload()
        port = container.attrs["NetworkSettings"]["Ports"]["8080/tcp"][0]["HostPort"]
        health = _get_json(f"http://127.0.0.1:{port}/health")
        assert health == {
            "status": "ok",
            "service": "backend-core",
            "version": "2",
            "deploy": {"repo": REPO_URL, "commit": sha, "requestedCommit": repo.short(sha)},
        }

        # The documented failure hook: a commit adding BROKEN builds an image that never serves.
        broken = repo.commit_change(f"{path}/BROKEN", "", "backend-core: broken on purpose")
        broken_tag = f"udeploy-test/backend-core:{broken}"
        _build(client, repo, broken, path, broken_tag)
        dead = client.containers.run(broken_tag, detach=True, environment=stamp)
        try:
            assert dead.wait(timeout=30)["StatusCode"] == 1
        finally:
            dead.remove(force=True)
            client.images.remove(broken_tag, force=True)
    finally:
        container.remove(force=True)
        client.images.remove(tag, force=True)
        client.close()


def _get_json(url: str, timeout: float = 15) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return json.loads(response.read())
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)
