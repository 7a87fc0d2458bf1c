"""Build a tiny sample-service image as a `docker save` tarball, without Docker.

One layer: Debian's static /bin/busybox plus an entry script that writes /www/health from the
stamped deploy env and runs `busybox httpd -f -p $PORT -h /www` (see docs/lab.md, "The sample
service image"). `ctr images import` names it like Docker would: `kubelab-health:test` becomes
`docker.io/library/kubelab-health:test`.

    python3 scripts/kubelab/testimage.py OUT.tar [REPO:TAG]
"""

import hashlib
import io
import json
import sys
import tarfile

DEFAULT_TAG = "kubelab-health:test"

ENTRY = """\
printf '{"status": "ok", "service": "%s", "deploy": {"repo": "%s", "commit": "%s", "requestedCommit": "%s"}}\\n' \\
  "$UNIDESK_DEPLOY_SERVICE_ID" "$UNIDESK_DEPLOY_REPO" "$UNIDESK_DEPLOY_COMMIT" \\
  "$UNIDESK_DEPLOY_REQUESTED_COMMIT" > /www/health
exec /bin/busybox httpd -f -p "${PORT:-8080}" -h /www
"""


def _add(tar: tarfile.TarFile, name: str, data: bytes | None = None, mode: int = 0o644) -> None:
    info = tarfile.TarInfo(name)
    info.mode, info.mtime = mode, 0  # fixed mtime: the same input gives the same image ID
    if data is None:
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    else:
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))


def _tar(entries: list[tuple[str, bytes | None, int]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in entries:
            _add(tar, name, data, mode)
    return buf.getvalue()


def build(repo_tag: str = DEFAULT_TAG, busybox: str = "/bin/busybox") -> bytes:
    """Return the bytes of a `docker save`-format tarball holding one image tagged `repo_tag`."""
    with open(busybox, "rb") as f:
        layer = _tar([
            ("bin", None, 0o755),
            ("bin/busybox", f.read(), 0o755),
            ("www", None, 0o755),
            ("entry.sh", ENTRY.encode(), 0o755),
        ])
    layer_id = hashlib.sha256(layer).hexdigest()
    config = json.dumps({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/busybox", "sh", "/entry.sh"],
            "Env": ["PATH=/bin"],
            "StopSignal": "SIGKILL",  # busybox httpd as PID 1 ignores SIGTERM
        },
        "rootfs": {"type": "layers", "diff_ids": [f"sha256:{layer_id}"]},
    }, sort_keys=True).encode()
    config_id = hashlib.sha256(config).hexdigest()
    manifest = json.dumps([{
        "Config": f"{config_id}.json",
        "RepoTags": [repo_tag],
        "Layers": [f"{layer_id}/layer.tar"],
    }]).encode()
    return _tar([
        (f"{layer_id}", None, 0o755),
        (f"{layer_id}/layer.tar", layer, 0o644),
        (f"{config_id}.json", config, 0o644),
        ("manifest.json", manifest, 0o644),
    ])


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    with open(sys.argv[1], "wb") as out:
        out.write(build(*sys.argv[2:]))
