"""Readers of one Docker engine's state: nothing here changes the engine.

Observation lists this provider's containers once (one `GET /containers/json` with a label filter)
and joins them to the requested services by container name; only the containers found are
inspected (their env is not in the list), and each distinct image once (its V1 labels).
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import docker
import docker.errors
import requests

from udeploy.engine.provider_api import HealthState, Presence, ProviderUnreachable, RuntimeState

SERVICE_LABEL = "io.udeploy.docker-run.service"  # on every container this provider runs: the service id
IDENTITY_PREFIXES = ("unidesk.ai/", "org.opencontainers.image.")  # V1 labels, and an upstream image's (P10)
STAMP_PREFIX = "UNIDESK_DEPLOY_"

T = TypeVar("T")


@attrs.define
class Engine:
    """One Docker engine, reached through its unix socket; the client is opened on first use."""

    host_id: str
    socket: str
    _client: docker.DockerClient | None = attrs.field(default=None, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    def client(self) -> docker.DockerClient:
        with self._lock:
            if self._client is None:
                self._client = self.call("connect", lambda: docker.DockerClient(base_url=self.socket, timeout=120))
            return self._client

    def call(self, what: str, fn: Callable[[], T]) -> T:
        """One engine call; not reaching the engine is `ProviderUnreachable` naming the host."""
        try:
            return fn()
        except docker.errors.APIError:
            raise  # the engine answered: the caller decides
        except (docker.errors.DockerException, requests.exceptions.ConnectionError, OSError) as exc:
            raise ProviderUnreachable(f"{what} on {self.host_id} ({self.socket}): {exc}", path=self.host_id) from exc

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None


def labelled_containers(engine: Engine) -> dict[str, Mapping[str, Any]]:
    """Container name -> list summary, for every container (running or not) that carries our label."""
    api = engine.client().api
    found = engine.call("list containers", lambda: api.containers(all=True, filters={"label": SERVICE_LABEL}))
    return {str(name).lstrip("/"): c for c in found for name in c.get("Names") or []}


def inspect_container(engine: Engine, ref: str) -> Mapping[str, Any] | None:
    api = engine.client().api
    try:
        return engine.call(f"inspect container {ref}", lambda: api.inspect_container(ref))  # type: ignore[no-any-return]
    except docker.errors.NotFound:
        return None


def inspect_image(engine: Engine, ref: str) -> Mapping[str, Any] | None:
    api = engine.client().api
    try:
        return engine.call(f"inspect image {ref}", lambda: api.inspect_image(ref))  # type: ignore[no-any-return]
    except docker.errors.NotFound:
        return None


def identity_labels(image: Mapping[str, Any] | None) -> dict[str, str]:
    labels = ((image or {}).get("Config") or {}).get("Labels") or {}
    return {k: v for k, v in labels.items() if k.startswith(IDENTITY_PREFIXES)}


def runtime_state(where: str, container: Mapping[str, Any] | None, image: Mapping[str, Any] | None) -> RuntimeState:
    """One inspected container (None: absent) and its image, as the engine's `RuntimeState`."""
    if container is None:
        return RuntimeState(target=where, presence=Presence.ABSENT)
    config, state = container.get("Config") or {}, container.get("State") or {}
    running = state.get("Status") == "running"
    detail = None if running else (f"container {state.get('Status')}, exit code {state.get('ExitCode')}"
                                   + (f": {state['Error']}" if state.get("Error") else ""))
    return RuntimeState(target=where, presence=Presence.RUNNING if running else Presence.NOT_READY,
                        image=config.get("Image"), image_id=container.get("Image"),
                        labels=identity_labels(image), deploy_env=stamp_env(config.get("Env") or []),
                        detail=detail, identity=container.get("Id"))


def stamp_env(env: Sequence[str]) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in env if "=" in item)
    return {k: v for k, v in pairs if k.startswith(STAMP_PREFIX)}


def read_health(port: int, path: str, timeout: float = 3.0) -> HealthState:
    """GET `http://127.0.0.1:<port><path>` from this machine: the engine is local and the container
    host-networked, so its health port is this machine's loopback."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as answer:
            status, body = answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read() or b""
    except (OSError, ValueError) as exc:
        return HealthState(reachable=False, error=str(getattr(exc, "reason", exc)))
    return parse_health(status, body)


def parse_health(status: int, body: bytes) -> HealthState:
    """`{"deploy": {"repo", "commit", "requestedCommit"}}` into the engine's `HealthState`."""
    try:
        doc = json.loads(body)
    except ValueError:
        return HealthState(reachable=True, status=status, error=f"health body is not JSON: {body[:80]!r}")
    deploy = doc.get("deploy") if isinstance(doc, dict) else None
    if not isinstance(deploy, dict):
        return HealthState(reachable=True, status=status, error="health body has no deploy object")
    return HealthState(reachable=True, status=status, deploy_repo=deploy.get("repo") or None,
                       deploy_commit=deploy.get("commit") or None,
                       deploy_requested_commit=deploy.get("requestedCommit") or None,
                       error=None if 200 <= status < 300 else f"health answered HTTP {status}")
