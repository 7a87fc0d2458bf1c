"""One apply per environment at a time: a lock file under `<state>/locks/<scope>.lock`.

The lock records its id, owner, host, pid, job id and time. It is taken atomically
(O_CREAT|O_EXCL). A lock whose process is gone on this host was abandoned (a killed apply) and is
taken over, which the new job logs; a live one refuses the second apply. A forced release must
name the lock id, so nobody removes a lock they have not looked at.
"""

from __future__ import annotations

import getpass
import json
import os
import secrets
import socket
from pathlib import Path
from typing import Any

from engine.errors import ExitCode, UdeployError
from engine.jobs import now, pid_alive


class LockHeld(UdeployError):
    code = "lock-held"
    exit_code = ExitCode.ERROR


class LockMismatch(UdeployError, ValueError):
    code = "lock-id-mismatch"


def lock_path(state_dir: Path, scope: str) -> Path:
    return state_dir / "locks" / f"{scope}.lock"


def read_lock(state_dir: Path, scope: str) -> dict[str, Any] | None:
    path = lock_path(state_dir, scope)
    try:
        doc: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    doc["alive"] = doc.get("host") != socket.gethostname() or pid_alive(int(doc.get("pid", 0)))
    return doc


def acquire(state_dir: Path, scope: str, job_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Take the lock; returns (our lock, the abandoned lock we took over or None)."""
    path = lock_path(state_dir, scope)
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = {"lockId": secrets.token_hex(8), "scope": scope, "owner": getpass.getuser(), "host": socket.gethostname(),
            "pid": os.getpid(), "jobId": job_id, "createdAt": now()}
    taken_over = None
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            held = read_lock(state_dir, scope)
            if held is None:
                continue  # released between our two calls
            if held["alive"]:
                raise LockHeld(f"environment {scope} is locked by job {held.get('jobId')} ({held.get('owner')}@"
                               f"{held.get('host')}, pid {held.get('pid')}, since {held.get('createdAt')})",
                               path=str(path), details={k: v for k, v in held.items() if k != "alive"}) from None
            path.unlink(missing_ok=True)  # abandoned by a process that is gone
            taken_over = held
            continue
        with os.fdopen(fd, "w") as f:
            json.dump(mine, f)
        return mine, taken_over
    raise LockHeld(f"could not take the lock for {scope}", path=str(path))


def release(state_dir: Path, scope: str, lock_id: str) -> None:
    """Release a lock we (or, forced, an operator who read its id) hold."""
    held = read_lock(state_dir, scope)
    if held is None:
        return
    if held.get("lockId") != lock_id:
        raise LockMismatch(f"lock {scope} has id {held.get('lockId')}, not {lock_id}",
                           path=str(lock_path(state_dir, scope)))
    lock_path(state_dir, scope).unlink(missing_ok=True)
