"""The sample monorepo copy every validate test starts from, and the sandbox engine D5 runs on."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.validate.support import FIXTURE


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the sample monorepo's working tree."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "repo"))


@pytest.fixture(autouse=True)
def sandbox_engine(lab: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> str:
    """D5 runs the db-guard script in a container (issue 9): on the lab's main engine, as an operator would say."""
    engine = str(lab["main"]["docker_host"])
    monkeypatch.setenv("UDEPLOY_SANDBOX_DOCKER_HOST", engine)
    return engine
