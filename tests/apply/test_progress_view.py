"""O1: how apply progress reads on stderr (issue 14), without the lab: the plain line format, the live
table on a forced terminal, and `follow_job` over a real job directory that changes under it.
The same views on a real apply and a real detached job are in test_progress_lab.py."""

from __future__ import annotations

import datetime as dt
import io
import re
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from udeploy.engine.apply.job_status import follow_job
from udeploy.engine.apply.jobs import Job
from udeploy.engine.apply.progress import NodeState, ProgressEvent
from udeploy.engine.cli.progress_view import LiveView, PlainView, plain_line, watching

AT = dt.datetime(2026, 11, 30, 23, 59, 1, 250000, tzinfo=dt.UTC)


def event(node: str, state: NodeState, message: str = "", seconds: float = 0) -> ProgressEvent:
    return ProgressEvent(node=node, state=state, message=message, where="compose-host@main-server",
                         at=AT + dt.timedelta(seconds=seconds))


def test_plain_lines_are_timestamped_one_per_event() -> None:
    assert plain_line(event("backend-core/recreate", NodeState.RUNNING)) == \
        "2026-11-30T23:59:01Z backend-core/recreate: running (compose-host@main-server)"
    assert plain_line(event("backend-core/recreate", NodeState.SUCCEEDED, "recreated 1 container")) == \
        "2026-11-30T23:59:01Z backend-core/recreate: succeeded: recreated 1 container"
    assert plain_line(event("frontend/stamp", NodeState.SKIPPED)) == "2026-11-30T23:59:01Z frontend/stamp: skipped"
    assert plain_line(ProgressEvent(message="planning", at=AT)) == "2026-11-30T23:59:01Z planning"
    local = AT.astimezone(dt.timezone(dt.timedelta(hours=8)))  # always shown in UTC
    assert plain_line(ProgressEvent(message="x", at=local)).startswith("2026-11-30T23:59:01Z ")


def test_not_a_terminal_gives_plain_lines() -> None:
    out = io.StringIO()
    with watching(out) as progress:
        assert isinstance(progress, PlainView)
        progress(event("a/verify-live", NodeState.FAILED, "live commit is 1234567, not abcdef0"))
    assert out.getvalue() == "2026-11-30T23:59:01Z a/verify-live: failed: live commit is 1234567, not abcdef0\n"


def test_a_terminal_gets_a_live_table_of_every_node() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=140, color_system="standard")
    with watching(console=console) as progress:
        assert isinstance(progress, LiveView)
        progress(ProgressEvent(message="applying 3 nodes in env-prod", at=AT))
        for node in ("backend-core/recreate", "backend-core/verify-live", "frontend/recreate"):
            progress(event(node, NodeState.PENDING))
        progress(event("backend-core/recreate", NodeState.RUNNING, seconds=1))
        progress(event("backend-core/recreate", NodeState.SUCCEEDED, "recreated", seconds=3.5))
        progress(event("backend-core/verify-live", NodeState.RUNNING, seconds=3.5))
        progress(event("backend-core/verify-live", NodeState.FAILED, "health /health answered 502", seconds=4))
        progress(event("frontend/recreate", NodeState.SKIPPED, "an upstream node did not succeed", seconds=4))
    text = out.getvalue()
    assert "\x1b[" in text  # drawn with terminal control sequences (cursor moves, colours)
    final = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", text)
    last_frame = final[final.rindex("node  where"):]  # the last frame drawn
    rows = {line.split()[0]: line.split() for line in last_frame.splitlines() if "/" in line}
    assert rows["backend-core/recreate"][1:4] == ["compose-host@main-server", "succeeded", "2.5s"]
    assert rows["backend-core/verify-live"][2:4] == ["failed", "0.5s"]
    assert "health /health answered 502" in last_frame
    assert rows["frontend/recreate"][2] == "skipped"
    assert "3 nodes: 1 succeeded, 1 failed, 1 skipped" in last_frame
    assert "2026-11-30T23:59:01Z applying 3 nodes in env-prod" in final


def test_a_running_node_shows_its_elapsed_time_while_it_runs() -> None:
    view = LiveView(Console(file=io.StringIO(), force_terminal=True, width=120))
    view(ProgressEvent(node="n/recreate", state=NodeState.RUNNING, at=dt.datetime.now(dt.UTC)
                       - dt.timedelta(seconds=75)))
    console = Console(file=io.StringIO(), width=120)
    console.print(view.render())
    assert re.search(r"n/recreate\s+running\s+1m1[56]s", console.file.getvalue())  # type: ignore[attr-defined]


def test_follow_reports_each_change_then_returns_the_final_document(tmp_path: Path) -> None:
    job = Job.create(tmp_path, plan_digest="sha256:x", plan_file=None, environment="dev", dry_run=False,
                     nodes=["a/recreate", "a/verify-live"])
    steps = iter([lambda: job.node("a/recreate", "running"),
                  lambda: (job.node("a/recreate", "succeeded", message="recreated"),
                           job.node("a/verify-live", "running")),
                  lambda: (job.node("a/verify-live", "succeeded", message="live at abc"),
                           job.finish("succeeded", {"state": "succeeded"}))])
    seen: list[ProgressEvent] = []
    doc = follow_job(tmp_path, job.id, 4096, None, seen.append, sleep=lambda _: next(steps)())
    assert doc["state"] == "succeeded" and doc["logTail"] == ""
    said = [plain_line(e).split(" ", 1)[1] for e in seen]
    assert said == [f"job {job.id}: running", "a/recreate: pending", "a/verify-live: pending", "a/recreate: running",
                    "a/recreate: succeeded: recreated", "a/verify-live: running",
                    "a/verify-live: succeeded: live at abc", f"job {job.id}: succeeded"]


def test_follow_ends_when_the_job_s_process_is_gone(tmp_path: Path) -> None:
    job = Job.create(tmp_path, plan_digest="sha256:x", plan_file=None, environment="dev", dry_run=False,
                     nodes=["a/recreate"])
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    job._update(lambda d: d.update(pid=int(gone.stdout)))  # the apply's process exited without finishing
    seen: list[ProgressEvent] = []
    doc = follow_job(tmp_path, job.id, 0, None, seen.append, sleep=lambda _: None)
    assert doc["state"] == "died"
    assert seen[-1].message.startswith(f"job {job.id}: died (process ")
