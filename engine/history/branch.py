"""A commit on a new branch of the operator's checkout, made without touching its working tree,
index or current branch (a temporary index builds the tree), and optionally pushed to `origin`.

The branch starts at the commit of the remote ref the change was planned against: the checkout
fetches that branch first and refuses when it points elsewhere (the ref moved meanwhile), so the
branch changes exactly the one file it says, on top of exactly what the environment reads (M7).
"""

from __future__ import annotations

import os
import re
import subprocess
import tempfile
from pathlib import Path

import attrs

from udeploy.engine.errors import GitError
from udeploy.engine.load.source import checkout_root

GIT_TIMEOUT = 120  # seconds: a fetch or push that hangs fails the command instead
USERINFO = re.compile(r"(https?://)[^/@\s]+@")  # a token in a remote URL git echoes back (P7)


@attrs.frozen
class FileCommit:
    """What to commit: one file's new bytes on a new branch, on top of `base` (of remote `ref`)."""

    branch: str
    base: str  # full SHA the remote ref pointed at when the change was made
    ref: str  # origin/<branch> the base came from
    path: str  # repository-relative file path
    data: bytes
    message: str


def _git(root: Path, *args: str, data: bytes | None = None, env: dict[str, str] | None = None) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], input=data, capture_output=True, timeout=GIT_TIMEOUT,
                              env={**os.environ, **(env or {})}, check=False)
    except subprocess.TimeoutExpired:
        raise GitError(f"git {args[0]} did not finish within {GIT_TIMEOUT} s", path=str(root)) from None
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        why = USERINFO.sub(r"\1", lines[-1]) if lines else f"exit {proc.returncode}"
        raise GitError(f"git {args[0]} failed in {root}: {why}", path=str(root))
    return proc.stdout.decode().strip()


def commit_on_new_branch(checkout: Path, change: FileCommit) -> str:
    """Create `change.branch` in the checkout with one commit on `change.base`; returns its SHA.
    Refuses when the branch exists (a rollback branch is never overwritten) or the remote ref moved."""
    root = checkout_root(checkout)
    if _git(root, "branch", "--list", change.branch):
        raise GitError(f"branch {change.branch} already exists in {root}: delete it, or roll back to another "
                       "commit", path=change.branch)
    remote_branch = change.ref.removeprefix("origin/")
    _git(root, "fetch", "--quiet", "origin", f"refs/heads/{remote_branch}")
    fetched = _git(root, "rev-parse", "--verify", "FETCH_HEAD^{commit}")
    if fetched != change.base:
        raise GitError(f"{change.ref} moved from {change.base[:12]} to {fetched[:12]} while the rollback was "
                       "prepared; run it again", path=change.ref, details={"expected": change.base, "now": fetched})
    mode = _git(root, "ls-tree", change.base, "--", change.path).split(" ", 1)[0] or "100644"
    with tempfile.TemporaryDirectory(prefix="udeploy-index-") as tmp:
        index = {"GIT_INDEX_FILE": str(Path(tmp) / "index")}
        _git(root, "read-tree", change.base, env=index)
        blob = _git(root, "hash-object", "-w", "--stdin", data=change.data)
        _git(root, "update-index", "--cacheinfo", f"{mode},{blob},{change.path}", env=index)
        tree = _git(root, "write-tree", env=index)
    commit = _git(root, "commit-tree", tree, "-p", change.base, "-F", "-", data=change.message.encode())
    # The empty old value makes git refuse if the branch appeared since the check above.
    _git(root, "update-ref", "-m", "udeploy rollback", f"refs/heads/{change.branch}", commit, "")
    return commit


def push_branch(checkout: Path, branch: str) -> None:
    """Push `branch` to `origin` under the same name (never forced)."""
    _git(checkout_root(checkout), "push", "--quiet", "origin", f"refs/heads/{branch}:refs/heads/{branch}")
