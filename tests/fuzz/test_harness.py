"""issue 9: the fuzz harness can fail. Each detector is shown a real violation (a child that
hangs, an exception escaping the CLI, a traceback, a non-JSON stdout, a marker file a payload
left) and must report it; a fuzz run that cannot see these would report 0 for nothing."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.fuzz.harness import MARK, Prepared, Run, Workspace, check, markers, run_forked, surroundings


def _sleeps(argv: tuple[str, ...]) -> int:
    time.sleep(60)
    return 0


def _raises(argv: tuple[str, ...]) -> int:
    raise RecursionError("maximum recursion depth exceeded")


def _touches(argv: tuple[str, ...]) -> int:
    Path(argv[0]).touch()
    print(json.dumps({"ok": True}))
    return 0


def _writes_a_surrogate(argv: tuple[str, ...]) -> int:
    print('{"id": "\ud800"}')
    return 0


def test_issue9_harness_kills_and_reports_a_hung_child(tmp_path: Path) -> None:
    (tmp_path / "ex").mkdir()
    started = time.monotonic()
    run = run_forked(("x",), tmp_path / "ex", {}, limit=1.0, invoke=_sleeps)
    assert run.hung and time.monotonic() - started < 10
    assert check(run, Prepared(("x",), True))[0][0] == "hang"


def test_issue9_harness_reports_an_exception_escaping_the_cli(tmp_path: Path) -> None:
    (tmp_path / "ex").mkdir()
    run = run_forked(("x",), tmp_path / "ex", {}, invoke=_raises)
    assert run.uncaught is not None and "RecursionError" in run.uncaught
    assert check(run, Prepared(("x",), True))[0][0] == "uncaught"


def test_issue9_harness_sees_what_a_child_wrote(tmp_path: Path) -> None:
    (tmp_path / "ex").mkdir()
    marker = tmp_path / "ex" / f"{MARK}-rel"
    run = run_forked((str(marker),), tmp_path / "ex", {}, invoke=_touches)
    assert run.exit_code == 0 and json.loads(run.stdout) == {"ok": True}
    assert marker.exists()


def test_issue9_harness_stdout_is_a_real_utf8_console(tmp_path: Path) -> None:
    """A lone surrogate cannot reach a UTF-8 stdout: the print itself fails, as in a shell."""
    (tmp_path / "ex").mkdir()
    run = run_forked(("x",), tmp_path / "ex", {}, invoke=_writes_a_surrogate)
    assert run.uncaught is not None and "UnicodeEncodeError" in run.uncaught


def test_issue9_invariants_flag_traceback_internal_error_non_json_and_bad_exit() -> None:
    wrapped = Run(1, json.dumps({"error": {"code": "internal-error", "message": "ValueError: x", "path": None}}),
                  'Traceback (most recent call last):\n  File "engine/x.py", line 3, in f\nValueError: x\n')
    assert {c for c, _ in check(wrapped, Prepared((), True))} == {"traceback", "internal-error"}
    assert [c for c, _ in check(Run(0, "digraph {}", ""), Prepared((), True))] == ["non-json"]
    assert check(Run(0, "digraph {}", ""), Prepared((), False)) == []
    assert [c for c, _ in check(Run(1, "digraph {}", ""), Prepared((), False))] == ["non-json"]
    assert [c for c, _ in check(Run(7, "{}", ""), Prepared((), True))] == ["bad-exit"]
    believed = Prepared((), True, believe=lambda run: "accepted" if run.exit_code == 0 else None)
    assert [c for c, _ in check(Run(0, "{}", ""), believed)] == ["believed"]


def test_issue9_harness_sees_a_write_outside_the_example_and_a_marker(tmp_path: Path) -> None:
    ws = Workspace(root=tmp_path, clone=tmp_path / "clone", gitdir=tmp_path / "clone" / ".git", env={}, plan_doc={},
                   deploy_doc={}, config_doc={}, ci_doc={}, examples=tmp_path / "examples")
    (tmp_path / "clone" / "deploy").mkdir(parents=True)
    ws.examples.mkdir()
    ex = ws.new_example_dir()
    before = surroundings(ws)
    run_forked((str(ws.clone / "deploy" / "x.yaml"),), ex, {}, invoke=_touches)
    run_forked((str(ex / "sub" / f"{MARK}-rel"),), ex, {}, invoke=lambda argv: (ex / "sub").mkdir() or _touches(argv))
    assert surroundings(ws) - before == {"clone/deploy/x.yaml"}
    assert markers(ws, ex) == [str(ex / "sub" / f"{MARK}-rel")]
