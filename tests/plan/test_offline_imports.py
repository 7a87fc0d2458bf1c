"""An offline plan (`udeploy plan --no-refresh`) reads nothing from any provider, so it should not pay
for their clients, nor for the other commands' engine code (issue 11: interpreter start and imports
were a fifth of a 1000-service offline plan). Run in a fresh interpreter: pytest has imported more."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.sample_repo import SampleRepo

ROOT = Path(__file__).resolve().parents[2]
# Runs the console script, then prints the names of every module it ran as JSON on stderr. A module a
# provider names lazily (providers/lazy.py) sits in sys.modules unexecuted until used: not counted.
RUNNER = """
import atexit, json, sys
from importlib.util import _LazyModule
ran = lambda: sorted(n for n, m in list(sys.modules.items()) if not isinstance(m, _LazyModule))
atexit.register(lambda: sys.stderr.write("\\nMODULES " + json.dumps(ran()) + "\\n"))
sys.argv = ["udeploy", *sys.argv[1:]]
from udeploy.engine.cli import main
main()
"""
OTHER_COMMANDS = ("udeploy.engine.apply.start", "udeploy.engine.apply.run", "udeploy.engine.checks",
                  "udeploy.engine.ci")
CLIENTS = ("docker", "kubernetes", "fabric", "paramiko")


def offline_plan_modules(sample: SampleRepo) -> set[str]:
    done = subprocess.run([sys.executable, "-c", RUNNER, "plan", "--env", "dev", "--no-refresh"], cwd=sample.clone,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(done.stdout)["refreshed"] is False
    line = next(x for x in done.stderr.splitlines() if x.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES ")))


def imported(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules for n in names if m == n or m.startswith(n + "."))


def test_an_offline_plan_imports_no_other_command_s_engine_code(sample: SampleRepo) -> None:
    assert imported(offline_plan_modules(sample), OTHER_COMMANDS) == []


def test_an_offline_plan_imports_no_provider_client(sample: SampleRepo) -> None:
    assert {m.split(".")[0] for m in imported(offline_plan_modules(sample), CLIENTS)} == set()


def test_a_plan_orders_its_graph_without_networkx(sample: SampleRepo) -> None:
    """networkx costs a tenth of a second to import; the plan's graph orders itself (engine/plan/graph.py)."""
    assert imported(offline_plan_modules(sample), ("networkx",)) == []
