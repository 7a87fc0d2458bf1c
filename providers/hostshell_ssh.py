"""A Compose host reached over SSH (`docker.ssh` in config.json), with an explicit key and
known_hosts: fabric for commands, SFTP for files, and the docker SDK over paramiko.

The lab's sshd takes ~0.2 s per shell session, SFTP calls a millisecond, so files go through SFTP.
sshd refuses more than MaxSessions (default 10) channels on one connection, so concurrent commands
share a bounded number of session channels.
"""

from __future__ import annotations

import io
import posixpath
import secrets
import threading
from collections.abc import Sequence
from typing import Any

import attrs
import paramiko
from docker import DockerClient

from udeploy.engine.provider_api import ProviderUnreachable
from udeploy.providers.docker_ssh import pin_host_keys, ssh_docker_client
from udeploy.providers.hostshell import COMMAND_TIMEOUT, HTTP_GET_SCRIPT, HttpAnswer, ShellResult, script_with_args

SSH_SESSIONS = 6  # below sshd's default MaxSessions of 10; SFTP takes one more


@attrs.define
class SshShell:
    """A host reached over SSH with an explicit key and known_hosts (fabric for commands and files)."""

    host_id: str
    host: str
    port: int
    user: str
    key_file: str | None
    known_hosts: str | None
    _connection: Any = attrs.field(default=None, init=False)
    _sftp: Any = attrs.field(default=None, init=False)
    _client: DockerClient | None = attrs.field(default=None, init=False)
    # Steps of several services may run in parallel on one host: one lock guards the lazily opened
    # connection, the SFTP client (not thread-safe) and the SDK client.
    _lock: threading.RLock = attrs.field(factory=threading.RLock, init=False)
    _sessions: threading.BoundedSemaphore = attrs.field(factory=lambda: threading.BoundedSemaphore(SSH_SESSIONS),
                                                        init=False)

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}"

    @property
    def where(self) -> str:
        return f"{self.host_id} ({self.url})"

    def connection(self) -> Any:
        with self._lock:
            return self._connect()

    def _connect(self) -> Any:
        if self._connection is None:
            import fabric  # deferred: importing fabric costs ~0.3 s

            connect_kwargs: dict[str, Any] = {"look_for_keys": self.key_file is None, "allow_agent": False}
            if self.key_file:
                connect_kwargs["key_filename"] = self.key_file
            conn = fabric.Connection(self.host, user=self.user, port=self.port, connect_timeout=10,
                                     connect_kwargs=connect_kwargs,
                                     config=fabric.Config(ssh_config=paramiko.SSHConfig()))
            pin_host_keys(conn.client, self.known_hosts)
            try:
                conn.open()
            except (OSError, paramiko.SSHException) as exc:
                raise ProviderUnreachable(f"cannot open SSH to {self.where}: {exc}", path=self.host_id) from exc
            self._connection = conn
        return self._connection

    def run(self, script: str, *args: str, timeout: float = COMMAND_TIMEOUT) -> ShellResult:
        from invoke.exceptions import CommandTimedOut

        command = script_with_args(script, args)
        try:
            connection = self.connection()
            with self._sessions:
                result = connection.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
        except CommandTimedOut:
            return ShellResult(script, 124, "", f"timed out after {timeout:.0f}s")
        except (OSError, paramiko.SSHException, EOFError) as exc:
            self._drop()  # the transport is suspect: reconnect next time
            raise ProviderUnreachable(f"SSH command on {self.where} failed: {exc}", path=self.host_id) from exc
        return ShellResult(script, result.exited, result.stdout, result.stderr)

    def sftp(self) -> Any:
        """The connection's SFTP client (file operations cost no shell session: sshd sessions are slow)."""
        with self._lock:
            if self._sftp is None:
                self._sftp = self._files(lambda: self.connection().sftp(), "open SFTP")
            return self._sftp

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        sftp, tmp = self.sftp(), f"{path}.udeploy-tmp-{secrets.token_hex(4)}"

        def write() -> None:
            self._makedirs(posixpath.dirname(path))
            sftp.putfo(io.BytesIO(data), tmp)
            sftp.chmod(tmp, mode)
            sftp.posix_rename(tmp, path)

        self._files(write, f"write {path}")

    def exists(self, paths: Sequence[str]) -> dict[str, bool]:
        return {p: self._files(lambda p=p: self._stat(p), f"stat {p}") for p in paths}

    def touch_missing(self, paths: Sequence[str]) -> list[str]:
        created = [p for p, present in self.exists(paths).items() if not present]
        for p in created:
            self.write_file(p, b"")
        return created

    def _stat(self, path: str) -> bool:
        try:
            self.sftp().stat(path)
        except FileNotFoundError:
            return False
        return True

    def _makedirs(self, directory: str) -> None:
        if not directory or directory == "/" or self._stat(directory):
            return
        self._makedirs(posixpath.dirname(directory))
        self.sftp().mkdir(directory)

    def _files(self, action: Any, what: str) -> Any:
        try:
            with self._lock:
                return action()
        except (OSError, paramiko.SSHException) as exc:
            if not isinstance(exc, FileNotFoundError | PermissionError):
                self._drop()  # the transport is suspect: reconnect next time
            raise ProviderUnreachable(f"cannot {what} on {self.where}: {exc}", path=self.host_id) from exc

    def http_get(self, url: str, timeout: float = 3.0) -> HttpAnswer:
        result = self.run(HTTP_GET_SCRIPT, url, str(timeout), timeout=timeout + 10)
        if not result.ok:
            return HttpAnswer(None, b"", result.stderr.strip() or f"exit {result.returncode}")
        status, _, body = result.stdout.partition("\n")
        if not status.strip().isdigit():
            return HttpAnswer(None, b"", f"unexpected answer from the health probe: {status[:80]!r}")
        return HttpAnswer(int(status), body.encode())

    def docker(self) -> DockerClient:
        with self._lock:
            if self._client is None:
                self._client = ssh_docker_client(self.url, self.key_file, self.known_hosts, self.host_id)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None
        self._drop()

    def _drop(self) -> None:
        """Forget the connection (and its SFTP client), under the lock so no thread is mid-use."""
        with self._lock:
            self._sftp = None
            if self._connection is not None:
                self._connection.close()
                self._connection = None
