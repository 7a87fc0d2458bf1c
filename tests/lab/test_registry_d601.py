"""Build on the main engine, push to the lab registry, pull and run on D601 (host network)."""

from __future__ import annotations

import urllib.request
from collections.abc import Callable
from typing import Any

import docker

from tests.labkit import context_tar

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def delete_manifest(registry_url: str, repo: str, tag: str) -> int:
    """Delete a tag's manifest by digest (the registry has delete enabled); returns the status."""
    head = urllib.request.Request(
        f"{registry_url}/v2/{repo}/manifests/{tag}", method="HEAD", headers={"Accept": MANIFEST_V2}
    )
    with urllib.request.urlopen(head, timeout=5) as response:
        digest = response.headers["Docker-Content-Digest"]
    delete = urllib.request.Request(f"{registry_url}/v2/{repo}/manifests/{digest}", method="DELETE")
    with urllib.request.urlopen(delete, timeout=5) as response:
        return int(response.status)


def test_image_built_on_main_runs_on_d601_from_registry(
    main_docker: docker.DockerClient,
    d601_docker: docker.DockerClient,
    registry: dict[str, Any],
    lab: dict[str, Any],
    token: str,
    free_port: int,
    http_get: Callable[..., str],
) -> None:
    repo = f"labtest/hello-{token}"
    ref = f"{registry['host']}/{repo}:v1"
    dockerfile = (
        f"FROM {lab['images']['busybox']}\n"
        "STOPSIGNAL SIGKILL\n"
        "COPY index.html /www/index.html\n"
        'CMD ["sh", "-c", "exec httpd -f -p ${PORT:-8080} -h /www"]\n'
    )
    context = context_tar({"Dockerfile": dockerfile, "index.html": f"hello {token}\n"})
    container = None
    try:
        main_docker.images.build(fileobj=context, custom_context=True, tag=ref, rm=True)
        for line in main_docker.images.push(ref, stream=True, decode=True):
            assert "error" not in line, line

        pulled = d601_docker.images.pull(ref)
        assert ref in pulled.tags

        container = d601_docker.containers.run(
            ref, detach=True, network_mode="host", environment={"PORT": str(free_port)}
        )
        assert http_get(f"http://127.0.0.1:{free_port}/") == f"hello {token}\n"
    finally:
        if container is not None:
            container.remove(force=True)
        for client in (d601_docker, main_docker):
            try:
                client.images.remove(ref, force=True)
            except docker.errors.ImageNotFound:
                pass
    assert delete_manifest(registry["url"], repo, "v1") == 202
