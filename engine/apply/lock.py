"""One apply per environment at a time: a lock file under `<state>/locks/<scope>.lock`.

The lock records its id, owner, host, pid, job id and time. It is taken under a short flock on
`<scope>.guard`, and appears with its content in one step. A lock whose process is gone on this
host was abandoned (a killed apply) and is taken over, which the new job logs; a live one refuses
the second apply. A forced release must name the lock id, so nobody removes a lock they have not
looked at.

A lock file udeploy cannot read (not JSON, not an object, no string `lockId`, a `pid` that is
not a process id, binary junk, over 64 KiB) is treated as held by someone alive: apply refuses
rather than taking it over (issue 9). `lock status` shows it with `unreadable: true`, the
`problem`, and a stand-in `lockId` of `unreadable-<first 16 hex of the file's SHA-256>`; `lock
release --lock-id` with that id removes it, so the rule "name the id you looked at" still holds,
and a file that changed since it was looked at is not removed. A lock path that is not a regular
file at all (a directory, a FIFO) has `lockId: null`: udeploy never removes it; an operator does.
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import re
import secrets
import socket
from pathlib import Path
from typing import Any

from udeploy.engine.apply.jobs import (
    SMALL_RECORD_LIMIT,
    StateRecordCorrupt,
    StateUnusable,
    check_state_folder,
    now,
    parse_record,
    valid_pid,
)
from udeploy.engine.errors import UdeployError, UsageError
from udeploy.engine.load.input_files import open_regular
from udeploy.engine.state_api import LockHeld as LockHeld  # re-exported: their home was here
from udeploy.engine.state_api import LockMismatch as LockMismatch
from udeploy.engine.state_api import pid_alive

SCOPE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")  # env-dev, env-prod, local-manifest: never a path


def lock_path(state_dir: Path, scope: str) -> Path:
    if not SCOPE.fullmatch(scope):
        raise UsageError(f"lock scope {ascii(scope)[:80]} is not an environment scope", path=scope[:80])
    return state_dir / "locks" / f"{scope}.lock"


def read_lock(state_dir: Path, scope: str) -> dict[str, Any] | None:
    """The lock record with `alive`, or None when there is no lock. Unreadable means held."""
    path = lock_path(state_dir, scope)
    check_state_folder(state_dir)
    try:
        with open_regular(path) as f:
            data = f.read(SMALL_RECORD_LIMIT + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:  # a directory or a FIFO: nothing udeploy will remove
        return _unreadable(scope, None, f"{path} cannot be read: {exc.strerror or exc}")
    stand_in = "unreadable-" + hashlib.sha256(data).hexdigest()[:16]
    if len(data) > SMALL_RECORD_LIMIT:
        return _unreadable(scope, stand_in, f"{path} is larger than {SMALL_RECORD_LIMIT} bytes")
    try:
        doc = parse_record(data, path)
    except StateRecordCorrupt as exc:
        return _unreadable(scope, stand_in, exc.message)
    problem = _lock_problem(doc)
    if problem:
        return _unreadable(scope, stand_in, f"{path}: {problem}")
    doc["alive"] = doc.get("host") != socket.gethostname() or pid_alive(doc["pid"])
    return doc


def _lock_problem(doc: dict[str, Any]) -> str | None:
    if not isinstance(doc.get("lockId"), str) or not doc["lockId"] or doc["lockId"].startswith("unreadable-"):
        return "lockId is missing or not a string"
    if not isinstance(doc.get("host"), str):
        return "host is missing or not a string"
    if not valid_pid(doc.get("pid")):
        return "pid is not a process id"
    return None


def _unreadable(scope: str, stand_in: str | None, problem: str) -> dict[str, Any]:
    """Not ours to judge: held by someone alive, so apply refuses instead of taking it over."""
    return {"lockId": stand_in, "scope": scope, "alive": True, "unreadable": True, "problem": problem}


def acquire(state_dir: Path, scope: str, job_id: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Take the lock; returns (our lock, the abandoned lock we took over or None)."""
    path = lock_path(state_dir, scope)
    check_state_folder(state_dir)
    check_state_folder(path.parent)
    mine = {"lockId": secrets.token_hex(8), "scope": scope, "owner": getpass.getuser(), "host": socket.gethostname(),
            "pid": os.getpid(), "jobId": job_id, "createdAt": now()}
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Inspecting, taking over and creating happen under a short flock, so two applies can never
        # both take over the same abandoned lock; the kernel drops the flock if we die.
        with open(path.with_suffix(".guard"), "w") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            held = read_lock(state_dir, scope)
            if held is not None and held["alive"]:
                raise _held_error(scope, path, held)
            path.unlink(missing_ok=True)  # absent, or abandoned by a process that is gone
            tmp = path.with_name(f"{path.name}.{mine['lockId']}")
            tmp.write_text(json.dumps(mine))
            os.link(tmp, path)  # appears with its content, never half-written
            tmp.unlink()
    except UdeployError:
        raise
    except OSError as exc:
        raise StateUnusable(f"cannot take the lock {path}: {exc.strerror}", path=str(path)) from None
    return mine, held


def _held_error(scope: str, path: Path, held: dict[str, Any]) -> LockHeld:
    details = {k: v for k, v in held.items() if k != "alive"}
    if held.get("unreadable"):
        how = (f"check it, then `udeploy lock release --lock-id {held['lockId']}`" if held["lockId"]
               else "it is not a regular file: an operator must remove it")
        return LockHeld(f"environment {scope} has a lock file udeploy cannot read ({held['problem']}); it counts "
                        f"as held, so nothing was taken over: {how}", path=str(path), details=details)
    return LockHeld(f"environment {scope} is locked by job {held.get('jobId')} ({held.get('owner')}@"
                    f"{held.get('host')}, pid {held.get('pid')}, since {held.get('createdAt')})",
                    path=str(path), details=details)


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
    try:
        lock_path(state_dir, scope).unlink(missing_ok=True)
    except OSError as exc:
        raise StateUnusable(f"cannot remove {lock_path(state_dir, scope)}: {exc.strerror}",
                            path=str(lock_path(state_dir, scope))) from None
