"""One apply per environment at a time: a lock file under `<state>/locks/<scope>.lock`.

The lock records its id, owner, host, pid, job id and time. It is taken under a short flock on
`<scope>.guard`, and appears with its content in one step. A lock whose process is gone on this
host was abandoned (a killed apply) and is taken over, which the new job logs; a live one refuses
the second apply. A forced release must name the lock id, so nobody removes a lock they have not
looked at.
"""

from __future__ import annotations

import fcntl
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
    except ValueError:  # not ours to judge: treat as held by someone alive
        return {"lockId": None, "scope": scope, "alive": True, "unreadable": True}
    doc["alive"] = doc.get("host") != socket.gethostname() or pid_alive(int(doc.get("pid", 0)))
    return doc


def acquire(state_dir: Path, scope: str, job_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Take the lock; returns (our lock, the abandoned lock we took over or None)."""
    path = lock_path(state_dir, scope)
    path.parent.mkdir(parents=True, exist_ok=True)
    mine = {"lockId": secrets.token_hex(8), "scope": scope, "owner": getpass.getuser(), "host": socket.gethostname(),
            "pid": os.getpid(), "jobId": job_id, "createdAt": now()}
    # Inspecting, taking over and creating happen under a short flock, so two applies can never
    # both take over the same abandoned lock; the kernel drops the flock if we die.
    with open(path.with_suffix(".guard"), "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        held = read_lock(state_dir, scope)
        if held is not None and held["alive"]:
            raise LockHeld(f"environment {scope} is locked by job {held.get('jobId')} ({held.get('owner')}@"
                           f"{held.get('host')}, pid {held.get('pid')}, since {held.get('createdAt')})",
                           path=str(path), details={k: v for k, v in held.items() if k != "alive"})
        path.unlink(missing_ok=True)  # absent, or abandoned by a process that is gone
        tmp = path.with_name(f"{path.name}.{mine['lockId']}")
        tmp.write_text(json.dumps(mine))
        os.link(tmp, path)  # appears with its content, never half-written
        tmp.unlink()
    return mine, held


def release(state_dir: Path, scope: str, lock_id: str, *, strict: bool = True) -> None:
    """Release a lock we (or, forced, an operator who read its id) hold. `strict=False` is for
    an apply ending: an operator may have force-released its lock meanwhile."""
    held = read_lock(state_dir, scope)
    if held is None:
        return
    if held.get("lockId") != lock_id:
        if not strict:
            return
        raise LockMismatch(f"lock {scope} has id {held.get('lockId')}, not {lock_id}",
                           path=str(lock_path(state_dir, scope)))
    lock_path(state_dir, scope).unlink(missing_ok=True)
