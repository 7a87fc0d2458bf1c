"""Fixtures for the lab tests: the real components started by `scripts/lab up`.

The layout comes from `scripts/lab env`; whether a component is up from `scripts/lab status`.
A component that is down fails the test (never skips): these tests exist to prove the lab.
"""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import docker
import pytest
from fabric import Connection


@pytest.fixture(scope="session")
def main_docker(lab: dict[str, Any], require: Callable[..., None]) -> Iterator[docker.DockerClient]:
    """The main-server engine, over its unix socket."""
    require("main-docker", "busybox-image")
    client = docker.DockerClient(base_url=lab["main"]["docker_host"], timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="session")
def d601_docker(lab: dict[str, Any], require: Callable[..., None]) -> Iterator[docker.DockerClient]:
    """The D601 engine (no bridge: containers run with host networking)."""
    require("d601-docker", "busybox-image")
    client = docker.DockerClient(base_url=lab["d601"]["docker_host"], timeout=60)
    yield client
    client.close()


@pytest.fixture(scope="session")
def registry(lab: dict[str, Any], require: Callable[..., None]) -> dict[str, Any]:
    require("registry")
    section: dict[str, Any] = lab["registry"]
    return section


@pytest.fixture()
def ssh_main(lab: dict[str, Any], require: Callable[..., None]) -> Iterator[Connection]:
    """A fabric connection to the main server (remote DOCKER_HOST = the main engine)."""
    require("sshd", "main-docker")
    ssh = lab["ssh"]
    connection = Connection(
        ssh["host"], user=ssh["user"], port=ssh["port"], connect_kwargs={"key_filename": ssh["key"]}
    )
    yield connection
    connection.close()


@pytest.fixture(scope="session")
def k3s_ctr(lab: dict[str, Any], require: Callable[..., None]) -> Callable[..., str]:
    """ctr against the k3s containerd: k3s_ctr("-n", "k8s.io", "images", "ls")."""
    require("k3s-containerd")
    address = lab["k3s"]["containerd_address"]

    def ctr(*args: str, timeout: float = 60) -> str:
        result = subprocess.run(
            ["ctr", "--address", address, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"ctr {' '.join(args)}: {result.stderr}"
        return result.stdout

    return ctr


@pytest.fixture()
def token() -> str:
    """A unique name part, so parallel or leftover runs never collide."""
    return uuid.uuid4().hex[:10]


@pytest.fixture()
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _http_get(url: str, timeout: float = 15) -> str:
    """GET url, retrying until it answers 200 (a just-started httpd) or timeout passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                body: bytes = response.read()
                return body.decode()
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture(scope="session")
def http_get() -> Callable[..., str]:
    """http_get(url) -> body, retrying while the server is still starting."""
    return _http_get
