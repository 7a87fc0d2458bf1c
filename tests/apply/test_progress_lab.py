"""O1, O6 on the lab (issue 14): a real apply's progress on a terminal (a pseudo-terminal) and in plain
lines, and `job status --follow` on real detached applies, with the local state directory and with
the lab's PostgreSQL: it streams, ends with the job, prints what `job status` prints afterwards and
exits 0 for a succeeded job, 1 for a failed one."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.apply.conftest import Lab
from tests.state.conftest import lab_postgres, state_env, state_url  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]
PLAIN = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ \S")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(autouse=True)
def this_checkout(monkeypatch: pytest.MonkeyPatch) -> None:
    """A detached apply's child (and every CLI process here) runs this worktree's code."""
    monkeypatch.setenv("PYTHONPATH", str(REPO))


def plan_findjob(lab: Lab, path: Path) -> None:
    lab.publish("findjob", lab.sample.commits["frontend-v2"])
    r = lab.cli("plan", "--env", "prod", "--service", "findjob", "-out", str(path))
    assert r.exit_code == 0, r.stdout + r.stderr


def under_a_terminal(lab: Lab, *args: str) -> tuple[int, str, str]:
    """`udeploy ARGS` with stderr on a pseudo-terminal and stdout on a pipe: (exit code, stdout, what
    the terminal showed)."""
    leader, follower = pty.openpty()
    env = {**os.environ, **lab.cli.env, "COLUMNS": "160", "LINES": "50", "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "udeploy.engine.cli", *args], cwd=lab.sample.clone, env=env,
                            stdout=subprocess.PIPE, stderr=follower, stdin=subprocess.DEVNULL)
    os.close(follower)
    shown = bytearray()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the process is gone
                break
            if not chunk:
                break
            shown += chunk
        elif proc.poll() is not None:
            break
    os.close(leader)
    stdout = proc.stdout.read().decode() if proc.stdout else ""
    return proc.wait(timeout=30), stdout, shown.decode(errors="replace")


def test_O1_a_real_apply_on_a_terminal_draws_a_live_table_and_stdout_stays_one_json(lab: Lab, tmp_path: Path) -> None:
    plan_findjob(lab, tmp_path / "p.json")
    code, stdout, shown = under_a_terminal(lab, "apply", str(tmp_path / "p.json"), *lab.apply_args())
    assert code == 0, stdout + shown
    result = json.loads(stdout)  # exactly one document, nothing of the display in it
    assert result["state"] == "succeeded" and "\x1b" not in stdout
    assert "\x1b[" in shown and "\x1b[1A" in shown  # redrawn in place: the cursor moves up over the last frame
    text = ANSI.sub("", shown).replace("\r", "\n")
    last = text[text.rindex("node  where"):]
    rows = {line.split()[0]: line.split() for line in last.splitlines() if line.startswith("findjob/")}
    assert set(rows) == set(result["nodes"])
    assert all(row[2] == "succeeded" and re.fullmatch(r"\d+\.\ds", row[3]) for row in rows.values()), rows
    assert any(row[1] == "compose-host@D601" for row in rows.values())
    assert f"{len(rows)} nodes: {len(rows)} succeeded" in last
    assert "planning" not in text and "applying" in text  # job-level phases are printed above the table


def test_O1_a_real_apply_without_a_terminal_prints_one_timestamped_line_per_event(lab: Lab, tmp_path: Path) -> None:
    plan_findjob(lab, tmp_path / "p.json")
    r = lab.cli("apply", str(tmp_path / "p.json"), *lab.apply_args())
    assert r.exit_code == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["state"] == "succeeded"
    lines = r.stderr.splitlines()
    assert lines and all(PLAIN.match(line) for line in lines), r.stderr
    assert "\x1b" not in r.stderr
    said = [line.split(" ", 1)[1] for line in lines]
    assert "findjob/verify-live: running (compose-host@D601)" in said
    assert any(s.startswith("findjob/verify-live: succeeded: ") for s in said)
    assert said[-1] == f"job {r.json['jobId']} succeeded"


def follow(lab: Lab, job_id: str, *state: str) -> tuple[int, dict, list[str]]:
    r = lab.cli("job", "status", job_id, "--follow", "--tail-bytes", "2000", *state)
    return r.exit_code, r.json, r.stderr.splitlines()


def test_O6_follow_a_detached_apply_to_its_end(lab: Lab, tmp_path: Path) -> None:
    plan_findjob(lab, tmp_path / "p.json")
    started = lab.cli("apply", str(tmp_path / "p.json"), "--detach", *lab.apply_args())
    assert started.exit_code == 0, started.stdout
    job_id = started.json["jobId"]
    code, final, lines = follow(lab, job_id, *lab.apply_args())
    assert code == 0 and final["state"] == "succeeded", final
    after = lab.cli("job", "status", job_id, "--tail-bytes", "2000", *lab.apply_args())
    assert after.exit_code == 0 and after.json == final  # the follow ends on exactly what job status says
    assert all(PLAIN.match(line) for line in lines), lines  # a captured stderr is not a terminal
    said = [line.split(" ", 1)[1] for line in lines]
    assert said[-1] == f"job {job_id}: succeeded"
    assert all(any(s.startswith(f"{n}: succeeded") for s in said) for n in final["nodes"]), said
    # the detached child itself wrote plain lines too (its stderr is a file, shared with its stdout's JSON)
    out = (lab.state_dir / "jobs" / f"{job_id}.out").read_text()
    progress, document = out[:out.index("{\n")], out[out.index("{\n"):]
    assert progress and all(PLAIN.match(line) for line in progress.splitlines()), out
    assert json.loads(document)["state"] == "succeeded"


def test_O6_follow_a_failing_job_exits_1(lab: Lab, tmp_path: Path) -> None:
    broken = lab.sample.commit_change("src/components/backend-core/BROKEN", "on purpose\n", "break backend-core")
    lab.publish("backend-core", broken)
    lab.sample.set_pin("prod", "backend-core", broken)
    r = lab.cli("plan", "--env", "prod", "--service", "backend-core", "-out", str(tmp_path / "p.json"))
    assert r.exit_code == 0, r.stdout
    started = lab.cli("apply", str(tmp_path / "p.json"), "--detach", *lab.apply_args())
    job_id = started.json["jobId"]
    code, final, lines = follow(lab, job_id, *lab.apply_args())
    assert code == 1 and final["state"] == "failed", final
    assert lab.cli("job", "status", job_id, "--tail-bytes", "2000", *lab.apply_args()).json == final
    failed = [n for n, rec in final["nodes"].items() if rec["state"] == "failed"]
    assert failed and any(line.split(" ", 1)[1].startswith(f"{failed[0]}: failed: ") for line in lines), lines
    assert lines[-1].endswith(f"job {job_id}: failed")


def test_O6_follow_with_the_shared_postgresql_state(lab: Lab, tmp_path: Path, state_url: str) -> None:  # noqa: F811
    plan_findjob(lab, tmp_path / "p.json")
    shared = ["--state-dir", str(lab.state_dir), "--state-url", state_url]
    started = lab.cli("apply", str(tmp_path / "p.json"), "--detach", *shared)
    assert started.exit_code == 0, started.stdout
    job_id = started.json["jobId"]
    code, final, lines = follow(lab, job_id, *shared)
    assert code == 0 and final["state"] == "succeeded", final
    assert lab.cli("job", "status", job_id, "--tail-bytes", "2000", *shared).json == final
    assert not (lab.state_dir / "jobs" / job_id).exists()  # the job lives in the database
    assert lines[-1].endswith(f"job {job_id}: succeeded")
