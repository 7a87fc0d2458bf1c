"""Fixtures shared by every test: the sample monorepo as real git, and the CLI.

The sample repo is materialized with `tests.sample_repo` (a bare origin, a clone, real commits,
`insteadOf` mapping the GitHub URL to the bare repo). Its git config is scoped by environment
variables that these fixtures set for the test's duration, never the user's ~/.gitconfig.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
from typer.testing import CliRunner

from tests.sample_repo import SampleRepo, materialize
from udeploy.engine.cli import app
from udeploy.engine.load.jsonschema_check import check

# The lab and provider suites' shared fixtures (`lab` layout, `require`). tests/apply defines its
# own `lab` (a per-test slice of the lab), which pytest lets it override there.
pytest_plugins = ["tests.labkit"]

LAB_SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "lab"


def lab_command(*args: str) -> str:
    """`scripts/lab ARGS` output; a failure fails the test, saying how to start the lab."""
    result = subprocess.run([str(LAB_SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        pytest.fail(f"lab not running: run `scripts/lab up` (`scripts/lab {' '.join(args)}` failed: "
                    f"{result.stderr.strip()})", pytrace=False)
    return result.stdout


def require_lab(*components: str) -> None:
    """Fail (never skip) unless these lab components are up, naming the down ones and their logs."""
    status = json.loads(lab_command("status"))["components"]
    down = [c for c in components if not status.get(c, {}).get("up")]
    if down:
        logs = ", ".join(f"{c}: {status[c]['log']}" for c in down if c in status)
        pytest.fail(f"lab not running: run `scripts/lab up` (down: {', '.join(down)}; logs: {logs})",
                    pytrace=False)


@attrs.frozen
class CliResult:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)


@attrs.define
class Cli:
    """Runs `udeploy ...` in-process from the sample clone, with the sample's git environment."""

    cwd: Path
    env: dict[str, str]

    def __call__(self, *args: str) -> CliResult:
        old = Path.cwd()
        os.chdir(self.cwd)
        try:
            result = CliRunner().invoke(app, list(args), env=self.env, catch_exceptions=False)
        finally:
            os.chdir(old)
        if args[:1] == ("plan",) and result.exit_code in (0, 2):
            check_plan_schema(result.stdout)
        return CliResult(result.exit_code, result.stdout, result.stderr)


def check_plan_schema(stdout: str) -> None:
    """Every plan a test makes must pass the plan schema: udeploy checks it only where it reads a
    plan (`read_plan`), not when it writes one (`engine.plan.planfile`)."""
    try:
        doc = json.loads(stdout)
    except ValueError:
        return  # --format text or markdown
    if isinstance(doc, dict) and "formatVersion" in doc:
        check(doc, "plan", "stdout of udeploy plan")


def _env_for(sample: SampleRepo, cache: Path) -> dict[str, str]:
    return {**sample.env, "UDEPLOY_CACHE_DIR": str(cache)}


@pytest.fixture
def sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SampleRepo:
    """A fresh sample monorepo (origin + clone) for one test; its git env is active."""
    repo = materialize(tmp_path / "sample")
    for k, v in _env_for(repo, tmp_path / "cache").items():
        monkeypatch.setenv(k, v)
    return repo


@pytest.fixture
def colliding_sample(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> SampleRepo:
    """Like `sample`, with two real commits whose short SHAs collide."""
    repo = materialize(tmp_path / "sample", colliding_short_sha=True)
    for k, v in _env_for(repo, tmp_path / "cache").items():
        monkeypatch.setenv(k, v)
    return repo


@pytest.fixture
def cli(sample: SampleRepo, tmp_path: Path) -> Cli:
    return Cli(cwd=sample.clone, env=_env_for(sample, tmp_path / "cache"))


@pytest.fixture
def colliding_cli(colliding_sample: SampleRepo, tmp_path: Path) -> Cli:
    return Cli(cwd=colliding_sample.clone, env=_env_for(colliding_sample, tmp_path / "cache"))


@pytest.fixture(scope="session")
def shared_sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SampleRepo, Cli]]:
    """One sample repo for read-only tests (do not commit to it)."""
    root = tmp_path_factory.mktemp("shared")
    repo = materialize(root / "sample")
    env = _env_for(repo, root / "cache")
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    yield repo, Cli(cwd=repo.clone, env=env)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
