"""Issue 10 item 6: the distribution installs one import name, `udeploy`; the top-level folders
engine/, providers/ and schemas/ ship as its subpackages, never as generic top-level modules."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_wheel_holds_only_the_udeploy_package(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    [wheel] = tmp_path.glob("udeploy-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"udeploy", wheel.name.split("-py")[0] + ".dist-info"}
    for module in ("udeploy/engine/cli/main.py", "udeploy/providers/git.py", "udeploy/schemas/plan.schema.json"):
        assert module in names, module
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "udeploy = udeploy.engine.cli:main" in entry_points
    assert "git = udeploy.providers.git:GitProvider" in entry_points
