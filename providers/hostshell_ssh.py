"""A Compose host reached over SSH (`docker.ssh` in config.json), with an explicit key and
known_hosts: fabric for commands, SFTP for files, and the docker SDK over paramiko.

The lab's sshd takes ~0.2 s per shell session, SFTP calls a millisecond, so files go through SFTP.
sshd refuses more than MaxSessions (default 10) channels on one connection, so concurrent commands
share a bounded number of session channels (`docker.ssh.maxChannels`, default 6; SFTP takes one
more), and a channel the server still refuses is asked for again a few times before it is an error.
Connecting waits at most the host's ssh timeouts (`providers.ssh_connect`); a failure names the
cause and the timeout that expired. Once connected, a command may rightly run for minutes (a
Compose `up` that pulls), so silence is no sign of trouble: while commands run, sshd is asked for a
keepalive reply every ssh read timeout, and a host that does not answer one within it is given up:
the connection is closed, which ends every command waiting on it, and the command fails as
`provider-unreachable` instead of waiting out its own timeout. SFTP calls wait at most the read
timeout for each answer.
"""

from __future__ import annotations

import io
import posixpath
import secrets
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import attrs
import paramiko
from docker import DockerClient

from udeploy.engine.load.timeouts import DEFAULTS, Timeout, TimeoutKind
from udeploy.engine.provider_api import ProviderUnreachable
from udeploy.providers.docker_ssh import pin_host_keys, ssh_docker_client
from udeploy.providers.hostshell import COMMAND_TIMEOUT, HTTP_GET_SCRIPT, HttpAnswer, ShellResult, script_with_args
from udeploy.providers.net_cause import ssh_unreachable
from udeploy.providers.ssh_connect import SshConnectFailed, connect_client

SSH_SESSIONS = 6  # below sshd's default MaxSessions of 10; SFTP takes one more
CHANNEL_OPEN_ATTEMPTS = 5  # a refused channel (another client's sessions, a slow close) is asked for again
CHANNEL_RETRY_PAUSE = 0.2  # seconds, doubled after each refusal: at most 3 s of pauses
CHANNEL_REFUSED = frozenset({"Unable to open channel.", "Channel closed."})  # before the command started


@attrs.define
class SshShell:
    """A host reached over SSH with an explicit key and known_hosts (fabric for commands and files)."""

    host_id: str
    host: str
    port: int
    user: str
    key_file: str | None
    known_hosts: str | None
    timeout: Timeout = DEFAULTS[TimeoutKind.SSH]  # connect: TCP; read: banner, key exchange, authentication
    docker_timeout: Timeout = DEFAULTS[TimeoutKind.DOCKER]
    max_channels: int = SSH_SESSIONS  # concurrent command channels on the one connection
    _connection: Any = attrs.field(default=None, init=False)
    _sftp: Any = attrs.field(default=None, init=False)
    _client: DockerClient | None = attrs.field(default=None, init=False)
    # Steps of several services may run in parallel on one host: one lock guards the lazily opened
    # connection, the SFTP client (not thread-safe) and the SDK client.
    _lock: threading.RLock = attrs.field(factory=threading.RLock, init=False)
    _sessions: threading.BoundedSemaphore = attrs.field(init=False)
    _probing: threading.Lock = attrs.field(factory=threading.Lock, init=False)  # one keepalive at a time
    _stalled: str | None = attrs.field(default=None, init=False)  # why the watchdog gave the connection up

    def __attrs_post_init__(self) -> None:
        self._sessions = threading.BoundedSemaphore(self.max_channels)

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@{self.host}:{self.port}"

    @property
    def endpoint(self) -> str:
        return self.url

    @property
    def where(self) -> str:
        return f"{self.host_id} ({self.url})"

    def connection(self) -> Any:
        with self._lock:
            return self._connect()

    def _connect(self) -> Any:
        if self._connection is not None and not self._connection.is_connected:
            self._drop()  # the transport died: fabric would reopen it without our key and timeouts
        if self._connection is None:
            import fabric  # deferred: importing fabric costs ~0.3 s

            params: dict[str, Any] = {"username": self.user, "look_for_keys": self.key_file is None,
                                      "allow_agent": False}
            if self.key_file:
                params["key_filename"] = self.key_file
            conn = fabric.Connection(self.host, user=self.user, port=self.port,
                                     config=fabric.Config(ssh_config=paramiko.SSHConfig()))
            pin_host_keys(conn.client, self.known_hosts)
            began = time.monotonic()
            try:  # our connect, not fabric's open(): bounded waits and the real cause (ssh_connect)
                connect_client(conn.client, self.host, self.port, self.timeout, **params)
            except SshConnectFailed as exc:
                raise self.unreachable(str(exc), began) from exc
            conn.transport = conn.client.get_transport()
            self._connection, self._stalled = conn, None
        return self._connection

    def run(self, script: str, *args: str, timeout: float = COMMAND_TIMEOUT) -> ShellResult:
        from invoke.exceptions import CommandTimedOut

        command = script_with_args(script, args)
        began = time.monotonic()
        try:
            connection = self.connection()
            with self._sessions, self._watchdog(connection):
                result = self._run_on_channel(connection, command, timeout)
            if self._stalled:
                raise EOFError(self._stalled)
            if result.exited == -1 and not connection.is_connected:  # no exit status: the connection went
                raise EOFError("the connection closed while a command ran")
        except CommandTimedOut:
            return ShellResult(script, 124, "", f"timed out after {timeout:.0f}s")
        except paramiko.ChannelException as exc:  # the connection is fine: keep it for the other channels
            raise ProviderUnreachable(f"SSH command on {self.where} failed: the server refused a session channel "
                                      f"{CHANNEL_OPEN_ATTEMPTS} times ({exc}); is sshd's MaxSessions below "
                                      f"docker.ssh.maxChannels={self.max_channels} + 1?", path=self.host_id) from exc
        except (OSError, paramiko.SSHException, EOFError) as exc:
            stalled = self._stalled or (f"no answer to a session channel request within {self.timeout.read:g} s"
                                        if str(exc) == "Timeout opening channel." else None)
            if self._connection is not None and not self._connection.is_connected:
                self._drop()  # the transport died: reconnect next time (a failed channel leaves it to the others)
            if stalled or isinstance(exc, EOFError):
                raise self.unreachable(stalled or str(exc), began) from exc
            raise ProviderUnreachable(f"SSH command on {self.where} failed: {exc}", path=self.host_id) from exc
        return ShellResult(script, result.exited, result.stdout, result.stderr)

    @contextmanager
    def _watchdog(self, connection: Any) -> Iterator[None]:
        """While the block runs, check every ssh read timeout that sshd still answers; if it does not,
        close the connection (ending the block's wait) and leave the cause in `_stalled`."""
        done = threading.Event()
        transport = connection.client.get_transport()

        def watch() -> None:
            while not done.wait(self.timeout.read):
                if not self._probing.acquire(blocking=False):
                    continue  # another command's watchdog is asking right now
                try:
                    if done.is_set() or self._answers(transport):
                        continue
                    self._stalled = (f"no reply to a keepalive within {self.timeout.read:g} s while a "
                                     "command ran")
                    transport.close()
                    return
                finally:
                    self._probing.release()

        thread = threading.Thread(target=watch, name=f"ssh-watchdog-{self.host_id}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()

    def _answers(self, transport: paramiko.Transport) -> bool:
        """Whether sshd replies to a keepalive request within the read timeout (OpenSSH answers an
        unknown global request with a failure message: any answer means it is alive)."""
        answered = threading.Event()

        def ask() -> None:
            transport.global_request("keepalive@openssh.com", wait=True)
            if transport.is_active():
                answered.set()

        threading.Thread(target=ask, daemon=True).start()
        return answered.wait(self.timeout.read)

    def _run_on_channel(self, connection: Any, command: str, timeout: float) -> Any:
        """Run `command` on a new session channel. A channel the server refuses (the open fails, or it is
        closed before the exec request is granted: nothing ran yet, so asking again is safe) is asked
        for again, a bounded number of times, while the connection itself stays up."""
        pause = CHANNEL_RETRY_PAUSE
        for attempt in range(1, CHANNEL_OPEN_ATTEMPTS + 1):
            try:
                return connection.run(command, hide=True, warn=True, in_stream=False, timeout=timeout)
            except paramiko.SSHException as exc:
                # paramiko hands a refusal to whichever thread asks first: the others see the generic text
                refused = isinstance(exc, paramiko.ChannelException) or str(exc) in CHANNEL_REFUSED
                if not refused or attempt == CHANNEL_OPEN_ATTEMPTS or not connection.is_connected:
                    raise
                time.sleep(pause)
                pause *= 2
        raise AssertionError("unreachable")

    def unreachable(self, cause: str, began: float) -> ProviderUnreachable:
        return ssh_unreachable(self.host_id, self.url, cause, began, self.timeout)

    def sftp(self) -> Any:
        """The connection's SFTP client (file operations cost no shell session: sshd sessions are slow)."""
        with self._lock:
            if self._sftp is None:
                self._sftp = self._files(lambda: self.connection().sftp(), "open SFTP")
                self._sftp.get_channel().settimeout(self.timeout.read)  # a stalled host fails the call
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
                self._client = ssh_docker_client(self.url, self.key_file, self.known_hosts, self.host_id,
                                                 ssh_timeout=self.timeout, docker_timeout=self.docker_timeout)
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
