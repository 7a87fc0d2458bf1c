"""Shared-state fixtures on the lab's PostgreSQL (`scripts/lab up postgres`; docs/state.md).

Each test gets a database of its own on the lab's server (dropped afterwards), so tests never
see each other's locks or jobs. The password comes from the lab's pgpass file (PGPASSFILE), never
from the URL. A `udeploy` subprocess gets this checkout on PYTHONPATH.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import psycopg
import pytest

from tests.apply.conftest import Lab, lab  # noqa: F401  (the fixture, reused)
from tests.conftest import lab_command, require_lab

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def lab_postgres() -> dict[str, Any]:
    require_lab("postgres")
    layout: dict[str, Any] = json.loads(lab_command("env"))["postgres"]
    return layout


def _admin(layout: dict[str, Any]) -> psycopg.Connection[Any]:
    return psycopg.connect(layout["url"], autocommit=True, passfile=layout["passfile"])


@pytest.fixture
def state_env(lab_postgres: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """PGPASSFILE, and a PYTHONPATH that runs this checkout in subprocesses."""
    monkeypatch.setenv("PGPASSFILE", lab_postgres["passfile"])
    monkeypatch.setenv("PYTHONPATH", str(REPO))


@pytest.fixture
def state_url(lab_postgres: dict[str, Any], state_env: None) -> Iterator[str]:
    """A fresh database on the lab's server, as a password-less URL (libpq reads PGPASSFILE)."""
    name = "t_" + secrets.token_hex(6)
    with _admin(lab_postgres) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    url = lab_postgres["url"].rsplit("/", 1)[0] + "/" + name
    yield url
    with _admin(lab_postgres) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@attrs.define
class Machine:
    """One "runner": its own local state directory, the shared state URL, its own environment."""

    lab: Lab
    state_dir: Path
    state_url: str
    lease: str = "3"

    def env(self) -> dict[str, str]:
        return {**os.environ, **self.lab.cli.env, "UDEPLOY_STATE_DIR": str(self.state_dir),
                "UDEPLOY_STATE_URL": self.state_url, "UDEPLOY_LEASE_SECONDS": self.lease}

    def cli(self, *args: str) -> Any:
        """`udeploy ARGS` in-process, as this machine."""
        old = dict(self.lab.cli.env)
        self.lab.cli.env.update(UDEPLOY_STATE_DIR=str(self.state_dir), UDEPLOY_STATE_URL=self.state_url,
                                UDEPLOY_LEASE_SECONDS=self.lease)
        try:
            return self.lab.cli(*args)
        finally:
            self.lab.cli.env.clear()
            self.lab.cli.env.update(old)

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """`udeploy ARGS` as a separate process (this worktree's code)."""
        return subprocess.Popen([sys.executable, "-m", "udeploy.engine.cli", *args], cwd=self.lab.sample.clone,
                                env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.fixture
def machines(lab: Lab, state_url: str, tmp_path: Path) -> tuple[Machine, Machine]:  # noqa: F811
    return Machine(lab, tmp_path / "runner-a", state_url), Machine(lab, tmp_path / "runner-b", state_url)


@attrs.define
class PrivateCluster:
    """A PostgreSQL cluster of this test's own (initdb in a temp dir, run as `postgres`): the one
    the outage test may stop and start; the lab's server is never stopped."""

    root: Path
    port: int
    bin: Path

    def _as_postgres(self, *args: str) -> None:
        subprocess.run(["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", *args], check=True,
                       capture_output=True, timeout=60)

    def start(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "start", "-w", "-D", str(self.root / "data"), "-l",
                          str(self.root / "log"), "-o", f"-c listen_addresses=127.0.0.1 -c port={self.port} "
                          f"-c unix_socket_directories={self.root} -c fsync=off")

    def stop(self) -> None:
        self._as_postgres(str(self.bin / "pg_ctl"), "stop", "-w", "-D", str(self.root / "data"), "-m", "immediate")

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def private_cluster(lab_postgres: dict[str, Any], state_env: None) -> Iterator[PrivateCluster]:
    root = Path(tempfile.mkdtemp(prefix="udeploy-pg-"))
    shutil.chown(root, "postgres", "postgres")
    with socket_port() as port:
        cluster = PrivateCluster(root, port, Path(lab_postgres["bin"]))
    cluster._as_postgres(str(cluster.bin / "initdb"), "-D", str(root / "data"), "-U", "postgres", "--auth=trust")
    cluster.start()
    try:
        yield cluster
    finally:
        try:
            cluster.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(root, ignore_errors=True)


class socket_port:
    """A free loopback port (closed again before the server binds it)."""

    def __enter__(self) -> int:
        import socket
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        pass


def wait_for(predicate: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
