"""Small, real service images for a bench fleet, made with the registry API alone (nothing is built).

Every image is `lab/busybox`'s layers plus one tiny layer holding a generic `serve.sh` (the sample
service's health server: `busybox httpd` answering `GET /health` with the stamped deploy env), and
a config of its own carrying the service's V1 labels, so CD's label checks hold. Layers are
mounted from repository to repository; only a ~1 KiB layer and a config per service are uploaded.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

BASE_REPO, BASE_TAG = "lab/busybox", "latest"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"
ACCEPT = f"{MANIFEST_V2}, application/vnd.oci.image.manifest.v1+json"

SERVE_SH = b"""#!/bin/sh
# bench fleet service: write /www/health from the stamped deploy env, then serve it (see docs/lab.md).
set -eu
str() { printf '%s' "$1" | tr -d '"\\\\\\000-\\037'; }
mkdir -p /www
service=$(str "${UNIDESK_DEPLOY_SERVICE_ID:-}") repo=$(str "${UNIDESK_DEPLOY_REPO:-}")
commit=$(str "${UNIDESK_DEPLOY_COMMIT:-}") requested=$(str "${UNIDESK_DEPLOY_REQUESTED_COMMIT:-}")
cat > /www/health <<JSON
{"status":"ok","service":"$service","deploy":{"repo":"$repo","commit":"$commit","requestedCommit":"$requested"}}
JSON
exec httpd -f -p "${LISTEN_ADDR:+$LISTEN_ADDR:}${PORT:-8080}" -h /www
"""


class RegistryError(Exception):
    pass


def http(method: str, url: str, *, body: bytes | None = None, headers: Mapping[str, str] | None = None,
         ) -> tuple[int, Mapping[str, str], bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(request, timeout=30) as r:
            return r.status, dict(r.headers.items()), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers.items()), exc.read() or b""


def _sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _serve_layer() -> tuple[bytes, str]:
    """The gzipped layer with /srv/serve.sh, and its diff_id (digest of the uncompressed tar)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data, mode in (("srv/", b"", 0o755), ("srv/serve.sh", SERVE_SH, 0o755)):
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mode, info.mtime = mode, 0
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    tar_bytes = raw.getvalue()
    return gzip.compress(tar_bytes, mtime=0), _sha(tar_bytes)


class ImageMaker:
    """Pushes `<registry>/<repository>:<tag>` images with given labels; remembers what it pushed."""

    def __init__(self, registry: str) -> None:
        self.root = f"http://{registry}/v2"
        status, _, manifest = http("GET", f"{self.root}/{BASE_REPO}/manifests/{BASE_TAG}", headers={"Accept": ACCEPT})
        if status != 200:
            raise RegistryError(f"{BASE_REPO}:{BASE_TAG} is not in the lab registry (HTTP {status})")
        self.base = json.loads(manifest)
        status, _, config = http("GET", f"{self.root}/{BASE_REPO}/blobs/{self.base['config']['digest']}")
        if status != 200:
            raise RegistryError(f"config blob of {BASE_REPO} not served (HTTP {status})")
        self.base_config = json.loads(config)
        self.layer, self.diff_id = _serve_layer()
        self.layer_digest = _sha(self.layer)
        self.layer_home: str | None = None  # the first repository the layer was uploaded to
        self.pushed: list[tuple[str, str]] = []  # (repository, manifest digest)

    def push(self, repository: str, tag: str, labels: Mapping[str, str]) -> str:
        """The manifest digest of the image pushed as `repository:tag`."""
        for layer in self.base["layers"]:
            self._mount(repository, layer["digest"], BASE_REPO)
        if self.layer_home is None:
            self._upload(repository, self.layer)
            self.layer_home = repository
        else:
            self._mount(repository, self.layer_digest, self.layer_home)
        config = self._config(labels)
        self._upload(repository, config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": MANIFEST_V2,
            "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                       "digest": _sha(config)},
            "layers": [*self.base["layers"], {"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                                              "size": len(self.layer), "digest": self.layer_digest}],
        }).encode()
        status, headers, text = http("PUT", f"{self.root}/{repository}/manifests/{tag}", body=manifest,
                                     headers={"Content-Type": MANIFEST_V2})
        if status != 201:
            raise RegistryError(f"cannot push {repository}:{tag}: HTTP {status} {text[:200]!r}")
        digest = headers.get("Docker-Content-Digest") or _sha(manifest)
        self.pushed.append((repository, digest))
        return digest

    def delete_all(self) -> list[str]:
        """Delete every manifest pushed; returns the failures (blobs stay until the registry's GC)."""
        failures = []
        for repository, digest in self.pushed:
            status, _, _ = http("DELETE", f"{self.root}/{repository}/manifests/{digest}")
            if status not in (202, 404):
                failures.append(f"{repository}@{digest}: HTTP {status}")
        self.pushed.clear()
        return failures

    def _config(self, labels: Mapping[str, str]) -> bytes:
        doc: dict[str, Any] = json.loads(json.dumps(self.base_config))
        config = doc.setdefault("config", {})
        config.update(Entrypoint=["/bin/busybox", "sh", "/srv/serve.sh"], Cmd=None, StopSignal="SIGKILL",
                      ExposedPorts={"8080/tcp": {}}, Labels=dict(labels))
        doc["rootfs"]["diff_ids"] = [*doc["rootfs"]["diff_ids"], self.diff_id]
        doc["history"] = [*doc.get("history", []), {"created_by": "udeploy bench: serve.sh layer"}]
        return json.dumps(doc, sort_keys=True).encode()

    def _mount(self, repository: str, digest: str, source: str) -> None:
        status, _, text = http("POST", f"{self.root}/{repository}/blobs/uploads/?mount={digest}&from={source}")
        if status != 201:
            raise RegistryError(f"cannot mount {digest} into {repository}: HTTP {status} {text[:200]!r}")

    def _upload(self, repository: str, data: bytes) -> None:
        status, headers, text = http("POST", f"{self.root}/{repository}/blobs/uploads/")
        location = headers.get("Location")
        if status != 202 or not location:
            raise RegistryError(f"upload to {repository} refused: HTTP {status} {text[:200]!r}")
        if location.startswith("/"):
            location = self.root.removesuffix("/v2") + location
        sep = "&" if "?" in location else "?"
        status, _, text = http("PUT", f"{location}{sep}digest={_sha(data)}", body=data,
                               headers={"Content-Type": "application/octet-stream"})
        if status not in (201, 204):
            raise RegistryError(f"upload of a blob to {repository} failed: HTTP {status} {text[:200]!r}")
