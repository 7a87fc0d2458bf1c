"""bench/io_floor.py against the lab: it makes exactly the reads a refreshed plan of a fleet must make.

Behaviour only (which reads, how many): no timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import docker
import pytest

from bench.io_floor import run
from bench.plan_fleet import SAMPLE_CONFIG, floor_spec

REPO = Path(__file__).resolve().parents[2]


def test_a_fleet_where_nothing_exists_costs_one_head_per_artifact_and_one_list_per_engine_and_namespace(
        tmp_path: Path, require: Callable[..., None]) -> None:
    require("registry", "sshd", "main-docker", "d601-docker", "kubelab")
    fleet = SimpleNamespace(size=6, commit=uuid.uuid4().hex + "00000000")  # a commit nothing was published at
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(floor_spec(fleet, parallelism=4)))  # type: ignore[arg-type]

    done = subprocess.run([sys.executable, str(REPO / "bench" / "io_floor.py"), "--spec", str(spec)],
                          capture_output=True, text=True, timeout=120, check=False)

    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    # 6 artifacts; main-server (SSH) and D601 (socket) each hold one Compose project; one namespace,
    # and no Pod list: none of the fleet's Deployments exists
    expected = {"registry manifest HEAD": 6, "container list": 2, "Deployment list": 1}
    assert answer["reads"] == expected
    assert answer["answered"] == expected
    assert answer["artifactsFound"] == 0


@pytest.fixture
def labelled_container(lab: dict[str, Any], require: Callable[..., None]) -> Iterator[tuple[str, str]]:
    """A running container on D601 labelled as Compose service svc-0002 of a project of its own."""
    require("d601-docker", "busybox-image")
    client = docker.DockerClient(base_url=lab["d601"]["docker_host"], timeout=60)
    project = f"floor-test-{uuid.uuid4().hex[:8]}"
    container = client.containers.run(lab["images"]["busybox"], ["sleep", "120"], detach=True, network_mode="host",
                                      labels={"com.docker.compose.project": project,
                                              "com.docker.compose.service": "svc-0002"})
    try:
        yield project, "svc-0002"
    finally:
        container.remove(force=True)
        client.close()


def test_a_service_that_exists_is_inspected_and_its_health_read_on_the_host(
        labelled_container: tuple[str, str]) -> None:
    project, service = labelled_container
    socket = SAMPLE_CONFIG["hosts"]["D601"]["docker"]["socket"]
    # port 9 (discard): nothing listens, so the health GET is made and gets no answer
    spec = {"parallelism": 2, "docker": [{"socket": socket, "projects": {project: {service: 9, "svc-0005": 10}}}]}

    answer = run(spec)

    assert answer["reads"] == {"container list": 1, "container inspect": 1, "image inspect": 1,
                               "health GET (on the host)": 1}
    assert answer["answered"] == {"container list": 1, "container inspect": 1, "image inspect": 1}
