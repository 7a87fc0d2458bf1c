"""Issue 12, point 2: no library tracebacks or logging on stderr; the error names the real cause.

main-server's `docker.ssh` points at an endpoint that accepts TCP and never sends an SSH banner,
then at a closed port. stdout holds `provider-unreachable` naming the host and the cause ("no SSH
banner within N s", "refused"); stderr has no traceback and no paramiko text unless `-v` asks.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.outages.support import Endpoint, assert_quiet, edit_config, udeploy
from tests.sample_repo import SampleRepo

pytestmark = pytest.mark.usefixtures("lab_up")
SSH_PORT = "hosts.main-server.docker.ssh.port"


def test_ssh_without_banner_names_the_cause_and_the_timeout(stalled: Endpoint, sample: SampleRepo,
                                                            tmp_path: Path) -> None:
    edit_config(sample, {SSH_PORT: stalled.port})
    run = udeploy(sample, tmp_path, "plan", "--env", "dev", "--detailed-exitcode", "--timeout", "ssh=2")
    assert run.returncode == 1, run.stdout + run.stderr
    error = run.error
    assert error["code"] == "provider-unreachable" and error["path"] == "main-server"
    assert "no SSH banner within 2 s" in error["message"] and "main-server" in error["message"]
    assert error["details"]["endpoint"].endswith(f":{stalled.port}")
    assert error["details"]["timeoutSeconds"] == {"connect": 2.0, "read": 2.0}
    assert_quiet(run.stderr)
    assert run.seconds < 30


def test_ssh_closed_port_is_refused(closed: Endpoint, sample: SampleRepo, tmp_path: Path) -> None:
    edit_config(sample, {SSH_PORT: closed.port})
    run = udeploy(sample, tmp_path, "plan", "--env", "dev")
    assert run.returncode == 1, run.stdout + run.stderr
    assert run.error["code"] == "provider-unreachable" and run.error["path"] == "main-server"
    assert "refused" in run.error["message"]
    assert_quiet(run.stderr)


def test_ssh_host_timeouts_come_from_config_and_verbose_lets_library_logging_through(
        stalled: Endpoint, sample: SampleRepo, tmp_path: Path) -> None:
    edit_config(sample, {SSH_PORT: stalled.port, "hosts.main-server.timeouts": {"ssh": {"read": 1}}})
    run = udeploy(sample, tmp_path, "plan", "--env", "dev", "-v")
    assert run.returncode == 1 and "no SSH banner within 1 s" in run.error["message"]
    assert run.error["details"]["timeoutSeconds"] == {"connect": 10.0, "read": 1.0}
    assert "paramiko" in run.stderr  # asked for: the library's own log lines
