"""The sample monorepo copy every validate test starts from."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.validate.support import FIXTURE


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A copy of the sample monorepo's working tree."""
    return Path(shutil.copytree(FIXTURE, tmp_path / "repo"))
