"""The registry provider against the lab's real OCI registry (127.0.0.1:5000).

Proves C3/V1 (the artifact exists, with its digest and V1 labels, read without a Docker daemon and
without layers), that an absent tag is `exists=False`, and that a registry nobody answers is
`reachable=False` (a closed port: the shared registry is never stopped), never an exception.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest

from tests.providers.support import Images, Source, free_port, v1_labels
from udeploy.engine.load.catalog import Catalog
from udeploy.engine.provider_api import ProviderUnreachable, StepRequest
from udeploy.providers import registry as registry_module
from udeploy.providers.oci import DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST
from udeploy.providers.registry import RegistryProvider


@pytest.fixture()
def provider(catalog: Catalog, require: Callable[..., None]) -> RegistryProvider:
    require("registry")
    return RegistryProvider.build(None, catalog)


@pytest.fixture()
def requests_made(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str]]:
    """Every HTTP request the provider makes, as (method, url)."""
    made: list[tuple[str, str]] = []
    original = RegistryProvider._request

    def counting(self: RegistryProvider, method: str, url: str, **kwargs: Any) -> Any:
        made.append((method, url))
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(registry_module.RegistryProvider, "_request", counting)
    return made


def _verify(image: str, labels: dict[str, str]) -> StepRequest:
    return StepRequest("svc/verify-artifact", "verify-artifact", "svc",
                       {"image": image, "expectedLabels": labels})


def test_C3_V1_artifact_digest_and_labels_from_manifest_and_config_only(
        provider: RegistryProvider, images: Images, source: Source, requests_made: list[tuple[str, str]]) -> None:
    """C3, V1: digest from Docker-Content-Digest, labels from the config blob; no layer is fetched."""
    commit = source.commits["new"]
    state = provider.artifact(images.ref(commit))
    assert state.exists and state.reachable and state.error is None
    assert state.digest == images.digests[commit]
    assert {k: v for k, v in state.labels.items() if k.startswith("unidesk.ai/")} == v1_labels(commit)
    assert len(requests_made) == 2, requests_made
    assert "/manifests/" in requests_made[0][1] and "/blobs/" in requests_made[1][1]
    # The config blob is the only blob read: it is the manifest's config, not a layer.
    assert provider.artifact(images.ref(commit)) == state
    assert len(requests_made) == 2, "a second read of the same image is served from the instance cache"


def test_C3_head_gives_the_digest_in_one_request(
        provider: RegistryProvider, images: Images, source: Source, requests_made: list[tuple[str, str]]) -> None:
    commit = source.commits["old"]
    state = provider.head(images.ref(commit))
    assert state.exists and state.digest == images.digests[commit]
    assert requests_made == [("HEAD", f"http://{images.registry}/v2/{images.repository}/manifests/{commit}")]


def test_C3_absent_tag_and_absent_repository_are_exists_false(provider: RegistryProvider, images: Images) -> None:
    for image in (f"{images.registry}/{images.repository}:{'0' * 40}",
                  f"{images.registry}/udtest-no-such-repo/svc:latest"):
        state = provider.artifact(image)
        assert state.reachable and not state.exists and state.digest is None, state
        result = provider.execute(_verify(image, {}))
        assert not result.ok and "does not exist" in result.message


def test_C3_closed_port_is_unreachable_never_an_exception() -> None:
    """A registry that does not answer is a value (reachable=False, error text), not a traceback."""
    dead = f"127.0.0.1:{free_port()}"
    provider = RegistryProvider(registry=dead, timeout=3)
    state = provider.artifact(f"{dead}/unidesk/backend-core:{'a' * 40}")
    assert not state.reachable and not state.exists
    assert state.error and "refused" in state.error.lower()
    assert provider.health() is False
    result = provider.execute(_verify(state.image, {}))
    assert not result.ok and "unreachable" in result.message
    with pytest.raises(ProviderUnreachable) as raised:
        provider.catalog()
    assert raised.value.path and dead in raised.value.path


def test_C3_V1_verify_artifact_names_each_label_mismatch(
        provider: RegistryProvider, images: Images, source: Source) -> None:
    commit = source.commits["new"]
    image = images.ref(commit)
    ok = provider.execute(_verify(image, v1_labels(commit)))
    assert ok.ok, ok.message
    assert provider.execute(_verify(image, v1_labels(commit))).ok
    wrong = {**v1_labels(commit), "unidesk.ai/source-commit": source.commits["old"],
             "unidesk.ai/service-id": "other", "unidesk.ai/not-there": "x"}
    result = provider.execute(_verify(image, wrong))
    assert not result.ok
    for key in ("unidesk.ai/source-commit", "unidesk.ai/service-id", "unidesk.ai/not-there"):
        assert key in result.message
    assert "unidesk.ai/source-repo" not in result.message
    assert len(result.facts["mismatches"]) == 3


def test_C3_oci_index_and_oci_manifest_are_read(provider: RegistryProvider, images: Images, source: Source) -> None:
    """An OCI image manifest and an OCI index (pointing at the platform manifest) both give labels."""
    commit = source.commits["new"]
    root = f"http://{images.registry}/v2/{images.repository}"
    manifest = json.loads(_get(f"{root}/manifests/{commit}", DOCKER_MANIFEST))
    oci = {"schemaVersion": 2, "mediaType": OCI_MANIFEST,
           "config": {**manifest["config"], "mediaType": "application/vnd.oci.image.config.v1+json"},
           "layers": [{**layer, "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip"}
                      for layer in manifest["layers"]]}
    oci_digest = _put(f"{root}/manifests/{commit}-oci", OCI_MANIFEST, oci)
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
        {"mediaType": OCI_MANIFEST, "digest": oci_digest, "size": len(_canonical(oci)),
         "platform": {"os": "linux", "architecture": "amd64"}}]}
    index_digest = _put(f"{root}/manifests/{commit}-index", OCI_INDEX, index)

    as_oci = provider.artifact(f"{images.registry}/{images.repository}:{commit}-oci")
    as_index = provider.artifact(f"{images.registry}/{images.repository}:{commit}-index")
    by_digest = provider.artifact(f"{images.registry}/{images.repository}@{index_digest}")
    assert as_oci.digest == oci_digest and as_index.digest == index_digest == by_digest.digest
    for state in (as_oci, as_index, by_digest):
        assert state.exists and state.labels.get("unidesk.ai/source-commit") == commit, state
    for digest in (index_digest, oci_digest):
        urllib.request.urlopen(urllib.request.Request(f"{root}/manifests/{digest}", method="DELETE"), timeout=5)


def test_registry_health_and_catalog(provider: RegistryProvider, images: Images) -> None:
    assert provider.health() is True
    assert images.repository in provider.catalog()


def test_C3_batched_artifacts_read_what_single_reads_read_in_one_session(
        provider: RegistryProvider, images: Images, source: Source, monkeypatch: pytest.MonkeyPatch) -> None:
    """C3: `artifacts` answers each image as `artifact` does (present with digest and labels, absent),
    keyed by image, reading each image once, every request through one keep-alive session."""
    old, new, missing = (images.ref(c) for c in (source.commits["old"], source.commits["new"], "0" * 40))
    alone = {image: RegistryProvider(registry=provider.registry).artifact(image) for image in (old, new, missing)}
    sessions: list[Any] = []
    original = RegistryProvider._request

    def counting(self: RegistryProvider, method: str, url: str, **kwargs: Any) -> Any:
        sessions.append(kwargs.get("session"))
        return original(self, method, url, **kwargs)

    monkeypatch.setattr(registry_module.RegistryProvider, "_request", counting)
    batch = provider.artifacts([old, new, missing, old], parallelism=2)
    assert batch == alone and list(batch) == [old, new, missing]
    assert batch[old].labels["unidesk.ai/source-commit"] == source.commits["old"]
    assert not batch[missing].exists and batch[missing].reachable
    assert len(sessions) == 5, "manifest + config of each present image, the manifest of the absent one"
    assert len({id(s) for s in sessions}) == 1 and sessions[0] is not None


def _canonical(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":")).encode()


def _get(url: str, accept: str) -> bytes:
    with urllib.request.urlopen(urllib.request.Request(url, headers={"Accept": accept}), timeout=5) as r:
        return bytes(r.read())


def _put(url: str, media_type: str, doc: dict[str, Any]) -> str:
    request = urllib.request.Request(url, data=_canonical(doc), method="PUT", headers={"Content-Type": media_type})
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(response.headers["Docker-Content-Digest"])
