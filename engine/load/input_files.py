"""Reading what a user or a pull request names: bounded, regular files only, never blocking.

Every file udeploy reads on someone else's say-so (`--file`, a plan file, config.json and CI.json
in a checkout) goes through `read_input`. It opens without following into a FIFO's wait
(`O_NONBLOCK`), refuses anything that is not a regular file (a directory, a FIFO, a device), turns
a symlink loop or a missing file into a clear error, and never reads more than the caller's cap.
Parsing these bytes is `engine.load.jsonschema_check.parse_json`'s job, with its own depth limits.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from udeploy.engine.errors import InputTooLarge, UdeployError, UsageError


class InputUnreadable(UdeployError):
    """A named file cannot be read: missing, not a regular file, a symlink loop, no permission."""

    code = "input-unreadable"


# Caps on what one file may hold. Real manifests are a few kilobytes and a 1000-service plan is
# a few megabytes; these leave two orders of magnitude of room and keep memory bounded.
MAX_MANIFEST_BYTES = 8 * 1024 * 1024
MAX_PLAN_BYTES = 256 * 1024 * 1024

_KINDS = {stat.S_IFDIR: "a directory", stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket",
          stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device"}


def shown(path: Path | str) -> str:
    """A path as text that is always valid UTF-8 (undecodable bytes become U+FFFD), for messages."""
    return os.fsencode(path).decode("utf-8", "replace")


def require_utf8_path(path: Path, option: str) -> None:
    """udeploy records the paths it reads (plan files, job records): each must be valid UTF-8."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        raise UsageError(f"{option} {shown(path)!r} is not a valid UTF-8 path", path=option) from None


def open_regular(path: Path) -> BinaryIO:
    """`path` opened for reading if it is a regular file (checked on the open descriptor, so a
    FIFO is never waited on); otherwise an `OSError` (FileNotFoundError for a missing file)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise OSError(f"it is {_KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, not a regular file")
    return os.fdopen(fd, "rb")


def read_input(path: Path, *, label: str, max_bytes: int, error: type[UdeployError] = InputUnreadable) -> bytes:
    """The bytes of a regular file, at most `max_bytes`; anything else is `error` naming the path."""
    try:
        f = open_regular(path)
    except OSError as exc:
        raise error(f"cannot read {label} {shown(path)}: {exc.strerror or exc}", path=shown(path)) from None
    with f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise InputTooLarge(f"{label} {shown(path)} is larger than the {max_bytes}-byte limit", path=shown(path),
                            details={"limitBytes": max_bytes})
    return data


def check_writable_target(path: Path, option: str) -> None:
    """Before any work: `path` can be written as a new file (its directory exists; it is no directory)."""
    require_utf8_path(path, option)
    if not str(path) or path.is_dir():
        raise UsageError(f"{option} {shown(path)!r} names a directory; give a file path", path=option)
    parent = path.parent
    if not parent.is_dir():
        raise UsageError(f"{option} {shown(path)!r}: directory {shown(parent)} does not exist", path=option)
    if path.exists() and not path.is_file():
        raise UsageError(f"{option} {shown(path)!r} exists and is not a regular file", path=option)
