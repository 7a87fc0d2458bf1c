"""The k3s containerd, read through the `ctr` CLI on the host's explicit socket (E2), namespace `k8s.io`.

Readers only (STYLE 5): which image names are stored and at which manifest digest (`ctr images ls`),
and an image's config (Entrypoint, Cmd, Labels) from the content store (`ctr content get`), which
`ctr images ls` does not show. The import step in `k3s_ops` and the E3/E4 checks build on these.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Mapping
from typing import Any

import attrs

from udeploy.engine.load.timeouts import DEFAULTS, Timeout, TimeoutKind
from udeploy.engine.provider_api import ProviderUnreachable
from udeploy.providers.net_cause import unreachable

K8S_NAMESPACE = "k8s.io"
V1_PREFIX = "unidesk.ai/"


def normalize_image(ref: str) -> str:
    """The name containerd (and kubelet) store for a Kubernetes image reference.

    `app:abc` -> `docker.io/library/app:abc`, `org/app` -> `docker.io/org/app:latest`; references
    with a registry host (`127.0.0.1:5000/x:y`, `localhost/x`) keep it.
    """
    name, at, digest = ref.partition("@")
    first, slash, _ = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}" if slash else f"docker.io/library/{name}"
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + at + digest


@attrs.frozen
class StoredImage:
    ref: str  # the name containerd stores
    media_type: str
    digest: str  # of the manifest (or index) the name points at


@attrs.define
class Ctr:
    """`ctr --address <socket> -n k8s.io ...`, each call bounded by the host's containerd timeouts:
    `connect` for reaching the socket, `read` for the whole command."""

    address: str
    host_id: str
    namespace: str = K8S_NAMESPACE
    timeout: Timeout = DEFAULTS[TimeoutKind.CONTAINERD]
    # Manifest digest -> its image config: content-addressed, so what was read once never changes
    # (apply reads a Deployment's image after every step for the resume fingerprint).
    _configs: dict[str, dict[str, Any]] = attrs.field(factory=dict, init=False, eq=False, repr=False)

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        began = time.monotonic()
        command = ["ctr", "--address", self.address, "--connect-timeout", f"{self.timeout.connect:g}s",
                   "-n", self.namespace, *args]
        try:
            return subprocess.run(command, capture_output=True, text=True, timeout=self.timeout.read, check=False)
        except subprocess.TimeoutExpired as exc:
            raise self.unreachable(args, f"no answer within {self.timeout.read:g} s (read timeout)", began) from exc
        except OSError as exc:
            raise self.unreachable(args, f"cannot run ctr ({exc})", began) from exc

    def checked(self, *args: str) -> str:
        began = time.monotonic()
        done = self.run(*args)
        if done.returncode != 0:
            said = (done.stderr or done.stdout).strip()
            if "connection refused" in said:
                raise self.unreachable(args, "connection refused", began)
            if "no such file or directory" in said and self.address in said:
                raise self.unreachable(args, "no such socket", began)
            if "connection error" in said or "context deadline exceeded" in said:
                raise self.unreachable(args, said, began)
            raise ProviderUnreachable(f"{self.host_id}: ctr {' '.join(args[:2])} on {self.address}: {said}",
                                      path=self.host_id)
        return done.stdout

    def unreachable(self, args: tuple[str, ...], cause: str, began: float) -> ProviderUnreachable:
        return unreachable(f"the containerd of {self.host_id}", "containerd", self.host_id, self.address,
                           f"`ctr {' '.join(args[:2])}`: {cause}", began, self.timeout)

    def images(self, *names: str) -> dict[str, StoredImage]:
        """Every stored image name -> its manifest digest (`ctr images ls`); given `names`, only
        those (`ctr images ls 'name=="N"' ...`, the filters OR'd), not the whole store."""
        out: dict[str, StoredImage] = {}
        filters = [f'name=="{n}"' for n in dict.fromkeys(names)]
        for line in self.checked("images", "ls", *filters).splitlines()[1:]:
            cols = line.split()
            if len(cols) >= 3:
                out[cols[0]] = StoredImage(ref=cols[0], media_type=cols[1], digest=cols[2])
        return out

    def find(self, ref: str, images: Mapping[str, StoredImage] | None = None) -> StoredImage | None:
        """The stored image a Kubernetes reference resolves to (as is, or normalized), or None;
        without `images`, the two names are looked up alone."""
        names = (ref, normalize_image(ref))
        images = self.images(*names) if images is None else images
        return next((images[n] for n in names if n in images), None)

    def content(self, digest: str) -> Any:
        return json.loads(self.checked("content", "get", digest))

    def image_config(self, image: StoredImage) -> dict[str, Any]:
        """The image config (Entrypoint, Cmd, Labels, ...) of a stored image, linux/amd64 of an index."""
        if image.digest not in self._configs:
            self._configs[image.digest] = self._read_config(image)
        return dict(self._configs[image.digest])

    def _read_config(self, image: StoredImage) -> dict[str, Any]:
        manifest = self.content(image.digest)
        if "manifests" in manifest:
            entries = manifest["manifests"]
            pick = next((m for m in entries if (m.get("platform") or {}).get("os") == "linux"
                         and (m.get("platform") or {}).get("architecture") == "amd64"), entries[0] if entries else None)
            if pick is None:
                raise ProviderUnreachable(f"{image.ref}: image index lists no manifests", path=self.host_id)
            manifest = self.content(pick["digest"])
        config = self.content(manifest["config"]["digest"])
        return {"digest": manifest["config"]["digest"], **(config.get("config") or {})}


def image_facts(ctr: Ctr, ref: str) -> tuple[str | None, dict[str, str]]:
    """(config digest, V1 labels) of the image a Deployment references, ({}, None) when absent."""
    stored = ctr.find(ref)
    if stored is None:
        return None, {}
    try:
        config = ctr.image_config(stored)
    except (ProviderUnreachable, KeyError, ValueError):
        return None, {}  # content garbage-collected or unreadable: nothing to report, not an outage
    labels = config.get("Labels") or {}
    return config["digest"], {k: v for k, v in labels.items() if k.startswith(V1_PREFIX)}
