"""The state backend an apply uses: the local directory (the default), or a shared one by URL.

`LocalState` keeps everything under one directory exactly as before the backend protocol
existed (`locks/<scope>.lock`, `jobs/<jobId>/`, `plans/<digest>.json`); its locks do not expire
(a lock lives as long as its process on this host), so renewing and fencing have nothing to ask.
`open_state` picks the backend: a state URL (`--state-url`, `UDEPLOY_STATE_URL`) names a shared
one looked up by scheme (`engine/state_api.py`), else the directory.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from udeploy.engine.apply import lock as env_lock
from udeploy.engine.apply.jobs import (
    Job,
    StateRecordCorrupt,
    check_state_folder,
    job_results,
    list_jobs,
    read_record,
)
from udeploy.engine.state_api import JobRecord, LockGrant, ResumeRecord, StateBackend, open_backend

DEFAULT_LEASE_SECONDS = 60.0  # a shared lock outlives a dead holder by at most this long


def lease_seconds() -> float:
    """The lease length: `UDEPLOY_LEASE_SECONDS` (short in tests), else 60 s."""
    raw = os.environ.get("UDEPLOY_LEASE_SECONDS", "")
    try:
        value = float(raw) if raw else DEFAULT_LEASE_SECONDS
    except ValueError:
        value = DEFAULT_LEASE_SECONDS
    return max(1.0, value)


def open_state(state_dir: Path, state_url: str | None = None) -> StateBackend:
    """The shared backend `state_url` names, else the local directory `state_dir`."""
    url = state_url if state_url is not None else os.environ.get("UDEPLOY_STATE_URL") or None
    return open_backend(url) if url else LocalState(state_dir)


class LocalState:
    """One state directory (see the module docstring)."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    @property
    def location(self) -> str:
        return str(self.state_dir)

    def acquire_lock(self, scope: str, job_id: str, lease_seconds: float) -> LockGrant:
        mine, taken_over = env_lock.acquire(self.state_dir, scope, job_id)
        return LockGrant(scope=scope, lock_id=mine["lockId"], token=None, record=mine, taken_over=taken_over)

    def renew_lock(self, grant: LockGrant, lease_seconds: float) -> None:
        """Nothing to renew: a local lock is held while its process lives."""

    def check_lock(self, grant: LockGrant) -> None:
        """Nothing to ask: a local lock is only taken over once its process is gone."""

    def read_lock(self, scope: str) -> dict[str, Any] | None:
        return env_lock.read_lock(self.state_dir, scope)

    def release_lock(self, scope: str, lock_id: str, *, strict: bool = True) -> None:
        env_lock.release(self.state_dir, scope, lock_id, strict=strict)

    def create_job(self, *, plan_digest: str, plan_file: str | None, environment: str | None, dry_run: bool,
                   nodes: list[str], job_id: str | None = None, lock: LockGrant | None = None) -> JobRecord:
        return Job.create(self.state_dir, plan_digest=plan_digest, plan_file=plan_file, environment=environment,
                          dry_run=dry_run, nodes=nodes, job_id=job_id)

    def open_job(self, job_id: str) -> JobRecord:
        return Job.open(self.state_dir, job_id)

    def list_jobs(self) -> list[dict[str, Any]]:
        return list_jobs(self.state_dir)

    def job_results(self, environment: str) -> list[dict[str, Any]]:
        return job_results(self.state_dir, environment)

    def resume(self, plan_digest: str) -> ResumeRecord:
        return LocalResume(self.state_dir, plan_digest)

    def close(self) -> None:
        pass


class LocalResume:
    """`<state>/plans/<digest>.json`: succeeded nodes and runtime fingerprints after them."""

    def __init__(self, state_dir: Path, digest: str) -> None:
        self._lock = threading.Lock()  # nodes finish on several walk threads
        self.path = state_dir / "plans" / (digest.removeprefix("sha256:") + ".json")
        self.doc = self._read(self.path)

    @property
    def location(self) -> str:
        return str(self.path)

    @staticmethod
    def _read(path: Path) -> dict[str, Any]:
        """The record, or an empty one. A corrupt record refuses the apply (issue 9): guessing
        which nodes are done could skip unverified work or redo work whose effect moved live state."""
        check_state_folder(path.parent.parent)
        check_state_folder(path.parent)
        try:
            doc = read_record(path)
        except FileNotFoundError:
            return {"nodes": {}, "runtime": {}}
        nodes, runtime = doc.get("nodes"), doc.get("runtime")
        if not _str_map(nodes) or not _str_map(runtime):
            raise StateRecordCorrupt(f"{path} is corrupt: nodes and runtime must map names to strings; "
                                     "remove it to re-apply every node, or make a new plan", path=str(path))
        return {"nodes": nodes, "runtime": runtime}

    @property
    def done(self) -> set[str]:
        return set(self.doc["nodes"])

    def runtime_fingerprint(self, service: str | None) -> str | None:
        found: str | None = self.doc["runtime"].get(service or "")
        return found

    def record(self, node_id: str, service: str | None, runtime_fingerprint: str | None) -> None:
        with self._lock:
            self.doc["nodes"][node_id] = "succeeded"
            if service and runtime_fingerprint:
                self.doc["runtime"][service] = runtime_fingerprint
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.doc, indent=2))
            tmp.replace(self.path)


def _str_map(value: object) -> bool:
    return isinstance(value, Mapping) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())
