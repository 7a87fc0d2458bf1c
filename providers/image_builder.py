"""The CI producer's hands (C1): build a service image from a `git archive` build context on the
CI engine, with the V1 labels, and push it to the registry. CD never calls this (C4)."""

from __future__ import annotations

import io
from collections.abc import Mapping

import attrs
import docker
import docker.errors

from udeploy.engine.errors import UdeployError
from udeploy.engine.load.catalog import Host
from udeploy.engine.provider_api import ProviderUnreachable


@attrs.frozen
class Built:
    image: str
    image_id: str
    log: tuple[str, ...]


@attrs.define
class ImageBuilder:
    """One Docker engine used as the CI builder (config: CI.json `builder.host`)."""

    host_id: str
    base_url: str

    @classmethod
    def for_host(cls, host: Host) -> ImageBuilder:
        docker_settings = host.settings.get("docker", {})
        if "socket" not in docker_settings:
            raise ProviderUnreachable(f"CI builder host {host.id} needs a docker.socket", path=host.id)
        return cls(host_id=host.id, base_url=str(docker_settings["socket"]))

    def _client(self) -> docker.DockerClient:
        try:
            client = docker.DockerClient(base_url=self.base_url, timeout=120)
            client.ping()
        except docker.errors.DockerException as exc:
            raise ProviderUnreachable(f"CI builder {self.host_id} ({self.base_url}) does not answer: {exc}",
                                      path=self.host_id) from exc
        return client

    def build(self, context_tar: bytes, *, dockerfile: str, image: str, labels: Mapping[str, str]) -> Built:
        """`docker build` of a tar context (never a working tree), no network, labels stamped."""
        client = self._client()
        try:
            built, stream = client.images.build(fileobj=io.BytesIO(context_tar), custom_context=True,
                                                dockerfile=dockerfile, tag=image, labels=dict(labels), rm=True,
                                                forcerm=True, network_mode="none", pull=False)
        except docker.errors.BuildError as exc:
            lines = [str(c.get("stream") or c.get("error") or "").rstrip() for c in exc.build_log]
            raise BuildFailed(f"docker build of {image} failed: {exc.msg}", path=image,
                              details={"log": [x for x in lines if x][-20:]}) from exc
        finally:
            client.close()
        log = tuple(str(c.get("stream", "")).rstrip() for c in stream if c.get("stream", "").strip())
        return Built(image=image, image_id=str(built.id), log=log)

    def push(self, image: str) -> str:
        """Push `image`; returns the registry digest the push reported."""
        client = self._client()
        try:
            repository, tag = image.rsplit(":", 1)
            digest = None
            for event in client.images.push(repository, tag=tag, stream=True, decode=True):
                if "error" in event:
                    raise ProviderUnreachable(f"push of {image} failed: {event['error']}", path=image)
                aux = event.get("aux") or {}
                digest = aux.get("Digest", digest)
            if not digest:
                raise ProviderUnreachable(f"push of {image} reported no digest", path=image)
            return str(digest)
        finally:
            client.close()


class BuildFailed(UdeployError, RuntimeError):
    """The Dockerfile did not build: the commit's problem, not the builder's."""

    code = "build-failed"
