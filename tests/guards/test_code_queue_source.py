"""G1: `udeploy guard code-queue-source --root DIR` and `check_code_queue_source`, the function
the apply path calls before any rollout that touches the Code Queue hostPath source.

The sample tree passes; the partial sync the spec names (index.ts imports ./runtime-preflight,
runtime-preflight.ts is gone) fails; so does a missing root. import_cases.yaml covers each syntax.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

import udeploy.engine.cli.guard  # noqa: F401  (registers `guard` on the app)
from udeploy.engine.cli import app
from udeploy.engine.load.source_guard import CODE_QUEUE_SOURCE, DegradedReason, check_code_queue_source

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "unidesk-sample"
SRC = str(CODE_QUEUE_SOURCE)
CASES = yaml.safe_load((Path(__file__).parent / "import_cases.yaml").read_text())


def guard(root: Path) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["guard", "code-queue-source", "--root", str(root)], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


@pytest.fixture
def sample_root(tmp_path: Path) -> Path:
    """A deploy root holding a copy of the sample's Code Queue source, as synced to /home/ubuntu/cq-deploy."""
    root = tmp_path / "cq-deploy"
    shutil.copytree(FIXTURE / CODE_QUEUE_SOURCE, root / CODE_QUEUE_SOURCE)
    return root


def test_G1_the_sample_tree_passes(sample_root: Path) -> None:
    code, doc = guard(sample_root)
    assert code == 0
    assert doc == {"ok": True, "root": str(sample_root), "sourceDir": SRC, "scanned": 8, "relativeImports": 12,
                   "degradedReason": None, "missing": [], "unreadable": []}


def test_G1_missing_runtime_preflight_is_deploy_degraded(sample_root: Path) -> None:
    (sample_root / CODE_QUEUE_SOURCE / "runtime-preflight.ts").unlink()
    code, doc = guard(sample_root)
    assert code == 1
    assert doc["ok"] is False and doc["degradedReason"] == "missing-relative-import-target"
    assert doc["missing"] == [{
        "importer": f"{SRC}/index.ts", "specifier": "./runtime-preflight", "target": f"{SRC}/runtime-preflight.ts",
        "tried": [f"{SRC}/runtime-preflight.ts", f"{SRC}/runtime-preflight.tsx", f"{SRC}/runtime-preflight/index.ts",
                  f"{SRC}/runtime-preflight/index.tsx"]}]


def test_G1_missing_root_is_source_root_missing(tmp_path: Path) -> None:
    code, doc = guard(tmp_path / "cq-deploy")
    assert code == 1
    assert (doc["ok"], doc["degradedReason"], doc["scanned"], doc["missing"]) == (
        False, "source-root-missing", 0, [])


def test_G1_root_without_the_code_queue_source_is_source_root_missing(tmp_path: Path) -> None:
    (tmp_path / "cq-deploy" / "src").mkdir(parents=True)
    code, doc = guard(tmp_path / "cq-deploy")
    assert code == 1 and doc["degradedReason"] == "source-root-missing"


def test_G1_runs_on_the_path_as_mounted_through_a_symlink(sample_root: Path, tmp_path: Path) -> None:
    """The historical worktree name linked to the real one: the guard still checks the real files."""
    link = tmp_path / "unidesk-code-queue-deploy"
    link.symlink_to(sample_root)
    (sample_root / CODE_QUEUE_SOURCE / "routes" / "health.ts").unlink()
    code, doc = guard(link)
    assert code == 1
    assert [(m["importer"], m["specifier"]) for m in doc["missing"]] == [
        (f"{SRC}/routes/http.ts", "./health"), (f"{SRC}/routes/index.ts", "./health")]


def test_G1_the_apply_path_function_returns_a_typed_result(sample_root: Path) -> None:
    assert check_code_queue_source(sample_root).ok
    (sample_root / CODE_QUEUE_SOURCE / "config.ts").unlink()
    result = check_code_queue_source(sample_root)
    assert not result.ok and result.degraded_reason is DegradedReason.MISSING_RELATIVE_IMPORT_TARGET
    assert sorted({m.importer for m in result.missing}) == [
        f"{SRC}/index.ts", f"{SRC}/routes/http.ts", f"{SRC}/runtime-preflight.ts", f"{SRC}/workers/reconcile.ts",
        f"{SRC}/workers/scheduler.ts"]
    assert {m.target for m in result.missing} == {f"{SRC}/config.ts"}


@pytest.mark.parametrize("case", [pytest.param(c, id=c["id"]) for c in CASES])
def test_G1_import_syntax_cases(tmp_path: Path, case: dict[str, Any]) -> None:
    root = tmp_path / "root"
    for name, text in case["files"].items():
        file = root / CODE_QUEUE_SOURCE / name
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(text)
    code, doc = guard(root)
    expected = [{"importer": f"{SRC}/{m['importer']}", "specifier": m["specifier"], "target": f"{SRC}/{m['target']}"}
                for m in case["missing"]]
    assert [{k: m[k] for k in ("importer", "specifier", "target")} for m in doc["missing"]] == expected
    assert (code, doc["degradedReason"]) == ((1, "missing-relative-import-target") if expected else (0, None))
