"""The console script's contract (DESIGN "CLI contract"): one JSON document on stdout, help and
progress on stderr, exit 1 for any error, click's usage errors included (exit 2 means changes)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def udeploy(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "udeploy.engine.cli", *args], capture_output=True, text=True,
                          timeout=60)


@pytest.mark.parametrize("args,path", [
    (["show"], "plan_file"),
    (["plan", "--bogus"], None),
    (["apply", "--parallelism", "0", "plan.json"], "parallelism"),
    (["job", "status"], "job"),
    (["history"], "env"),
    (["rollback", "--env", "dev"], "service"),
])
def test_usage_errors_are_json_with_exit_1(args: list[str], path: str | None) -> None:
    r = udeploy(*args)
    assert r.returncode == 1, r.stdout + r.stderr
    error = json.loads(r.stdout)["error"]
    assert error["code"] == "usage" and error["path"] == path and error["message"]
    assert "--help" in r.stderr


def test_help_and_version() -> None:
    bare = udeploy()
    assert bare.returncode == 0 and "Usage:" in bare.stdout + bare.stderr
    helped = udeploy("--help")
    assert helped.returncode == 0 and "apply" in helped.stdout
    version = udeploy("--version")
    assert version.returncode == 0 and json.loads(version.stdout)["udeployVersion"]
