"""Jobs: every apply is a job under `<state>/jobs/<jobId>/` (O1, O6).

A job directory holds `status.json` (the job's state, its pid, and one record per node) and
`log` (append-only, one line per event). A job whose process died without finishing is reported
as `died`, never as running forever. Nothing here ever writes a secret value: callers log node
messages, which providers keep to names, booleans and lengths.

State files are read as untrusted (issue 9): anyone who can write the state directory can leave
junk there. A job id given on the command line must match `new_job_id()`'s grammar, so it can
never name a path outside `<state>/jobs/`. Every record is read with a size cap, without
blocking (a FIFO is not a record), and checked for the fields udeploy relies on; a record that
fails is `job-record-corrupt` (or `state-record-corrupt`) naming the file, never a traceback.
`list_jobs` reports such an entry as `state: "unreadable"` and goes on with the others.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import re
import secrets
import socket
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeGuard

from udeploy.engine.errors import InputTooLarge, UsageError
from udeploy.engine.load.input_files import open_regular
from udeploy.engine.load.jsonschema_check import parse_json
from udeploy.engine.state_api import JobNotFound as JobNotFound  # re-exported: their home was here
from udeploy.engine.state_api import JobRecordCorrupt as JobRecordCorrupt
from udeploy.engine.state_api import StateRecordCorrupt as StateRecordCorrupt
from udeploy.engine.state_api import StateUnusable as StateUnusable
from udeploy.engine.state_api import pid_alive

JOB_ID = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")  # new_job_id()'s format
PID_MAX = 2**22  # the kernel's largest pid_max: a pid beyond it was never a process
RECORD_LIMIT = 16 * 2**20  # a status.json of thousands of nodes is well under this
SMALL_RECORD_LIMIT = 64 * 2**10  # locks and launch records are a few hundred bytes


def check_job_id(job_id: str, argument: str) -> str:
    """A job id from the command line: exactly `new_job_id()`'s format, so never a path."""
    if not JOB_ID.fullmatch(job_id):
        raise UsageError(f"{argument}: {ascii(job_id)[:80]} is not a job id (like 20261130T120000Z-0a1b2c)",
                         path=argument)
    return job_id


def valid_pid(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= PID_MAX


def check_state_folder(folder: Path) -> None:
    """`folder` is absent or a directory; anything else is `state-unusable`."""
    if (folder.exists() or folder.is_symlink()) and not folder.is_dir():
        raise StateUnusable(f"{folder} is not a directory", path=str(folder))


def read_record_bytes(path: Path, limit: int, error: type[StateRecordCorrupt] = StateRecordCorrupt) -> bytes:
    """The bytes of a regular file of at most `limit` bytes. `FileNotFoundError` passes through;
    anything else that is not such a file is `error` naming it. Opened without blocking, so a
    FIFO planted as a record cannot hang the command."""
    try:
        f = open_regular(path)
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise error(f"{path} cannot be read: {exc.strerror or exc}", path=str(path)) from None
    with f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise error(f"{path} is larger than {limit} bytes", path=str(path))
    return data


def parse_record(data: bytes, path: Path, error: type[StateRecordCorrupt] = StateRecordCorrupt) -> dict[str, Any]:
    """A JSON object, or `error` naming the file (deep nesting and huge integers included)."""
    try:
        doc = parse_json(data, str(path), error=error, max_bytes=len(data))
    except InputTooLarge as exc:
        raise error(exc.message, path=str(path)) from None
    if not isinstance(doc, dict):
        raise error(f"{path} is not a JSON object", path=str(path))
    return doc


def read_record(path: Path, limit: int = RECORD_LIMIT,
                error: type[StateRecordCorrupt] = StateRecordCorrupt) -> dict[str, Any]:
    return parse_record(read_record_bytes(path, limit, error), path, error)


def tail_of(path: Path, max_bytes: int) -> str | None:
    """The last `max_bytes` of a regular file, or None when there is no such file."""
    try:
        f = open_regular(path)
    except OSError:
        return None
    with f:
        f.seek(max(0, os.fstat(f.fileno()).st_size - max_bytes))
        return f.read(max_bytes).decode(errors="replace")


def default_state_dir() -> Path:
    return Path(os.environ.get("UDEPLOY_STATE_DIR", ".state"))


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def new_job_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)



class Job:
    """One job's directory. Thread-safe: the walk updates nodes from several threads."""

    def __init__(self, root: Path, job_id: str) -> None:
        self.id = check_job_id(job_id, "JOB")
        self.dir = root / "jobs" / job_id
        self._lock = threading.Lock()

    @classmethod
    def create(cls, state_dir: Path, *, plan_digest: str, plan_file: str | None, environment: str | None,
               dry_run: bool, nodes: list[str], job_id: str | None = None) -> Job:
        job = cls(state_dir, job_id or new_job_id())
        check_state_folder(state_dir)
        check_state_folder(job.dir.parent)
        job.dir.mkdir(parents=True, exist_ok=False)
        job._write({"jobId": job.id, "state": "running", "pid": os.getpid(), "owner": getpass.getuser(),
                    "host": socket.gethostname(), "planDigest": plan_digest,
                    "planFile": plan_file, "environment": environment, "dryRun": dry_run, "startedAt": now(),
                    "finishedAt": None, "nodes": {n: {"state": "pending"} for n in nodes}, "result": None})
        (job.dir / "log").touch()
        return job

    @classmethod
    def open(cls, state_dir: Path, job_id: str) -> Job:
        job = cls(state_dir, job_id)
        check_state_folder(state_dir)
        check_state_folder(job.dir.parent)
        if job.dir.is_symlink() or (job.dir.exists() and not job.dir.is_dir()):
            raise JobRecordCorrupt(f"job {job_id}: {job.dir} is not a directory", path=str(job.dir))
        if not (job.dir / "status.json").exists() and not (job.dir / "status.json").is_symlink():
            raise JobNotFound(f"no job {job_id} under {state_dir / 'jobs'}", path=job_id)
        return job

    def status(self) -> dict[str, Any]:
        """status.json, checked for what udeploy relies on; a running job whose pid is gone has died."""
        path = self.dir / "status.json"
        try:
            doc = read_record(path, error=JobRecordCorrupt)
        except FileNotFoundError:
            raise JobRecordCorrupt(f"job {self.id}: {path} disappeared", path=str(path)) from None
        problems = [f"{k} is missing" for k in ("jobId", "state", "pid") if k not in doc]
        if "state" in doc and not isinstance(doc["state"], str):
            problems.append("state is not a string")
        if "pid" in doc and not valid_pid(doc["pid"]):
            problems.append(f"pid is not a process id (an integer from 1 to {PID_MAX})")
        if "nodes" in doc and not isinstance(doc["nodes"], dict):
            problems.append("nodes is not an object")
        if problems:
            raise JobRecordCorrupt(f"job {self.id}: {path} is corrupt: {'; '.join(problems)}", path=str(path),
                                   details={"problems": problems})
        if doc["state"] == "running" and not pid_alive(doc["pid"]):
            doc["state"] = "died"
            doc["diedNote"] = f"process {doc['pid']} ended without finishing the job"
        return doc

    def log(self, message: str) -> None:
        with self._lock, open(self.dir / "log", "a") as f:
            f.write(f"{now()} {message}\n")

    def tail(self, max_bytes: int) -> str | None:
        """The end of the log, or None when it is missing or not a regular file."""
        return tail_of(self.dir / "log", max_bytes)

    def node(self, node_id: str, state: str, **facts: Any) -> None:
        def change(d: dict[str, Any]) -> None:
            record = d["nodes"].setdefault(node_id, {})
            record.update(state=state, at=now(), **facts)
        self._update(change)

    def finish(self, state: str, result: Mapping[str, Any]) -> None:
        self._update(lambda d: d.update(state=state, finishedAt=now(), result=dict(result)))

    def _update(self, change: Any) -> None:
        with self._lock:
            doc = json.loads((self.dir / "status.json").read_text())
            change(doc)
            self._write(doc)

    def _write(self, doc: Mapping[str, Any]) -> None:
        tmp = self.dir / "status.json.tmp"
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(self.dir / "status.json")


LISTED = ("jobId", "state", "environment", "dryRun", "startedAt", "finishedAt", "planDigest")


def list_jobs(state_dir: Path) -> list[dict[str, Any]]:
    """Every job directory, oldest first; one that cannot be read is listed as `unreadable`."""
    check_state_folder(state_dir)
    root = state_dir / "jobs"
    check_state_folder(root)
    if not root.exists():
        return []
    out = []
    for entry in sorted(root.iterdir()):
        listed = _listed(state_dir, entry)
        if listed is not None:
            out.append(listed)
    return out


def job_results(state_dir: Path, environment: str) -> list[dict[str, Any]]:
    """`StateBackend.job_results` for a state directory: finished, non-dry-run jobs of `environment`
    whose result lists services, newest first. A record that cannot be read is left out (`job list`
    shows it as unreadable); history is what the readable records say."""
    found = []
    for listed in list_jobs(state_dir):
        if listed["state"] not in ("succeeded", "failed") or listed["dryRun"] or \
                listed["environment"] != environment:
            continue
        try:
            doc = Job(state_dir, listed["jobId"]).status()
        except StateRecordCorrupt:
            continue
        result = doc.get("result")
        if isinstance(result, dict) and isinstance(result.get("services"), list):
            doc.pop("nodes", None)
            found.append(doc)
    return sorted(found, key=lambda d: (str(d.get("finishedAt") or ""), d["jobId"]), reverse=True)


def _listed(state_dir: Path, entry: Path) -> dict[str, Any] | None:
    """A job's summary; None for the detached-launch files beside the job directories, and for a
    directory apply is still creating (no status.json yet)."""
    if not JOB_ID.fullmatch(entry.name):
        if entry.is_dir() and not entry.is_symlink():
            return {"jobId": None, "entry": entry.name, "state": "unreadable", "problem": "not a job id"}
        return None
    if not entry.is_dir() or entry.is_symlink():
        return {"jobId": entry.name, "state": "unreadable", "problem": f"{entry} is not a directory"}
    if not (entry / "status.json").exists() and not (entry / "status.json").is_symlink():
        return None
    try:
        s = Job(state_dir, entry.name).status()
    except StateRecordCorrupt as exc:
        return {"jobId": entry.name, "state": "unreadable", "problem": exc.message}
    return {k: s.get(k) for k in LISTED}
