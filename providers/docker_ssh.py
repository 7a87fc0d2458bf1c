"""The docker SDK over SSH with an explicit key and known_hosts (paramiko, `docker system dial-stdio`).

The SDK's own ssh:// transports cannot be given a key: `use_ssh_client=True` runs the `ssh` binary
(its config decides the key), the paramiko one reads only ~/.ssh/config. This adapter is the SDK's
paramiko transport with the key and host keys from config.json.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any

import docker
import docker.errors
import paramiko
from docker import DockerClient
from docker.transport import SSHHTTPAdapter

from udeploy.engine.load.timeouts import DEFAULTS, Timeout, TimeoutKind
from udeploy.providers.net_cause import causes, docker_unreachable, ssh_unreachable
from udeploy.providers.ssh_connect import SshConnectFailed, connect_client


def pin_host_keys(client: paramiko.SSHClient, known_hosts: str | None) -> None:
    """Unknown host keys are refused: the configured known_hosts (else the user's) must list the host."""
    if known_hosts:
        client.load_host_keys(known_hosts)
    else:
        client.load_system_host_keys()
    client.set_missing_host_key_policy(paramiko.RejectPolicy())


class _KeyedSSHAdapter(SSHHTTPAdapter):  # type: ignore[misc]
    """The SDK's paramiko transport (`docker system dial-stdio` on the host), given our key."""

    def __init__(self, base_url: str, key_file: str | None, known_hosts: str | None, timeout: float,
                 ssh_timeout: Timeout) -> None:
        self._key_file, self._known_hosts, self._ssh_timeout = key_file, known_hosts, ssh_timeout
        super().__init__(base_url, timeout=timeout, max_pool_size=4, shell_out=False)

    def _create_paramiko_client(self, base_url: str) -> None:
        url = urllib.parse.urlparse(base_url)
        self.ssh_client = paramiko.SSHClient()
        self.ssh_params = {"hostname": url.hostname, "port": url.port or 22, "username": url.username,
                           "look_for_keys": self._key_file is None, "allow_agent": False}
        if self._key_file:
            self.ssh_params["key_filename"] = self._key_file
        pin_host_keys(self.ssh_client, self._known_hosts)

    def _connect(self) -> None:
        """Bounded waits and the real cause (`ssh_connect`), not paramiko's single timeout."""
        params = dict(self.ssh_params)
        host, port = str(params.pop("hostname")), int(params.pop("port") or 22)
        connect_client(self.ssh_client, host, port, self._ssh_timeout, **params)

    def get_connection(self, url: str, proxies: Any = None) -> Any:
        # The SDK keys its connection pools by the full request URL, so every distinct endpoint holds
        # one more SSH session open on the transport, until sshd's MaxSessions (10) refuses the next
        # ("open failed: Connect failed"). One pool for the whole engine keeps it to max_pool_size.
        # The pool also blocks instead of opening connections beyond its size, for the same reason.
        pool = super().get_connection("http+docker://ssh", proxies)
        pool.block = True
        return pool


def _ssh_failed(exc: BaseException) -> bool:
    """Whether the SSH connection itself failed (rather than the engine behind it)."""
    return any(isinstance(e, SshConnectFailed | paramiko.SSHException) for e in causes(exc))


def ssh_docker_client(url: str, key_file: str | None, known_hosts: str | None, host_id: str, *,
                      ssh_timeout: Timeout = DEFAULTS[TimeoutKind.SSH],
                      docker_timeout: Timeout = DEFAULTS[TimeoutKind.DOCKER]) -> DockerClient:
    began = time.monotonic()
    try:
        # An explicit version keeps the constructor from connecting; the adapter is swapped in, then
        # the API version is negotiated over it (as `version="auto"` would have done).
        api = docker.APIClient(base_url=url, use_ssh_client=True, version="1.41", timeout=docker_timeout.read)
        adapter = _KeyedSSHAdapter(url, key_file, known_hosts, timeout=docker_timeout.read, ssh_timeout=ssh_timeout)
        api._custom_adapter = adapter
        api.mount("http+docker://ssh", adapter)
        api._version = api._retrieve_server_version()
    except (OSError, SshConnectFailed, paramiko.SSHException, docker.errors.DockerException) as exc:
        if isinstance(exc, docker.errors.DockerException) and not _ssh_failed(exc):
            raise docker_unreachable(host_id, url, exc, began, docker_timeout) from exc  # the engine behind sshd
        ssh_cause = next((e for e in causes(exc) if isinstance(e, SshConnectFailed)), exc)
        raise ssh_unreachable(host_id, url, str(ssh_cause), began, ssh_timeout) from exc
    client = DockerClient.__new__(DockerClient)
    client.api = api
    return client

