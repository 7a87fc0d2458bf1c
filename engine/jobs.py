"""Jobs: every apply is a job under `<state>/jobs/<jobId>/` (O1, O6).

A job directory holds `status.json` (the job's state, its pid, and one record per node) and
`log` (append-only, one line per event). A job whose process died without finishing is reported
as `died`, never as running forever. Nothing here ever writes a secret value: callers log node
messages, which providers keep to names, booleans and lengths.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.errors import UdeployError


class JobNotFound(UdeployError, LookupError):
    code = "job-not-found"


def default_state_dir() -> Path:
    return Path(os.environ.get("UDEPLOY_STATE_DIR", ".state"))


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def new_job_id() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child (killed but not reaped yet) is not alive either.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


class Job:
    """One job's directory. Thread-safe: the walk updates nodes from several threads."""

    def __init__(self, root: Path, job_id: str) -> None:
        self.id = job_id
        self.dir = root / "jobs" / job_id
        self._lock = threading.Lock()

    @classmethod
    def create(cls, state_dir: Path, *, plan_digest: str, plan_file: str | None, environment: str | None,
               dry_run: bool, nodes: list[str], job_id: str | None = None) -> Job:
        job = cls(state_dir, job_id or new_job_id())
        job.dir.mkdir(parents=True, exist_ok=False)
        job._write({"jobId": job.id, "state": "running", "pid": os.getpid(), "planDigest": plan_digest,
                    "planFile": plan_file, "environment": environment, "dryRun": dry_run, "startedAt": now(),
                    "finishedAt": None, "nodes": {n: {"state": "pending"} for n in nodes}, "result": None})
        (job.dir / "log").touch()
        return job

    @classmethod
    def open(cls, state_dir: Path, job_id: str) -> Job:
        job = cls(state_dir, job_id)
        if not (job.dir / "status.json").exists():
            raise JobNotFound(f"no job {job_id} under {state_dir / 'jobs'}", path=job_id)
        return job

    def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((self.dir / "status.json").read_text())
        if doc["state"] == "running" and not pid_alive(int(doc["pid"])):
            doc["state"] = "died"
            doc["diedNote"] = f"process {doc['pid']} ended without finishing the job"
        return doc

    def log(self, message: str) -> None:
        with self._lock, open(self.dir / "log", "a") as f:
            f.write(f"{now()} {message}\n")

    def tail(self, max_bytes: int) -> str:
        path = self.dir / "log"
        size = path.stat().st_size
        with open(path, "rb") as f:
            f.seek(max(0, size - max_bytes))
            return f.read().decode(errors="replace")

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


def list_jobs(state_dir: Path) -> list[dict[str, Any]]:
    root = state_dir / "jobs"
    if not root.exists():
        return []
    out = []
    for d in sorted(root.iterdir()):
        if (d / "status.json").exists():
            s = Job(state_dir, d.name).status()
            out.append({k: s.get(k) for k in ("jobId", "state", "environment", "dryRun", "startedAt", "finishedAt",
                                              "planDigest")})
    return out
