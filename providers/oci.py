"""Names of the OCI distribution API shared by the registry reader and the mirror copier: media
types, an image reference split the way the API needs it, the base URL of a registry, and the
digest of a manifest's bytes."""

from __future__ import annotations

import hashlib

import attrs

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
ACCEPT = ", ".join((OCI_INDEX, OCI_MANIFEST, DOCKER_LIST, DOCKER_MANIFEST))
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)


@attrs.frozen
class ImageRef:
    """`<registry>/<repository>(:<tag>|@<digest>)`, split the way the distribution API needs it."""

    registry: str
    repository: str
    reference: str  # a tag or a digest

    @classmethod
    def parse(cls, image: str, default_registry: str) -> ImageRef:
        name, digest = image.split("@", 1) if "@" in image else (image, None)
        first, _, rest = name.partition("/")
        if rest and ("." in first or ":" in first or first == "localhost"):
            registry, path = first, rest
        else:
            registry, path = default_registry, name
        if digest is None:
            slash = path.rfind("/")
            colon = path.rfind(":")
            path, reference = (path[:colon], path[colon + 1:]) if colon > slash else (path, "latest")
        else:
            reference = digest
        return cls(registry=registry, repository=path, reference=reference)


def base_url(registry: str) -> str:
    """`http://` for loopback and explicit-scheme-less lab registries, `https://` otherwise."""
    if registry.startswith(("http://", "https://")):
        return registry.rstrip("/")
    host = registry.split(":")[0]
    plain = host in ("localhost", "::1") or host.startswith("127.")
    return ("http://" if plain else "https://") + registry


def sha256_digest(body: bytes) -> str:
    """The content digest of `body` as the distribution API writes it (`sha256:<hex>`)."""
    return "sha256:" + hashlib.sha256(body).hexdigest()
