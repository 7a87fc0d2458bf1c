"""`apply --detach`: spool the plan, start a child `udeploy apply` in its own session, return at once.

The child creates the job after it took the lock and passed the trust checks; until then
`job status` answers from the launch record written here, so a child that dies early is reported.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from udeploy.engine.apply.jobs import check_state_folder, new_job_id
from udeploy.engine.load.input_files import MAX_PLAN_BYTES, read_input
from udeploy.engine.plan.model import Plan
from udeploy.engine.plan.planfile import write_plan


def detach(plan: Plan, path: Path | None, state: Path, repo: Path, dry_run: bool, parallelism: int,
           extra_args: list[str] | None = None, *, state_url: str | None = None) -> dict[str, Any]:
    """Start the apply of `plan` (the file at `path`, or spooled when it was planned in one step) in
    the background; the launch document names the job id and how to follow it. The spool and the
    launch record stay in the local `state` directory; a shared `state_url` reaches the child
    through its environment (never its command line, where `ps` would show a password)."""
    job_id = new_job_id()
    spool = state / "jobs" / f"{job_id}.plan.json"
    check_state_folder(state)
    check_state_folder(spool.parent)
    spool.parent.mkdir(parents=True, exist_ok=True)
    if path is None:
        write_plan(plan, spool)
    else:
        spool.write_bytes(read_input(path, label="plan", max_bytes=MAX_PLAN_BYTES))  # exactly the reviewed bytes
    args = [sys.executable, "-m", "udeploy.engine.cli", "apply", str(spool.resolve()), "--job-id", job_id,
            "--state-dir", str(state.resolve()), "--repo", str(repo.resolve()), "--parallelism", str(parallelism)]
    if dry_run:
        args.append("--dry-run")
    args += extra_args or []  # e.g. the parent's --timeout options
    env = os.environ.copy()
    if state_url:
        env["UDEPLOY_STATE_URL"] = state_url
    with open(state / "jobs" / f"{job_id}.out", "ab") as out:
        child = subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True,
                                 env=env)
    (state / "jobs" / f"{job_id}.launch.json").write_text(json.dumps({"jobId": job_id, "pid": child.pid}))
    return {"jobId": job_id, "state": "started", "pid": child.pid, "statusCommand": f"udeploy job status {job_id}"}
