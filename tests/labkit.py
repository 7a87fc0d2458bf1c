"""Lab fixtures and helpers the lab and provider suites share (imported by their conftests)."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Callable
from typing import Any

import pytest

from tests.conftest import lab_command, require_lab


@pytest.fixture(scope="session")
def lab() -> dict[str, Any]:
    """The lab layout (`scripts/lab env`)."""
    layout: dict[str, Any] = json.loads(lab_command("env"))
    return layout


@pytest.fixture(scope="session")
def require() -> Callable[..., None]:
    """require("registry", ...) fails the test unless those lab components are up."""
    return require_lab


def context_tar(files: dict[str, str]) -> io.BytesIO:
    """An in-memory tar build context (the docker SDK's `custom_context`)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o755
            tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    return buffer
