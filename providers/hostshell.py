"""A host's shell and Docker engine, local (unix socket) or over SSH, behind one small interface.

A Compose host in `config.json` is reached either through a local Docker socket
(`docker.socket`) or over SSH (`docker.ssh` = {host, port, user, keyFile, knownHosts}). Both give:

- `run(script)`: a POSIX `sh` script on the host, with the host's `DOCKER_HOST` (locally we set it
  to the socket; over SSH the host's own session provides it);
- `write_file(path, data)`, `exists(paths)`, `touch_missing(paths)`: files on the host (over SSH
  through SFTP: the lab's sshd takes ~0.2 s per shell session, SFTP calls take a millisecond);
- `http_get(url)`: an HTTP GET performed *on* the host (health ports bind the host's loopback);
- `docker()`: a docker SDK client for that engine. Over SSH it uses paramiko with the configured
  key and known_hosts (the SDK's own ssh:// transports read only ~/.ssh or the `ssh` binary's
  config, so they cannot be given a key).

Failures to reach the host raise `ProviderUnreachable` with the host id as the path. The docker
SDK client waits at most the host's `docker` read timeout per call, the SSH connection its `ssh`
timeouts (`engine.load.timeouts`, config.json `hosts.<id>.timeouts`).
"""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Protocol

import attrs
import docker
import docker.errors
from docker import DockerClient

from udeploy.engine.load.timeouts import DEFAULTS, Timeout, TimeoutKind
from udeploy.providers.net_cause import docker_unreachable

COMMAND_TIMEOUT = 300.0

# Prints "<status>\n<body>" for a GET on the host: curl, else python3.
HTTP_GET_SCRIPT = r"""
url=$1; t=$2
if command -v curl >/dev/null 2>&1; then
  body=$(mktemp) || exit 7
  code=$(curl -sS -m "$t" -o "$body" -w '%{http_code}' "$url") || { rm -f "$body"; exit 7; }
  printf '%s\n' "$code"; cat "$body"; rm -f "$body"
else
python3 - "$url" "$t" <<'PY'
import sys, urllib.request, urllib.error
try:
    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:
        body, status = r.read(), r.status
except urllib.error.HTTPError as e:
    body, status = e.read(), e.code
except Exception as e:
    sys.stderr.write(str(getattr(e, "reason", e))); sys.exit(7)
sys.stdout.write(str(status) + "\n"); sys.stdout.flush(); sys.stdout.buffer.write(body)
PY
fi
"""


@attrs.frozen
class ShellResult:
    command: str
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = 20) -> list[str]:
        """The last lines of stdout+stderr, for StepResult facts (bounded)."""
        text = (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).strip()
        return text.splitlines()[-lines:] if text else []


@attrs.frozen
class HttpAnswer:
    status: int | None
    body: bytes
    error: str | None = None


class HostShell(Protocol):
    host_id: str
    docker_timeout: Timeout  # the host's Docker API timeouts; Compose is given the read half too

    @property
    def endpoint(self) -> str:
        """How the host's Docker engine is reached: "unix:///..." or "ssh://user@host:port"."""
        ...

    @property
    def where(self) -> str:
        """Human text naming the host and how it is reached: "D601 (unix:///...)"."""
        ...

    def run(self, script: str, *args: str, timeout: float = COMMAND_TIMEOUT) -> ShellResult: ...

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None: ...

    def exists(self, paths: Sequence[str]) -> dict[str, bool]: ...

    def touch_missing(self, paths: Sequence[str]) -> list[str]: ...

    def http_get(self, url: str, timeout: float = 3.0) -> HttpAnswer: ...

    def docker(self) -> DockerClient: ...

    def close(self) -> None: ...


def run_in_dir(shell: HostShell, directory: str, argv: Sequence[str], env: str = "") -> ShellResult:
    """`argv` run in `directory` on the host; both are passed as arguments, never interpolated."""
    return shell.run(f'cd "$1" && shift && {env}exec "$@"', directory, *argv)


def script_with_args(script: str, args: tuple[str, ...]) -> str:
    """`sh -c` form: positional arguments are passed quoted, never interpolated into the script."""
    return "sh -c " + shlex.quote(script) + " sh " + " ".join(shlex.quote(a) for a in args)


@attrs.define
class LocalShell:
    """This machine, with DOCKER_HOST pointing at the host's engine socket."""

    host_id: str
    socket: str
    docker_timeout: Timeout = DEFAULTS[TimeoutKind.DOCKER]
    _client: DockerClient | None = attrs.field(default=None, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    @property
    def endpoint(self) -> str:
        return self.socket

    @property
    def where(self) -> str:
        return f"{self.host_id} ({self.socket})"

    def run(self, script: str, *args: str, timeout: float = COMMAND_TIMEOUT) -> ShellResult:
        env = {**os.environ, "DOCKER_HOST": self.socket}
        try:
            proc = subprocess.run(["sh", "-c", script, "sh", *args], env=env, capture_output=True, text=True,
                                  timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            return ShellResult(script, 124, "", f"timed out after {timeout:.0f}s")
        return ShellResult(script, proc.returncode, proc.stdout, proc.stderr)

    def write_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = f"{path}.udeploy-tmp-{secrets.token_hex(4)}"  # unique: writers may run in parallel
        with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "wb") as f:
            f.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)

    def exists(self, paths: Sequence[str]) -> dict[str, bool]:
        return {p: os.path.exists(p) for p in paths}

    def touch_missing(self, paths: Sequence[str]) -> list[str]:
        """Create the files that do not exist yet (empty); returns those it created."""
        created = [p for p in paths if not os.path.exists(p)]
        for p in created:
            os.makedirs(os.path.dirname(p), exist_ok=True)
            open(p, "ab").close()
        return created

    def http_get(self, url: str, timeout: float = 3.0) -> HttpAnswer:
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                return HttpAnswer(response.status, response.read())
        except urllib.error.HTTPError as exc:
            return HttpAnswer(exc.code, exc.read() or b"")
        except (OSError, ValueError) as exc:
            return HttpAnswer(None, b"", str(getattr(exc, "reason", exc)))

    def docker(self) -> DockerClient:
        with self._lock:
            return self._docker()

    def _docker(self) -> DockerClient:
        if self._client is None:
            began = time.monotonic()
            try:
                self._client = DockerClient(base_url=self.socket, timeout=self.docker_timeout.read)
            except docker.errors.DockerException as exc:
                raise docker_unreachable(self.host_id, self.socket, exc, began, self.docker_timeout) from exc
        return self._client

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
