"""`udeploy job status`: a job's state, per-node progress and a bounded tail of its log (O1, O6).

A detached job whose child has not created the job directory yet is answered from its launch record.
"""

from __future__ import annotations

from pathlib import Path

from udeploy.engine.apply.jobs import (
    SMALL_RECORD_LIMIT,
    Job,
    JobNotFound,
    JobRecordCorrupt,
    pid_alive,
    read_record,
    tail_of,
    valid_pid,
)
from udeploy.engine.apply.state import LocalState
from udeploy.engine.state_api import StateBackend

TAIL_BYTES_MAX = 1 << 20  # a tail is for a terminal or a bot comment; the whole log is on disk


def job_status_doc(state: Path, job_id: str, tail_bytes: int, backend: StateBackend | None = None) -> dict[str, object]:
    """The job from `backend` (default: the directory `state`); a detached launch that has not
    created its job yet is answered from the launch record in the local directory."""
    tail_bytes = max(0, min(tail_bytes, TAIL_BYTES_MAX))
    try:
        j = (backend or LocalState(state)).open_job(job_id)
    except JobNotFound:
        launch = state / "jobs" / f"{job_id}.launch.json"
        if not launch.exists() and not launch.is_symlink():
            raise
        return _launch_status(launch, state / "jobs" / f"{job_id}.out", job_id, tail_bytes)
    doc = j.status()
    tail = j.tail(tail_bytes)
    doc["logTail"] = tail or ""
    if tail is None:
        where = j.dir / "log" if isinstance(j, Job) else f"job {job_id}'s log"
        doc["logProblem"] = f"{where} is missing or not a regular file"
    return doc


def _launch_status(launch: Path, out: Path, job_id: str, tail_bytes: int) -> dict[str, object]:
    """A detached job before its child created the job directory: answered from the launch record."""
    record = read_record(launch, SMALL_RECORD_LIMIT, error=JobRecordCorrupt)
    pid = record.get("pid")
    if not valid_pid(pid) or record.get("jobId") != job_id:
        raise JobRecordCorrupt(f"job {job_id}: {launch} is corrupt (jobId or pid missing or wrong)",
                               path=str(launch))
    return {"jobId": job_id, "state": "starting" if pid_alive(pid) else "died", "pid": pid, "nodes": {},
            "note": "the detached apply has not created its job yet (lock and trust checks come first)",
            "logTail": (tail_of(out, tail_bytes) or "") if tail_bytes else ""}
