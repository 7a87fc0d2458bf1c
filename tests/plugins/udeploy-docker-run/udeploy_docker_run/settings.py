"""The two pieces of config.json this provider reads, checked when they are read.

- The host (`hosts.<id>`): `docker.socket`, the engine's unix socket.
- The service's target section (`target.settings`): the container name, the health port, extra
  environment and the network. A bad value is a `UsageError` naming its config.json path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs

from udeploy.engine.errors import UsageError
from udeploy.engine.load.catalog import Host

CONTAINER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$")  # what the Docker engine accepts
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
STAMP_PREFIX = "UNIDESK_DEPLOY_"  # the V2 stamp is udeploy's; a target must not set it
KNOWN = frozenset({"container", "healthPort", "env", "network"})


@attrs.frozen
class RunSettings:
    """One service's `target.settings`."""

    container: str
    health_port: int
    env: Mapping[str, str] = attrs.field(factory=dict)
    network: str = "host"  # health is read on loopback, so the container shares the host's network


def engine_socket(host: Host) -> str:
    """The host's `docker.socket`; a host without one cannot be served."""
    docker = host.settings.get("docker")
    socket = docker.get("socket") if isinstance(docker, Mapping) else None
    if not isinstance(socket, str) or not socket.startswith("unix://"):
        raise UsageError(f"host {host.id} has no docker.socket (unix://...) for the docker-run provider",
                         path=f"hosts.{host.id}.docker.socket")
    return socket


def run_settings(section: Mapping[str, Any], path: str) -> RunSettings:
    """`section` is config.json `target.settings`, found at `path`."""
    if not isinstance(section, Mapping):
        raise UsageError(f"{path} must be an object", path=path)
    unknown = sorted(set(section) - KNOWN)
    if unknown:
        raise UsageError(f"{path} has settings the docker-run provider does not know: {', '.join(unknown)}",
                         path=f"{path}.{unknown[0]}")
    container = section.get("container")
    if not isinstance(container, str) or not CONTAINER_NAME.match(container):
        raise UsageError(f"{path}.container must be a Docker container name, got {container!r}",
                         path=f"{path}.container")
    port = section.get("healthPort")
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise UsageError(f"{path}.healthPort must be a port number (1-65535), got {port!r}",
                         path=f"{path}.healthPort")
    env = section.get("env", {})
    if not isinstance(env, Mapping):
        raise UsageError(f"{path}.env must be an object of strings", path=f"{path}.env")
    for key, value in env.items():
        if not ENV_NAME.match(str(key)) or not isinstance(value, str) or "\n" in value:
            raise UsageError(f"{path}.env.{key} must be an environment name with a one-line string value",
                             path=f"{path}.env.{key}")
        if str(key).startswith(STAMP_PREFIX):
            raise UsageError(f"{path}.env.{key}: {STAMP_PREFIX}* is the deploy stamp udeploy writes (V2)",
                             path=f"{path}.env.{key}")
    network = section.get("network", "host")
    if not isinstance(network, str) or not network:
        raise UsageError(f"{path}.network must be a Docker network name", path=f"{path}.network")
    return RunSettings(container=container, health_port=port, env=dict(env), network=network)
