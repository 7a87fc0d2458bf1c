"""The registry provider: an OCI distribution (v2) registry read over plain HTTP(S).

No Docker daemon is involved. One artifact costs at most one manifest request and one config blob
request (an image index costs one more manifest request to reach the platform manifest); layers
are never downloaded. A batch (`artifacts`) shares one keep-alive session, with a bounded number of
reads in flight. Every answer is a value: an unreachable registry is
`ArtifactState(reachable=False, error=...)`, never an exception; the error names the URL and the
timeout that expired, and once one read of a batch finds the registry down the rest do not wait
for it again. Requests wait at most `timeout` (connect, read), config.json `registry.timeouts`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar
from urllib.parse import urlsplit

import attrs
import requests
from requests.adapters import HTTPAdapter

from udeploy.engine.load.catalog import Catalog, Host
from udeploy.engine.load.timeouts import DEFAULTS, Timeout, TimeoutKind
from udeploy.engine.provider_api import (
    ArtifactState,
    ProviderUnreachable,
    Published,
    PublishRequest,
    StepKind,
    StepRequest,
    StepResult,
)
from udeploy.providers.net_cause import network_cause
from udeploy.providers.oci import ACCEPT, INDEX_TYPES, ImageRef, base_url, sha256_digest
from udeploy.providers.registry_copy import copy_image

PLATFORM = ("linux", "amd64")


def _as_timeout(value: Timeout | float) -> Timeout:
    return value if isinstance(value, Timeout) else Timeout(connect=float(value), read=float(value))


@attrs.frozen
class _Response:
    status: int
    headers: Mapping[str, str]
    body: bytes


class _HttpError(Exception):
    """The registry answered, with a status the caller did not expect."""

    def __init__(self, status: int, url: str, body: bytes) -> None:
        super().__init__(f"HTTP {status} from {url}: {body[:200].decode(errors='replace').strip()}")
        self.status = status


class _BatchSession(requests.Session):
    """A session that reads the environment's proxy and CA bundle settings once per registry, not
    once per request: requests walks `os.environ` twice per request for them (`get_environ_proxies`),
    a fifth of a 1000-image batch's CPU (issue 11). They depend only on the URL's scheme and host,
    and the environment does not change during a batch; the settings are the ones requests computes."""

    def __init__(self) -> None:
        super().__init__()
        self._settings: dict[str, dict[str, Any]] = {}

    def merge_environment_settings(self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any) -> Any:
        if proxies or stream is not None or verify is not None or cert is not None:  # not how a batch asks
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        if origin not in self._settings:
            self._settings[origin] = super().merge_environment_settings(url, {}, None, None, None)
        settings = self._settings[origin]
        return {**settings, "proxies": dict(settings["proxies"])}


@attrs.define
class RegistryProvider:
    """Reads manifests, config labels, the catalog and `/v2/` of one default registry (the engine's
    `ArtifactReader`); publishes images into it through the CI builder (`ImagePublisher`) and copies
    images between registries by digest (`ImageMirror`)."""

    registry: str  # host[:port] (or a URL) of the default registry, e.g. "127.0.0.1:5000"
    timeout: Timeout = attrs.field(default=DEFAULTS[TimeoutKind.REGISTRY], converter=_as_timeout)
    builder: Host | None = None  # CI.json builder.host: the Docker engine `publish` builds on (C1)
    _cache: dict[str, ArtifactState] = attrs.field(factory=dict, init=False)

    name: ClassVar[str] = "registry"

    @classmethod
    def build(cls, host: Host | None, catalog: Catalog) -> RegistryProvider:
        settings = host.settings if host else {}
        builder = catalog.hosts.get(catalog.builder_host) if catalog.builder_host else None
        return cls(registry=str(settings.get("registry", catalog.registry)), builder=builder,
                   timeout=catalog.registry_timeouts.get(TimeoutKind.REGISTRY))

    # -- readers

    def artifact(self, image: str, *, refresh: bool = False) -> ArtifactState:
        """The image's digest and config labels; absent is `exists=False`, down is `reachable=False`."""
        with requests.Session() as session:
            return self._artifact(session, image, refresh)

    def artifacts(self, images: Sequence[str], *, parallelism: int = 10) -> dict[str, ArtifactState]:
        """`artifact` of every image (what this reader already read is not read again), keyed by image."""
        wanted = list(dict.fromkeys(images))
        workers = max(1, min(parallelism, len(wanted)))
        down: list[ArtifactState] = []  # the first read that found the registry down
        lock = threading.Lock()

        def read(image: str) -> ArtifactState:
            if down:  # do not wait a timeout per image for a registry already known to be down
                return attrs.evolve(down[0], image=image, digest=None, labels={})
            state = self._artifact(session, image, False)
            if not state.reachable:
                with lock:
                    down.append(state)
            return state

        with _BatchSession() as session, ThreadPoolExecutor(max_workers=workers) as pool:
            # one connection pool for the batch, as large as the reads it runs at once
            adapter = HTTPAdapter(pool_connections=workers, pool_maxsize=workers)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            states = list(pool.map(read, wanted))
        return dict(zip(wanted, states, strict=True))

    def head(self, image: str) -> ArtifactState:
        """Existence and digest only: one HEAD of the manifest (`Docker-Content-Digest`), no labels."""
        ref = ImageRef.parse(image, self.registry)
        url = f"{base_url(ref.registry)}/v2/{ref.repository}/manifests/{ref.reference}"
        try:
            response = self._request("HEAD", url, accept=ACCEPT)
        except _HttpError as exc:
            return ArtifactState(image=image, exists=False, error=None if exc.status == 404 else str(exc))
        except OSError as exc:
            return ArtifactState(image=image, exists=False, reachable=False, error=self._unreachable(exc, url))
        return ArtifactState(image=image, exists=True, digest=response.headers.get("Docker-Content-Digest"))

    def health(self, registry: str | None = None) -> bool:
        """GET /v2/ of `registry` (default: this provider's) answers (200, or 401 from a registry
        that wants a token)."""
        try:
            self._request("GET", f"{base_url(registry or self.registry)}/v2/")
        except _HttpError as exc:
            return exc.status == 401
        except OSError:
            return False
        return True

    def catalog(self) -> list[str]:
        """Repository names (GET /v2/_catalog, following `Link` pagination)."""
        root = base_url(self.registry)
        url: str | None = f"{root}/v2/_catalog?n=1000"
        names: list[str] = []
        while url:
            try:
                response = self._request("GET", url)
            except (OSError, _HttpError) as exc:
                cause = self._unreachable(exc, url) if isinstance(exc, OSError) else str(exc)
                raise ProviderUnreachable(f"registry catalog: {cause}", path=url) from exc
            names += json.loads(response.body).get("repositories") or []
            url = _next_link(root, response.headers.get("Link"))
        return names

    # -- steps

    def _verify_artifact(self, request: StepRequest) -> StepResult:
        """verify-artifact: the image exists and carries every expected label."""
        image = str(request.params["image"])
        expected: Mapping[str, str] = request.params.get("expectedLabels") or {}
        state = self.artifact(image)
        facts: dict[str, Any] = {"image": image, "exists": state.exists, "digest": state.digest,
                                 "reachable": state.reachable, "labels": dict(state.labels)}
        if not state.reachable:
            return StepResult(False, f"registry unreachable for {image}: {state.error}", facts)
        if not state.exists:
            detail = f" ({state.error})" if state.error else ""
            return StepResult(False, f"artifact {image} does not exist in the registry{detail}", facts)
        mismatches = [_label_mismatch(key, want, state.labels.get(key)) for key, want in expected.items()
                      if state.labels.get(key) != want]
        facts["mismatches"] = mismatches
        if mismatches:
            return StepResult(False, f"artifact {image} labels do not match: " + "; ".join(mismatches), facts)
        return StepResult(True, f"artifact {image} exists ({state.digest}) with the expected labels", facts)

    def execute(self, request: StepRequest) -> StepResult:
        if request.kind is not StepKind.VERIFY_ARTIFACT:
            return StepResult(False, f"the registry provider does not execute {request.kind.value!r} steps",
                              {"kind": request.kind.value})
        return self._verify_artifact(request)

    # -- writers (CI only: CD never publishes or mirrors, C4)

    def publish(self, request: PublishRequest) -> Published:
        """Build `request.image` on the CI builder from its tar context and push it here."""
        if self.builder is None:
            raise ProviderUnreachable(f"no CI builder host to publish {request.image} with", path=request.image)
        # The builder's Docker client (docker, paramiko: ~0.1 s) is for CI publishing only, not a plan's reads.
        from udeploy.providers.image_builder import ImageBuilder

        builder = ImageBuilder.for_host(self.builder)
        built = builder.build(request.context, dockerfile=request.dockerfile, image=request.image,
                              labels=request.labels)
        digest = builder.push(request.image)
        return Published(image=request.image, image_id=built.image_id, digest=digest)

    def mirror_image(self, source: str, destination_repository: str, digest: str, *,
                     tag: str | None = None) -> str:
        """Copy `source` to `destination_repository` by manifest digest (P10); see `registry_copy`."""
        return copy_image(source, destination_repository, digest, tag=tag)

    # -- internals

    def _artifact(self, session: requests.Session, image: str, refresh: bool) -> ArtifactState:
        if not refresh and image in self._cache:
            return self._cache[image]
        state = self._read_artifact(session, image)
        if state.reachable:
            self._cache[image] = state
        return state

    def _read_artifact(self, session: requests.Session, image: str) -> ArtifactState:
        ref = ImageRef.parse(image, self.registry)
        root = f"{base_url(ref.registry)}/v2/{ref.repository}"
        try:
            manifest = self._request("GET", f"{root}/manifests/{ref.reference}", accept=ACCEPT, session=session)
        except _HttpError as exc:
            if exc.status == 404:
                return ArtifactState(image=image, exists=False)
            return ArtifactState(image=image, exists=False, error=str(exc))
        except OSError as exc:
            return ArtifactState(image=image, exists=False, reachable=False, error=self._unreachable(exc, root))
        digest = manifest.headers.get("Docker-Content-Digest") or sha256_digest(manifest.body)
        try:
            labels = self._labels(session, root, manifest)
        except _HttpError as exc:
            return ArtifactState(image=image, exists=True, digest=digest, error=str(exc))
        except (OSError, ValueError, KeyError) as exc:
            return ArtifactState(image=image, exists=True, digest=digest, error=_reason(exc, root))
        return ArtifactState(image=image, exists=True, digest=digest, labels=labels)

    def _labels(self, session: requests.Session, root: str, manifest: _Response) -> dict[str, str]:
        doc = json.loads(manifest.body)
        media = doc.get("mediaType") or manifest.headers.get("Content-Type", "")
        if media in INDEX_TYPES or "manifests" in doc:
            child = _pick_platform(doc["manifests"])
            doc = json.loads(self._request("GET", f"{root}/manifests/{child}", accept=ACCEPT, session=session).body)
        config_digest = doc["config"]["digest"]
        config = json.loads(self._request("GET", f"{root}/blobs/{config_digest}", session=session).body)
        return dict((config.get("config") or {}).get("Labels") or {})

    def _request(self, method: str, url: str, *, accept: str | None = None,
                 session: requests.Session | None = None) -> _Response:
        """A 2xx answer; `_HttpError` for another status; `OSError` (requests' errors are) when the
        registry does not answer. Without a `session`, one connection for this request."""
        send = session.request if session is not None else requests.request
        # identity: a manifest's digest is over the bytes the registry stores, never a re-encoding
        headers = {"Accept-Encoding": "identity", **({"Accept": accept} if accept else {})}
        response = send(method, url, headers=headers, timeout=(self.timeout.connect, self.timeout.read))
        if not 200 <= response.status_code < 300:
            raise _HttpError(response.status_code, url, response.content or b"")
        return _Response(response.status_code, dict(response.headers.items()), response.content)

    def _unreachable(self, exc: BaseException, where: str) -> str:
        """Why `where` did not answer, naming the timeout that expired."""
        if isinstance(exc, requests.exceptions.RequestException):
            return f"{where}: {network_cause(exc, self.timeout.connect, self.timeout.read)}"
        return _reason(exc, where)


def _pick_platform(manifests: list[Mapping[str, Any]]) -> str:
    for entry in manifests:
        platform = entry.get("platform") or {}
        if (platform.get("os"), platform.get("architecture")) == PLATFORM:
            return str(entry["digest"])
    if not manifests:
        raise ValueError("image index lists no manifests")
    return str(manifests[0]["digest"])


def _label_mismatch(key: str, want: str, got: str | None) -> str:
    return f"{key}: expected {want!r}, found {'no label' if got is None else repr(got)}"


def _next_link(root: str, link: str | None) -> str | None:
    if not link or 'rel="next"' not in link:
        return None
    target = link.split(";")[0].strip().strip("<>")
    return target if target.startswith("http") else root + target


def _reason(exc: BaseException, where: str) -> str:
    reason = getattr(exc, "reason", None) or exc
    return f"{where}: {reason}"

