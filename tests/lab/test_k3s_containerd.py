"""The standalone containerd standing in for k3s's: `ctr -n k8s.io images import/ls` are real."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import docker


def test_imported_image_is_listed_and_runs(
    main_docker: docker.DockerClient,
    k3s_ctr: Callable[..., str],
    lab: dict[str, Any],
    token: str,
    tmp_path: Path,
) -> None:
    name = f"unidesk-lab/labtest-ctr:{token}"
    ref = f"docker.io/{name}"  # how containerd names an imported short reference
    tarball = tmp_path / "image.tar"
    base = main_docker.images.get(lab["images"]["busybox"])
    base.tag(name)
    try:
        with tarball.open("wb") as out:
            for chunk in main_docker.images.get(name).save(named=name):
                out.write(chunk)
    finally:
        main_docker.images.remove(name)

    k3s_ctr("-n", "k8s.io", "images", "import", str(tarball))
    try:
        assert ref in k3s_ctr("-n", "k8s.io", "images", "ls", "-q").split()
        output = k3s_ctr(
            "-n",
            "k8s.io",
            "run",
            "--rm",
            "--net-host",
            ref,
            f"labtest-{token}",
            "/bin/busybox",
            "echo",
            f"ran {token}",
        )
        assert output.strip() == f"ran {token}"
    finally:
        k3s_ctr("-n", "k8s.io", "images", "rm", ref)
