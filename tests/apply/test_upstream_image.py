"""The upstream-image exception end to end (P10): the lab's second registry on 127.0.0.1:5001
plays docker.io; a stand-in `filebrowser/filebrowser:v2.63.3` is pushed there for real."""

from __future__ import annotations

import io
import json
import secrets
import tarfile
from pathlib import Path

import docker
import pytest

from tests.apply.conftest import Lab
from tests.apply.test_apply_compose import by_id, plan_out

REVISION = "ca5e249e3c0c94159c2136a0cd431a424eb18472"
SERVE = (Path(__file__).resolve().parents[2] / "fixtures" / "unidesk-sample" / "src" / "components" / "microservices"
         / "findjob" / "serve.sh")


@pytest.fixture
def upstream_image() -> tuple[str, str, str]:
    """Push a stand-in vendor image upstream; returns (tag reference, manifest digest, local image id)."""
    client = docker.DockerClient(base_url="unix:///run/udeploy-lab/main/docker.sock")
    context = io.BytesIO()
    with tarfile.open(fileobj=context, mode="w") as tar:
        dockerfile = ("FROM unidesk-lab/busybox:latest\nSTOPSIGNAL SIGKILL\nCOPY serve.sh /srv/serve.sh\n"
                      f"RUN echo {secrets.token_hex(4)} > /srv/VERSION\n"
                      'ENTRYPOINT ["/bin/busybox", "sh", "/srv/serve.sh"]\n')
        for name, data in (("Dockerfile", dockerfile.encode()), ("serve.sh", SERVE.read_bytes())):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    context.seek(0)
    ref = "127.0.0.1:5001/filebrowser/filebrowser:v2.63.3"
    image, _ = client.images.build(fileobj=context, custom_context=True, tag=ref, network_mode="none",
                                   labels={"org.opencontainers.image.revision": REVISION})
    digest = None
    for event in client.images.push("127.0.0.1:5001/filebrowser/filebrowser", tag="v2.63.3", stream=True,
                                    decode=True):
        digest = (event.get("aux") or {}).get("Digest", digest)
    assert digest
    client.close()
    return ref, digest, str(image.id)


def set_artifact(lab: Lab, **fields: object) -> None:
    ci = json.loads((lab.sample.clone / "CI.json").read_text())
    art = next(a for a in ci["artifacts"] if a["id"] == "filebrowser-upstream")
    art.update(fields)
    lab.sample.commit_change("CI.json", json.dumps(ci, indent=2), f"CI.json: {sorted(fields)}")


def mirror(lab: Lab, *args: str) -> dict:
    return lab.cli("artifact", "mirror", "--artifact", "filebrowser-upstream", *args).json


def test_P10_digest_pin_required_then_mirror_then_pull_only_by_digest(lab: Lab, tmp_path: Path,
                                                                        upstream_image: tuple[str, str, str]) -> None:
    _, digest, _ = upstream_image
    unpinned = by_id(plan_out(lab, tmp_path / "a.json", "--service", "filebrowser"))["filebrowser"]
    assert unpinned["action"] == "blocked" and unpinned["blockedReason"] == "digest-pin-required"
    assert unpinned["artifactConsumer"]["upstream"]["localImageIdIsAPin"] is False
    needs_pin = mirror(lab)
    assert needs_pin["status"] == "digest-pin-required" and needs_pin["observedDigest"] == digest
    set_artifact(lab, digest=digest)
    missing = by_id(plan_out(lab, tmp_path / "b.json", "--service", "filebrowser"))["filebrowser"]
    assert missing["blockedReason"] == "mirror-missing"
    done = mirror(lab)
    assert done["status"] == "mirrored" and done["digest"] == digest
    assert done["labels"]["org.opencontainers.image.revision"] == REVISION
    ready = by_id(plan_out(lab, tmp_path / "c.json", "--service", "filebrowser"))
    item = ready["filebrowser"]
    assert item["action"] == "deploy" and item["deploymentPath"] == "upstream-image"
    assert item["artifactConsumer"]["registryImage"] == f"127.0.0.1:5000/upstream/filebrowser/filebrowser@{digest}"
    r = lab.cli("apply", str(tmp_path / "c.json"), *lab.apply_args())
    assert r.exit_code == 0, r.stdout + r.stderr
    assert "filebrowser" in lab.containers("main-server")


def test_P10_unreachable_upstream_is_pending_network_verification(lab: Lab, tmp_path: Path,
                                                                  upstream_image: tuple[str, str, str]) -> None:
    _, digest, _ = upstream_image
    set_artifact(lab, digest="sha256:" + "0" * 64, upstreamEndpoint="http://127.0.0.1:9")  # nothing listens on 9
    assert mirror(lab)["status"] == "pending-network-verification"
    item = by_id(plan_out(lab, tmp_path / "p.json", "--service", "filebrowser"))["filebrowser"]
    assert item["action"] == "blocked" and item["blockedReason"] == "pending-network-verification"


def test_P10_a_local_image_id_is_never_a_pin(lab: Lab, tmp_path: Path, upstream_image: tuple[str, str, str]) -> None:
    _, digest, image_id = upstream_image
    assert image_id != digest
    set_artifact(lab, digest=image_id)
    result = mirror(lab)
    assert result["status"] == "digest-mismatch" and result["observedDigest"] == digest
    assert "never a pin" in result["reason"]
    item = by_id(plan_out(lab, tmp_path / "p.json", "--service", "filebrowser"))["filebrowser"]
    assert item["action"] == "blocked"
