"""The state backend protocol: where an apply keeps its lock, its job records and its resume records.

Two implementations: the local directory (`engine/apply/state.py`, the default) and shared ones
found by URL scheme in the `udeploy.state` entry-point group (PostgreSQL: `providers/state_postgres.py`).
The engine names no backend module: `backend_class("postgresql")` looks the scheme up like a provider.

What a backend stores is exactly what the local directory stores (docs/state.md): lock holders,
job states with node messages and log lines, and the ids of applied nodes with runtime fingerprints.
Never a secret value: callers log names, booleans and lengths.

The lock is a lease: `acquire_lock` grants it with a fencing token that grows on every acquisition;
`renew_lock` extends it (the heartbeat); `check_lock` asks the backend whether this grant still
holds, and the apply calls it before every mutating step. A backend whose locks do not expire (the
local directory: a lock lives as long as its process) answers both from what it has.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable
from urllib.parse import urlsplit, urlunsplit

import attrs

from udeploy.engine.errors import ExitCode, UdeployError, UsageError

STATE_GROUP = "udeploy.state"  # entry points: URL scheme -> backend class with `from_url(url)`


class StateRecordCorrupt(UdeployError, ValueError):
    """A state record udeploy wrote is not what it wrote: unreadable, not JSON, or missing fields."""

    code = "state-record-corrupt"


class JobRecordCorrupt(StateRecordCorrupt):
    code = "job-record-corrupt"


class StateUnusable(UdeployError, OSError):
    """The state directory (or one of its folders) exists but is not a directory udeploy can use."""

    code = "state-unusable"


class StateUnavailable(UdeployError, ConnectionError):
    """A shared state backend cannot be reached (or stopped answering): nothing more is changed."""

    code = "state-unavailable"


class JobNotFound(UdeployError, LookupError):
    code = "job-not-found"


class LockHeld(UdeployError):
    code = "lock-held"
    exit_code = ExitCode.ERROR


class LockMismatch(UdeployError, ValueError):
    code = "lock-id-mismatch"


class LeaseLost(UdeployError, RuntimeError):
    """The apply no longer holds its environment's lease (expired, taken over, or released)."""

    code = "lease-lost"


class StateBackendNotFound(UsageError):
    code = "state-backend-not-found"


@attrs.frozen
class LockGrant:
    """A held lock: its id (for release), its fencing token (None where locks do not expire),
    the record as stored, and the abandoned lock it took over, if any."""

    scope: str
    lock_id: str
    token: int | None
    record: Mapping[str, Any]
    taken_over: Mapping[str, Any] | None = None


class JobRecord(Protocol):
    """One job: its state, one record per node, and an append-only log."""

    @property
    def id(self) -> str: ...

    def status(self) -> dict[str, Any]:
        """The job document (`jobId`, `state`, `pid`, `nodes`, ...); a running job whose process
        (or lease) is gone is reported as `died`."""
        ...

    def log(self, message: str) -> None: ...

    def tail(self, max_bytes: int) -> str | None:
        """The last `max_bytes` of the log; None when the log is missing."""
        ...

    def node(self, node_id: str, state: str, **facts: Any) -> None: ...

    def finish(self, state: str, result: Mapping[str, Any]) -> None: ...


class ResumeRecord(Protocol):
    """What earlier jobs of one plan already did: succeeded nodes and runtime fingerprints after them."""

    @property
    def location(self) -> str: ...

    @property
    def done(self) -> set[str]: ...

    def runtime_fingerprint(self, service: str | None) -> str | None: ...

    def record(self, node_id: str, service: str | None, runtime_fingerprint: str | None) -> None: ...


@runtime_checkable
class StateBackend(Protocol):
    """Locks, jobs and resume records of one state location (a directory, or a database)."""

    @property
    def location(self) -> str:
        """Where the state lives, for messages: a path, or the URL without its password."""
        ...

    def acquire_lock(self, scope: str, job_id: str, lease_seconds: float) -> LockGrant:
        """Take the lock of `scope` or raise `LockHeld` naming the holder."""
        ...

    def renew_lock(self, grant: LockGrant, lease_seconds: float) -> None:
        """Extend the lease; `LeaseLost` when it is no longer ours."""
        ...

    def check_lock(self, grant: LockGrant) -> None:
        """Fencing: `LeaseLost` unless `grant` still holds (by its token), `StateUnavailable` when
        that cannot be known."""
        ...

    def read_lock(self, scope: str) -> dict[str, Any] | None: ...

    def release_lock(self, scope: str, lock_id: str, *, strict: bool = True) -> None: ...

    def create_job(self, *, plan_digest: str, plan_file: str | None, environment: str | None, dry_run: bool,
                   nodes: list[str], job_id: str | None = None, lock: LockGrant | None = None) -> JobRecord: ...

    def open_job(self, job_id: str) -> JobRecord:
        """The job, or `JobNotFound`."""
        ...

    def list_jobs(self) -> list[dict[str, Any]]: ...

    def job_results(self, environment: str) -> list[dict[str, Any]]:
        """The finished, non-dry-run jobs of `environment` whose result lists services (what
        `history` reads), newest first: the job document without its nodes (`jobId`, `owner`,
        `host`, `planDigest`, `finishedAt`, `result`, ...). Unreadable local records are left out."""
        ...

    def resume(self, plan_digest: str) -> ResumeRecord: ...

    def close(self) -> None: ...


def redact_password(url: str) -> str:
    """`url` with its password (if any) replaced by `***`, for messages and records."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{parts.username or ''}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def url_has_password(url: str) -> bool:
    return urlsplit(url).password is not None


def backend_class(scheme: str) -> type[Any]:
    """The backend registered for a URL scheme in the `udeploy.state` entry-point group."""
    for ep in entry_points(group=STATE_GROUP):
        if ep.name == scheme:
            return ep.load()  # type: ignore[no-any-return]
    raise StateBackendNotFound(f"no state backend for {scheme}:// URLs is installed (entry-point group "
                               f"{STATE_GROUP})", path="--state-url")


def open_backend(url: str) -> StateBackend:
    """The shared backend a state URL names (`postgresql://…`)."""
    scheme = urlsplit(url).scheme
    if not scheme:
        raise UsageError(f"--state-url: {redact_password(url)[:120]} is not a URL (like postgresql://host/db)",
                         path="--state-url")
    found = backend_class("postgresql" if scheme == "postgres" else scheme).from_url(url)
    if not isinstance(found, StateBackend):
        raise StateBackendNotFound(f"the {scheme} state backend does not implement StateBackend", path=scheme)
    return found


def pid_alive(pid: int) -> bool:
    """Whether process `pid` on this machine still runs: a lock or job holder that is gone is dead."""
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
