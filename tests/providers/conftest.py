"""Fixtures for the provider tests: the real lab, a real git remote, real images in the real registry.

A lab component that is down fails the test (never skips): run `scripts/lab up`.

`source` is a bare git remote (file://) plus a clone, holding the test service (Dockerfile,
serve.sh) and two tiny compose files (bridge + published port for main-server, host network for
D601). `images` builds the service once per commit on the main engine with the V1 labels and
pushes `127.0.0.1:5000/udtest-<token>/svc:<commit>`: that is what a CI producer would publish.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.labkit import context_tar
from tests.providers.support import (
    D601_COMPOSE,
    DOCKERFILE,
    MAIN_COMPOSE,
    SERVE_SH,
    Images,
    Source,
    free_port,
    init_repo,
    v1_labels,
)
from udeploy.engine.load.catalog import Catalog, Host, parse_catalog

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "fixtures" / "unidesk-sample"


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return parse_catalog(json.loads((SAMPLE / "config.json").read_text()),
                         json.loads((SAMPLE / "CI.json").read_text()))


@pytest.fixture(scope="session")
def hosts(catalog: Catalog) -> dict[str, Host]:
    return dict(catalog.hosts)


@pytest.fixture(scope="session")
def token() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def source(tmp_path_factory: pytest.TempPathFactory, token: str) -> Source:
    root = tmp_path_factory.mktemp("udtest-src")
    bare, repo = init_repo(root, "clone")
    clone = Path(repo.working_tree_dir or root / "clone")
    local_image = f"udtest{token}-svc"
    ports = {"main-server": free_port(), "D601": free_port()}
    files = {"main-server": "deploy/compose/main.compose.yml", "D601": "deploy/compose/d601.compose.yml"}
    (clone / "deploy" / "compose").mkdir(parents=True)
    (clone / files["main-server"]).write_text(MAIN_COMPOSE.format(image=local_image, port=ports["main-server"]))
    (clone / files["D601"]).write_text(D601_COMPOSE.format(image=local_image, port=ports["D601"]))
    (clone / "svc").mkdir()
    (clone / "svc" / "Dockerfile").write_text(DOCKERFILE)
    (clone / "svc" / "serve.sh").write_text(SERVE_SH)
    commits: dict[str, str] = {}
    for name in ("old", "new", "dry"):
        (clone / "svc" / "VERSION").write_text(f"{name}\n")
        repo.git.add("-A")
        repo.git.commit("-q", "-m", name)
        commits[name] = repo.head.commit.hexsha
    repo.git.push("-q", "origin", "HEAD:refs/heads/master")
    # Operator-side noise the target-side build must never see (B1).
    (clone / "svc" / "UNTRACKED-OPERATOR-FILE").write_text("dirty\n")
    return Source(remote=bare.as_uri(), clone=clone, commits=commits, manifest_commit=commits["dry"],
                  compose_files=files, ports=ports, local_image=local_image)


@pytest.fixture(scope="session")
def images(lab: dict[str, Any], require: Callable[..., None], source: Source, token: str) -> Iterator[Images]:
    """The service image per commit, built with V1 labels on the main engine and pushed."""
    require("main-docker", "registry", "busybox-image")
    registry = lab["registry"]["host"]
    repository = f"udtest-{token}/svc"
    client = docker.DockerClient(base_url=lab["main"]["docker_host"], timeout=120)
    digests: dict[str, str] = {}
    try:
        for commit in source.commits.values():
            ref = f"{registry}/{repository}:{commit}"
            image, _ = client.images.build(fileobj=context_tar({"Dockerfile": DOCKERFILE, "serve.sh": SERVE_SH}),
                                           custom_context=True, tag=ref, labels=v1_labels(commit), rm=True)
            for line in client.images.push(f"{registry}/{repository}", tag=commit, stream=True, decode=True):
                assert "error" not in line, line
                digest = (line.get("aux") or {}).get("Digest")
                if digest:
                    digests[commit] = digest
            assert commit in digests, f"push of {ref} reported no digest"
            client.images.remove(ref)  # the hosts must really pull it (main-server is this engine)
        yield Images(registry=registry, repository=repository, digests=digests)
    finally:
        for digest in digests.values():
            delete = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{digest}", method="DELETE")
            try:
                urllib.request.urlopen(delete, timeout=5).close()
            except OSError:
                pass
        client.close()


@pytest.fixture(scope="session")
def git_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("udtest-git-cache")




