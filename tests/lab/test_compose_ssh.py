"""Compose on the main server: started locally, recreated over SSH (fabric), as udeploy does."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest
from fabric import Connection

COMPOSE_FILE = """\
version: "2.4"
services:
  web:
    image: {image}
    stop_signal: SIGKILL
    command: ["sh", "-c", "echo up $$HOSTNAME > /tmp/index.html && exec httpd -f -p 8080 -h /tmp"]
    ports: ["127.0.0.1:{port}:8080"]
"""


@pytest.fixture()
def compose_project(tmp_path: Path, lab: dict[str, Any], token: str, free_port: int) -> Iterator[tuple[str, Path, int]]:
    """A compose project on the main engine; `down` afterwards whatever happened."""
    project = f"udlabtest{token}"
    compose_file = tmp_path / "docker-compose.yml"
    compose_file.write_text(COMPOSE_FILE.format(image=lab["images"]["busybox"], port=free_port))
    yield project, compose_file, free_port
    compose(lab, project, compose_file, "down", "-v", "--timeout", "1", check=False)


def compose(lab: dict[str, Any], project: str, compose_file: Path, *args: str, check: bool = True) -> str:
    """The docker-compose v1 CLI, run locally against the main engine."""
    env = {**os.environ, "DOCKER_HOST": lab["main"]["docker_host"]}
    result = subprocess.run(
        ["docker-compose", "-p", project, "-f", str(compose_file), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if check:
        assert result.returncode == 0, f"docker-compose {' '.join(args)}:\n{result.stderr}"
    return result.stdout


def test_compose_service_recreated_over_ssh(
    compose_project: tuple[str, Path, int],
    lab: dict[str, Any],
    main_docker: docker.DockerClient,
    ssh_main: Connection,
    http_get: Callable[..., str],
) -> None:
    project, compose_file, port = compose_project
    compose(lab, project, compose_file, "up", "-d")
    first_id = compose(lab, project, compose_file, "ps", "-q", "web").strip()
    assert first_id
    # Published on the bridge network, answered through docker-proxy on loopback.
    assert http_get(f"http://127.0.0.1:{port}/").startswith("up ")

    # Over SSH the remote DOCKER_HOST (sshd SetEnv) points at the same main engine.
    command = shlex.join(
        [
            "docker-compose",
            "-p",
            project,
            "-f",
            str(compose_file),
            "up",
            "-d",
            "--no-build",
            "--no-deps",
            "--force-recreate",
            "web",
        ]
    )
    result = ssh_main.run(command, hide=True, warn=True, in_stream=False)
    assert result.ok, result.stderr

    second_id = compose(lab, project, compose_file, "ps", "-q", "web").strip()
    assert second_id and second_id != first_id
    assert main_docker.containers.get(second_id).status == "running"
    assert http_get(f"http://127.0.0.1:{port}/").startswith("up ")


def test_docker_sdk_reaches_main_engine_over_ssh(lab: dict[str, Any], require: Callable[..., None]) -> None:
    """`ssh://root@127.0.0.1:2222` with the system ssh client (key and known_hosts come from
    the drop-in that `scripts/lab up` writes to /etc/ssh/ssh_config.d/)."""
    require("sshd", "main-docker", "busybox-image")
    client = docker.DockerClient(base_url=lab["main"]["ssh_docker_host"], use_ssh_client=True)
    try:
        assert client.version()["ApiVersion"]
        assert lab["images"]["busybox"] in client.images.get(lab["images"]["busybox"]).tags
    finally:
        client.close()


def test_plain_ssh_runs_docker_on_main(lab: dict[str, Any], require: Callable[..., None]) -> None:
    """The documented explicit form: ssh -i KEY -o UserKnownHostsFile=... -p 2222 root@127.0.0.1."""
    require("sshd", "main-docker")
    ssh = lab["ssh"]
    result = subprocess.run(
        [
            "ssh",
            "-F",
            "/dev/null",
            "-i",
            ssh["key"],
            "-o",
            f"UserKnownHostsFile={ssh['known_hosts']}",
            "-o",
            "BatchMode=yes",
            "-p",
            str(ssh["port"]),
            f"{ssh['user']}@{ssh['host']}",
            "docker",
            "info",
            "--format",
            "{{.DockerRootDir}}",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == lab["main"]["data_root"]
