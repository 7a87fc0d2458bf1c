"""Helpers of the outage tests: endpoints, a config.json edit, the CLI as a real process.

The CLI runs as a subprocess from this worktree, so stderr is exactly what a user sees, including
what libraries log from their own threads.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import attrs

from tests.sample_repo import SampleRepo

WORKTREE = Path(__file__).resolve().parents[2]
# The plan of `--env dev` reads all of these: an outage test needs the others up to see its own.
LAB_COMPONENTS = ("registry", "main-docker", "d601-docker", "sshd", "k3s-containerd", "kubelab")
LIBRARY_NOISE = ("Traceback", "paramiko", "Exception (client)", "No existing session", "urllib3")


@attrs.frozen
class Endpoint:
    host: str
    port: int

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@attrs.frozen
class Run:
    returncode: int
    stdout: str
    stderr: str
    seconds: float

    @property
    def error(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.stdout)["error"]
        return body


def edit_config(sample: SampleRepo, change: dict[str, Any]) -> None:
    """Commit a copy of the sample's config.json with `change` applied (dotted path -> value)."""
    config = json.loads((sample.clone / "config.json").read_text())
    for dotted, value in change.items():
        *parents, leaf = dotted.split(".")
        node = config
        for key in parents:
            node = node[key]
        node[leaf] = value
    sample.commit_change("config.json", json.dumps(config, indent=2) + "\n", "config: an outage")


def udeploy(sample: SampleRepo, tmp_path: Path, *args: str) -> Run:
    """`udeploy ARGS` as a process, from the sample clone, running this worktree's code."""
    env = {**os.environ, **sample.env, "PYTHONPATH": str(WORKTREE), "UDEPLOY_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("UDEPLOY_VERBOSE", None)
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "udeploy.engine.cli", *args], cwd=sample.clone, env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic() - began)


# udeploy's own stderr lines: `udeploy: …` progress, or apply's timestamped progress off a terminal.
OWN_LINE = re.compile(r"udeploy: |\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


def assert_quiet(stderr: str) -> None:
    """No traceback and no library's logging on stderr: only udeploy's own progress lines."""
    noise = [word for word in LIBRARY_NOISE if word in stderr]
    assert not noise, f"library output on stderr ({noise}):\n{stderr}"
    assert all(OWN_LINE.match(line) for line in stderr.splitlines() if line.strip()), stderr
