"""An apply run as a real process, with a fault injected when the walk reaches a given point.

The test reads apply's progress lines (stderr, one timestamped line per node event) as they come
and fires the fault at the first line that matches its trigger: `<node>: succeeded` puts it
between that node and the next, `<node>: running` inside that node. The walk is not paused for
the test, so "between" means: in place by the time the next node makes its first call, in all
but a rare interleaving; every check of the suite holds either way.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import attrs

from tests.faults.injection import Injection
from tests.outages.support import WORKTREE, Run


@attrs.frozen
class Trigger:
    node: str
    state: str  # "running" (inside the node) or "succeeded" (between it and the next)

    def matches(self, line: str) -> bool:
        said = line.split(" ", 1)[-1]
        return said.startswith(f"{self.node}: {self.state}")


def apply_with_fault(cwd: Path, env: dict[str, str], args: list[str], injection: Injection,
                     trigger: Trigger) -> Run:
    """`udeploy apply ARGS`, firing `injection` at `trigger`; the fault is undone once the process
    has ended (the caller checks `injection`'s record of whether it fired)."""
    env = {**os.environ, **env, "PYTHONPATH": str(WORKTREE)}
    env.pop("UDEPLOY_VERBOSE", None)
    began = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "udeploy.engine.cli", "apply", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    out = proc.stdout
    stdout: list[str] = []
    reader = threading.Thread(target=lambda: stdout.append(out.read()), daemon=True)
    reader.start()
    stderr: list[str] = []
    fired = False
    try:
        for line in proc.stderr:
            stderr.append(line)
            if not fired and trigger.matches(line.rstrip("\n")):
                injection.fire()
                fired = True
        proc.wait(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
        seconds = time.monotonic() - began
        injection.undo()
    return Run(proc.returncode, "".join(stdout), "".join(stderr), seconds)


def job_status(cwd: Path, env: dict[str, str], job_id: str, state_args: list[str]) -> dict[str, Any]:
    done = subprocess.run([sys.executable, "-m", "udeploy.engine.cli", "job", "status", job_id, "--tail-bytes",
                           "100000", *state_args], cwd=cwd, env={**os.environ, **env, "PYTHONPATH": str(WORKTREE)},
                          capture_output=True, text=True, timeout=60, check=False)
    status: dict[str, Any] = json.loads(done.stdout)
    return status
