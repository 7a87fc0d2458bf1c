"""`udeploy job status`: a job's state, per-node progress and a bounded tail of its log (O1, O6).

A detached job whose child has not created the job directory yet is answered from its launch record.
`follow_job` polls the same document until the job ends, turning each node's state change into a
progress event: it works the same for every state backend, and needs nothing from the apply.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from udeploy.engine.apply.jobs import (
    SMALL_RECORD_LIMIT,
    Job,
    JobNotFound,
    JobRecordCorrupt,
    read_record,
    tail_of,
    valid_pid,
)
from udeploy.engine.apply.progress import NodeState, Progress, ProgressEvent, phase
from udeploy.engine.apply.state import LocalState
from udeploy.engine.state_api import StateBackend, pid_alive

TAIL_BYTES_MAX = 1 << 20  # a tail is for a terminal or a bot comment; the whole log is on disk
ACTIVE = ("starting", "running")  # every other job state is final: succeeded, failed, refused, died
POLL_SECONDS = 0.5


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


def follow_job(state: Path, job_id: str, tail_bytes: int, backend: StateBackend | None, progress: Progress, *,
               poll_seconds: float = POLL_SECONDS, sleep: Callable[[float], None] = time.sleep) -> dict[str, object]:
    """Report the job's changes as they happen, until it is no longer starting or running (a job
    whose process is gone reads as `died`, which ends the follow too); then its final document."""
    seen: dict[str, tuple[str, str]] = {}  # node -> (state, at) already reported
    last_state = None
    while True:
        doc = job_status_doc(state, job_id, 0, backend)
        events = _node_changes(doc.get("nodes"), seen)
        if doc["state"] != last_state:
            last_state = doc["state"]
            said = phase(f"job {job_id}: {last_state}" + (f" ({doc['diedNote']})" if doc.get("diedNote") else ""))
            events = [said, *events] if last_state in ACTIVE else [*events, said]  # the job's end comes last
        for event in events:
            progress(event)
        if last_state not in ACTIVE:
            return job_status_doc(state, job_id, tail_bytes, backend)
        sleep(poll_seconds)


def _node_changes(nodes: object, seen: dict[str, tuple[str, str]]) -> list[ProgressEvent]:
    """The node records that changed since `seen`, as events in the order they happened. Records
    are read as untrusted: one with an unknown state or time is left out, never a crash."""
    if not isinstance(nodes, Mapping):
        return []
    found: list[ProgressEvent] = []
    for node_id, record in nodes.items():
        if not isinstance(node_id, str) or not isinstance(record, Mapping):
            continue
        event = _event_of(node_id, record)
        key = (str(record.get("state")), str(record.get("at")))
        if event is None or seen.get(node_id) == key:
            continue
        seen[node_id] = key
        found.append(event)
    return sorted(found, key=lambda e: e.at)


def _event_of(node_id: str, record: Mapping[str, Any]) -> ProgressEvent | None:
    try:
        state = NodeState(record.get("state"))
    except ValueError:
        return None
    at = record.get("at")
    when = dt.datetime.now(dt.UTC)
    if isinstance(at, str):
        try:
            when = dt.datetime.fromisoformat(at)
        except ValueError:
            return None
    message = record.get("message")
    return ProgressEvent(node=node_id, state=state, message=message if isinstance(message, str) else "",
                         at=when if when.tzinfo else when.replace(tzinfo=dt.UTC))
