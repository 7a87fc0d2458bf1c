"""D5 for real, never on the host: the dev foundation's db-guard script (pull-request content) runs
in throwaway containers on a Docker engine the operator chose, once with the dev DATABASE_URL (must
pass) and once with each production-looking one (must be refused). Passwords are masked in the output.

Each case is its own container: no network, read-only root, user 65534, no capabilities and no new
privileges, memory/CPU/pids limits, a small noexec tmpfs on /tmp, and a wall-clock timeout after
which it is killed; it is always removed. It sees only `DATABASE_URL` and the script, which travels
as data in an environment variable (never on a command line) and is read from the tmpfs by `sh`.
The image is FROM scratch with this machine's static busybox, tagged by the hash of its build
context, so each engine builds it once. When the engine cannot run the guard, that is a D5 finding
naming the engine and the cause, never a pass. `--skip-db-guard` (the operator's choice) reports
`skipped` without running anything; a ConfigMap with no script is a D5 finding either way.
"""

from __future__ import annotations

import hashlib
import io
import os
import re
import subprocess
import tarfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from typing import Any

import attrs
import docker
import docker.errors
import requests.exceptions
from docker.models.containers import Container
from docker.types import LogConfig, Ulimit

from udeploy.engine.errors import Diagnostic, Severity, UdeployError
from udeploy.engine.provider_api import DbGuardRequest

# D5 inputs: the dev URL must pass (the Secret template's own, else this one); each of these
# production-looking URLs must be refused.
FALLBACK_DEV_URL = "postgres://unidesk_dev:dev@postgres-dev.unidesk-dev.svc.cluster.local:5432/unidesk_dev"
PROD_LIKE_URLS = (
    "postgres://unidesk:prod@unidesk-database:5432/unidesk",  # the production database (config.json prod)
    "postgres://unidesk:prod@d601-tcp-egress-gateway.unidesk.svc.cluster.local:15432/unidesk",  # its k3s route
    "postgres://unidesk_dev:dev@postgres-dev.unidesk-dev.svc.cluster.local:5432/unidesk",  # dev host, prod database
)

SANDBOX_REPOSITORY = "udeploy/db-guard-sandbox"
BUSYBOX_PATHS = (Path("/bin/busybox"), Path("/usr/bin/busybox"))  # Debian busybox-static
DEFAULT_ENGINE = "unix:///var/run/docker.sock"
LABEL = "udeploy.db-guard"  # every sandbox container carries it; its value is the manifest's path
MAX_SCRIPT_BYTES = 64 * 1024  # it travels in an environment variable (Linux caps one at 128 KiB)
OUTPUT_TAIL = 500
POLL_S = 0.1
BACKSTOP_S = 5  # the container kills itself this long after udeploy should have
# The script arrives in $GUARD; it is written to the tmpfs and read by sh, never parsed as part of
# this command line. `unset` so that the guard itself sees only DATABASE_URL.
RUNNER = 'printf %s "$GUARD" > /tmp/db-guard.sh && unset GUARD && exec sh /tmp/db-guard.sh'


@attrs.frozen
class SandboxLimits:
    """What one guard container may use."""

    timeout_s: int = 10  # wall clock, then it is killed
    memory: str = "32m"  # swap included (memswap = memory)
    cpus: float = 0.5
    pids: int = 32
    tmpfs: str = "1m"  # /tmp, the only writable path
    user: str = "65534:65534"

    def to_json(self) -> dict[str, Any]:
        return {"timeoutSeconds": self.timeout_s, "memory": self.memory, "cpus": self.cpus, "pids": self.pids,
                "tmpfs": {"/tmp": self.tmpfs}, "user": self.user, "network": "none", "readOnlyRootfs": True,
                "capabilities": [], "noNewPrivileges": True}


class SandboxUnavailable(UdeployError, RuntimeError):
    """The sandbox engine cannot run the guard (reported as a D5 finding, never raised to the CLI)."""

    code = "db-guard-sandbox-unavailable"


@attrs.frozen
class Case:
    url: str
    should_pass: bool


def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


# --- the image ------------------------------------------------------------------------------------

def _busybox() -> Path:
    found = next((p for p in BUSYBOX_PATHS if p.is_file()), None)
    if found is None:
        raise SandboxUnavailable("no busybox on this machine to build the sandbox image (install busybox-static)")
    if not _is_static_elf(found.read_bytes()[:4096]):
        raise SandboxUnavailable(f"{found} is not a statically linked ELF binary (install busybox-static)")
    return found


def _is_static_elf(head: bytes) -> bool:
    """True for a 64-bit little-endian ELF without a PT_INTERP header (no dynamic loader to find)."""
    if head[:6] != b"\x7fELF\x02\x01":
        return False
    phoff, (phentsize, phnum) = int.from_bytes(head[0x20:0x28], "little"), (
        int.from_bytes(head[0x36:0x38], "little"), int.from_bytes(head[0x38:0x3A], "little"))
    types = [int.from_bytes(head[phoff + i * phentsize:phoff + i * phentsize + 4], "little") for i in range(phnum)]
    return 3 not in types  # PT_INTERP


def _tar_add(tar: tarfile.TarFile, name: str, *, data: bytes | None = None, link: str | None = None,
             mode: int = 0o644, directory: bool = False) -> None:
    info = tarfile.TarInfo(name)
    info.mtime, info.mode = 0, mode  # a fixed mtime: the same inputs give the same bytes, so the same tag
    if directory:
        info.type = tarfile.DIRTYPE
    elif link is not None:
        info.type, info.linkname = tarfile.SYMTYPE, link
    info.size = len(data or b"")
    tar.addfile(info, io.BytesIO(data) if data else None)


@cache
def sandbox_context() -> tuple[bytes, str]:
    """The image's build context (a tar, deterministic) and its tag, derived from the context's hash."""
    busybox = _busybox()
    # The applet list comes from the OS's own binary (trusted), never from the manifest.
    applets = subprocess.run([str(busybox), "--list-full"], capture_output=True, text=True, check=True,
                             timeout=10).stdout.split()
    dockerfile = ("FROM scratch\nCOPY rootfs/ /\nENV PATH=/usr/sbin:/usr/bin:/sbin:/bin\nUSER 65534:65534\n"
                  f'LABEL {LABEL}.sandbox="FROM scratch + static busybox"\nSTOPSIGNAL SIGKILL\n')
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        _tar_add(tar, "Dockerfile", data=dockerfile.encode())
        for directory in ("rootfs", "rootfs/bin", "rootfs/sbin", "rootfs/usr", "rootfs/usr/bin", "rootfs/usr/sbin",
                          "rootfs/etc", "rootfs/tmp"):
            _tar_add(tar, directory, directory=True, mode=0o1777 if directory.endswith("tmp") else 0o755)
        _tar_add(tar, "rootfs/bin/busybox", data=busybox.read_bytes(), mode=0o755)
        _tar_add(tar, "rootfs/etc/passwd",
                 data=b"root:x:0:0:root:/:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n")
        _tar_add(tar, "rootfs/etc/group", data=b"root:x:0:\nnogroup:x:65534:\n")
        for applet in sorted(set(applets) - {"bin/busybox"}):
            _tar_add(tar, f"rootfs/{applet}", link="/bin/busybox")
    context = buffer.getvalue()
    return context, f"{SANDBOX_REPOSITORY}:{hashlib.sha256(context).hexdigest()[:16]}"


# --- the engine -----------------------------------------------------------------------------------

@attrs.define
class DbGuardSandbox:
    """D5's runner (the `db-guard` capability, `engine.provider_api.DbGuardRunner`): the operator's
    Docker engine (never config.json's), connected on first use, once.

    `docker_host` None means the standard docker environment (DOCKER_HOST, else the local socket).
    `skip` is the operator's explicit `--skip-db-guard`.
    """

    docker_host: str | None = None
    skip: bool = False
    limits: SandboxLimits = SandboxLimits()
    _client: docker.DockerClient | None = None
    _image: str | None = None
    _unavailable: SandboxUnavailable | None = None  # why the engine cannot run the guard, once known

    @property
    def engine(self) -> str:
        if self.docker_host:
            return self.docker_host
        env = os.environ.get("DOCKER_HOST")
        return f"DOCKER_HOST={env}" if env else f"{DEFAULT_ENGINE} (default)"

    @classmethod
    def open(cls, docker_host: str | None, skip: bool) -> DbGuardSandbox:
        """Nothing connects yet: the engine is reached when a manifest's guard first runs."""
        return cls(docker_host=docker_host, skip=skip)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None

    def run(self, request: DbGuardRequest) -> tuple[dict[str, Any], list[Diagnostic]]:
        """D5 for one manifest: the guard in the sandbox, the dev URL must pass, production-looking ones fail."""
        def finding(summary: str) -> Diagnostic:
            return Diagnostic(Severity.ERROR, "D5", summary, address=request.address)

        script, name = request.script, request.key
        if script is None:
            return {"ran": False}, [finding(f"{request.config_map} has no {name} to run")]
        if self.skip:
            return {"ran": False, "skipped": True}, []
        cases = [Case(request.dev_database_url or FALLBACK_DEV_URL, True), *(Case(u, False) for u in PROD_LIKE_URLS)]
        try:
            _refuse_unrunnable(script, cases, name)
            image = self._ensure_image()
            runs = self._run_cases(request.manifest, image, script, cases)
        except SandboxUnavailable as exc:
            return ({"ran": False, "sandbox": {"engine": self.engine}},
                    [finding(f"the db guard could not run in the sandbox on {self.engine}: {exc.message}")])
        findings = [finding(_verdict(case, run, name)) for case, run in zip(cases, runs, strict=True)
                    if run["timedOut"] or run["accepted"] != case.should_pass]
        sandbox = {"engine": self.engine, "image": image, "limits": self.limits.to_json()}
        return {"ran": True, "script": request.source, "sandbox": sandbox, "runs": runs}, findings

    def _connect(self) -> docker.DockerClient:
        if self._unavailable is not None:
            raise self._unavailable
        if self._client is None:
            try:
                # ssh:// through the `ssh` binary: the operator's ssh config names the key and known hosts.
                client = (docker.DockerClient(base_url=self.docker_host, timeout=60,
                                              use_ssh_client=self.docker_host.startswith("ssh://"))
                          if self.docker_host else docker.from_env(timeout=60, use_ssh_client=True))
                client.ping()
            # Whatever the transport raises (docker, requests, paramiko for ssh://, a malformed URL):
            # the operator's engine is unusable, which D5 reports; it is never a crash.
            except Exception as exc:
                self._unavailable = SandboxUnavailable(f"the engine does not answer: {exc}", path=self.engine)
                raise self._unavailable from exc
            self._client = client
        return self._client

    def _ensure_image(self) -> str:
        client = self._connect()
        if self._image is None:
            try:
                context, tag = sandbox_context()
            except (OSError, subprocess.SubprocessError) as exc:
                raise SandboxUnavailable(f"cannot prepare the sandbox image: {exc}") from exc
            try:
                client.images.get(tag)
            except docker.errors.ImageNotFound:
                self._build(client, context, tag)
            except docker.errors.DockerException as exc:
                raise SandboxUnavailable(f"cannot look up the sandbox image {tag}: {exc}") from exc
            self._image = tag
        return self._image

    @staticmethod
    def _build(client: docker.DockerClient, context: bytes, tag: str) -> None:
        try:
            client.images.build(fileobj=io.BytesIO(context), custom_context=True, tag=tag, rm=True, forcerm=True,
                                network_mode="none", pull=False)
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise SandboxUnavailable(f"cannot build the sandbox image {tag}: {exc}") from exc

    def _run_cases(self, path: str, image: str, script: str, cases: list[Case]) -> list[dict[str, Any]]:
        """All cases run side by side, so the whole guard takes at most about one timeout."""
        client = self._connect()
        with self._containers(client, path, image, script, cases) as containers:
            began = []
            for container in containers:
                container.start()
                began.append(time.monotonic())
            return [self._finish(c, case, t) for c, case, t in zip(containers, cases, began, strict=True)]

    @contextmanager
    def _containers(self, client: docker.DockerClient, path: str, image: str, script: str,
                    cases: list[Case]) -> Iterator[list[Container]]:
        created: list[Container] = []
        try:
            for case in cases:
                created.append(client.containers.create(image, **self._container_settings(path, script, case.url)))
            yield created
        except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
            raise SandboxUnavailable(f"the sandbox container failed: {exc}") from exc
        finally:
            for container in created:
                _remove(container)

    def _container_settings(self, path: str, script: str, url: str) -> dict[str, Any]:
        limits = self.limits
        return {
            # `timeout` as PID 1 is the backstop should udeploy itself die before its own deadline.
            "command": ["/usr/bin/timeout", "-s", "KILL", str(limits.timeout_s + BACKSTOP_S), "/bin/sh", "-c", RUNNER],
            "environment": {"GUARD": script, "DATABASE_URL": url},
            "user": limits.user, "network_mode": "none", "read_only": True, "cap_drop": ["ALL"],
            "security_opt": ["no-new-privileges"], "ipc_mode": "none", "working_dir": "/tmp",
            "mem_limit": limits.memory, "memswap_limit": limits.memory, "nano_cpus": int(limits.cpus * 1e9),
            "pids_limit": limits.pids, "ulimits": [Ulimit(name="nofile", soft=256, hard=256)],
            "tmpfs": {"/tmp": f"rw,noexec,nosuid,nodev,size={limits.tmpfs},mode=1777"},
            # A bounded log: a script that prints forever cannot fill the engine's disk.
            "log_config": LogConfig(type=LogConfig.types.JSON, config={"max-size": "256k", "max-file": "1"}),
            "labels": {LABEL: path}, "hostname": "db-guard", "detach": True,
        }

    def _finish(self, container: Container, case: Case, began: float) -> dict[str, Any]:
        code = self._exit_code_by_deadline(container, began + self.limits.timeout_s)
        output = container.logs(stdout=True, stderr=True, tail=200).decode(errors="replace").strip()
        if code is None:
            output = f"{output}\ndb-guard sandbox: timed out after {self.limits.timeout_s}s, killed".strip()
        return {"databaseUrl": _redact(case.url), "expect": "accept" if case.should_pass else "reject",
                "exitCode": code, "accepted": code == 0, "timedOut": code is None,
                "output": _redact(output)[-OUTPUT_TAIL:]}

    @staticmethod
    def _exit_code_by_deadline(container: Container, deadline: float) -> int | None:
        """Its exit code, or None once the deadline passed (then it is killed). Polled, not a blocking
        `wait`: the ssh transports ignore a request timeout, and a hung guard must not hang validate."""
        while True:
            container.reload()
            if container.status in ("exited", "dead"):
                return int(container.attrs["State"]["ExitCode"])
            if time.monotonic() >= deadline:
                _kill(container)
                return None
            time.sleep(POLL_S)


def _refuse_unrunnable(script: str, cases: list[Case], name: str) -> None:
    if len(script.encode(errors="surrogatepass")) > MAX_SCRIPT_BYTES:
        raise SandboxUnavailable(f"{name} is larger than {MAX_SCRIPT_BYTES // 1024} KiB")
    if any("\0" in text for text in (script, *(c.url for c in cases))):
        raise SandboxUnavailable(f"{name} or the dev DATABASE_URL contains a NUL byte")


def _verdict(case: Case, run: dict[str, Any], name: str) -> str:
    if run["timedOut"]:
        return f"{name} timed out on DATABASE_URL {run['databaseUrl']}"
    verb = "rejected the dev" if case.should_pass else "accepted the production-looking"
    return f"{name} {verb} DATABASE_URL {run['databaseUrl']}"


def _kill(container: Container) -> None:
    try:
        container.kill()
    except docker.errors.APIError:
        pass  # it exited on its own meanwhile; the removal below is what matters


def _remove(container: Container) -> None:
    try:
        container.remove(force=True, v=True)
    except (docker.errors.DockerException, requests.exceptions.RequestException):
        pass  # gone already, or the engine itself went away: nothing more this run can do
