"""The upstream-image exception (P10): `filebrowser` and `filebrowser-d601` run a vendor image,
declared by a CI.json `kind=upstream-image` artifact and the service's `repository.artifactSource`.

The rules: a digest pin is required before rollout; the mirror `<registry>/upstream/...` is
written only after the upstream registry was seen to serve exactly the pinned manifest digest;
CD pulls only `<mirror>@<pin>`. With the upstream registry unreachable the service is
`pending-network-verification`. A locally cached image ID is never a pin: only a manifest digest
the upstream registry serves for the declared tag counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from udeploy.engine.errors import ServiceNotFound
from udeploy.engine.load.catalog import Catalog, Microservice, read_catalog
from udeploy.engine.load.source import DEFAULT_REF, open_env_source
from udeploy.engine.provider_api import ArtifactReader, SourceReader, image_mirror, registry_reader, source_reader

PENDING = "pending-network-verification"


@attrs.frozen
class UpstreamArtifact:
    id: str
    services: tuple[str, ...]
    upstream_image: str  # as declared, e.g. docker.io/filebrowser/filebrowser:v2.63.3
    upstream_registry: str  # where it is fetched from (upstreamEndpoint; the lab's stand-in for docker.io)
    source_revision: str | None
    pin: str | None  # the reviewed manifest digest; None until someone pins it
    mirror: str  # <registry>/upstream/<repo>

    @property
    def repository_and_tag(self) -> tuple[str, str]:
        name = self.upstream_image.split("/", 1)[1] if "." in self.upstream_image.split("/", 1)[0] else \
            self.upstream_image
        repo, _, tag = name.rpartition(":")
        return repo, tag

    @property
    def upstream_ref(self) -> str:
        repo, tag = self.repository_and_tag
        return f"{self.upstream_registry}/{repo}:{tag}"

    @property
    def mirror_image(self) -> str | None:
        return f"{self.mirror}@{self.pin}" if self.pin else None

    @property
    def expected_labels(self) -> dict[str, str]:
        """OCI labels the image must carry (identity beyond the digest)."""
        return {"org.opencontainers.image.revision": self.source_revision} if self.source_revision else {}


def upstream_artifact(catalog: Catalog, artifact_id: str) -> UpstreamArtifact:
    art = catalog.artifacts.get(artifact_id)
    if art is None or art.kind != "upstream-image":
        raise ServiceNotFound(f"CI.json has no upstream-image artifact {artifact_id!r}", path=artifact_id)
    spec: Mapping[str, Any] = art.spec
    endpoint = str(spec.get("upstreamEndpoint") or spec["upstreamImage"].split("/", 1)[0])
    return UpstreamArtifact(id=art.id, services=tuple(spec["services"]), upstream_image=spec["upstreamImage"],
                            upstream_registry=endpoint.removeprefix("http://").removeprefix("https://"),
                            source_revision=spec.get("upstreamSourceRevision"), pin=spec.get("digest"),
                            mirror=spec["mirror"])


def for_service(catalog: Catalog, ms: Microservice) -> UpstreamArtifact | None:
    return upstream_artifact(catalog, ms.artifact_source) if ms.artifact_source else None


def mirror(checkout: Path, artifact_id: str, *, dry_run: bool = False, ref: str = DEFAULT_REF,
           git: SourceReader | None = None) -> dict[str, Any]:
    """CI side: verify the upstream serves the pinned digest for the declared tag, then mirror it."""
    reader, source = open_env_source(git or source_reader(), checkout, ref)
    catalog = read_catalog(reader)
    art = upstream_artifact(catalog, artifact_id)
    base: dict[str, Any] = {"artifact": art.id, "upstreamImage": art.upstream_image, "upstream": art.upstream_ref,
                            "pin": art.pin, "mirror": art.mirror, "manifestCommit": source.commit, "dryRun": dry_run}
    registry = registry_reader(catalog)  # reads the upstream too: its references name their registry
    if not registry.health(art.upstream_registry):
        return {**base, "status": PENDING, "reason": f"upstream registry {art.upstream_registry} is unreachable; "
                "the digest cannot be verified, so nothing is mirrored or rolled out"}
    served = registry.artifact(art.upstream_ref, refresh=True)
    if not served.exists:
        return {**base, "status": "upstream-missing", "reason": f"{art.upstream_ref} is not served upstream"}
    if art.pin is None:
        return {**base, "status": "digest-pin-required", "observedDigest": served.digest,
                "recommendedAction": f"review, then set CI.json artifacts[{art.id}].digest to {served.digest}"}
    if served.digest != art.pin:
        return {**base, "status": "digest-mismatch", "observedDigest": served.digest,
                "reason": f"the upstream serves {served.digest} for {art.upstream_image}, not the pin {art.pin}; "
                          "only the manifest digest the registry serves counts (a local image ID is never a pin)"}
    labels = dict(served.labels)
    wrong = {k: labels.get(k) for k, v in art.expected_labels.items() if labels.get(k) != v}
    if wrong:
        return {**base, "status": "label-mismatch", "reason": f"OCI labels differ: {wrong}"}
    if dry_run:
        return {**base, "status": "would-mirror", "digest": art.pin}
    _, tag = art.repository_and_tag
    source_ref = art.upstream_ref.rsplit(":", 1)[0] + f"@{art.pin}"
    image_mirror(catalog, reuse=registry).mirror_image(source_ref, art.mirror, art.pin, tag=tag)
    evidence = registry.artifact(f"{art.mirror}@{art.pin}", refresh=True)
    return {**base, "status": "mirrored", "digest": evidence.digest, "labels": dict(evidence.labels)}


@attrs.frozen
class UpstreamState:
    """What a plan reads for one upstream-image service."""

    mirrored: bool  # <mirror>@<pin> exists in our registry
    upstream_reachable: bool | None  # read only when the mirror is missing


def observe_upstream(art: UpstreamArtifact, registry: ArtifactReader) -> UpstreamState:
    if art.mirror_image and registry.artifact(art.mirror_image).exists:
        return UpstreamState(mirrored=True, upstream_reachable=None)
    return UpstreamState(mirrored=False, upstream_reachable=registry.health(art.upstream_registry))
