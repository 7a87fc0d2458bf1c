"""The git source provider (GitPython).

Every remote is read through a bare mirror in a per-user cache (`$UDEPLOY_CACHE_DIR`, else
`~/.cache/udeploy/mirrors`), fetched at most once per provider instance. Nothing is ever cloned
into the operator's checkout, and nothing here reads a working tree: manifests come from git
objects at a ref, so a dirty or uncommitted file has no effect (M7).

Defence in depth (issue 9): every URL and ref is checked against `engine.load.repo_url` before any
git command, git itself is told which protocols it may use (`GIT_ALLOW_PROTOCOL`, which also
covers a URL an `insteadOf` rewrote), and GitPython's `allow_unsafe_*` switches are never set.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import subprocess
import threading
import weakref
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import git

from udeploy.engine.errors import CommitAmbiguous, CommitNotFound, GitError
from udeploy.engine.load.repo_url import check_ref, check_repo_url, redact_url
from udeploy.engine.provider_api import SourceFile

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")
SHORT_SHA = re.compile(r"^[0-9a-f]{7,40}$")
# Git refuses any other transport, even one a URL rewrite (`insteadOf`) leads to.
GIT_ENV = {"GIT_ALLOW_PROTOCOL": "https:ssh:file", "GIT_TERMINAL_PROMPT": "0"}


def default_cache_dir() -> Path:
    if os.environ.get("UDEPLOY_CACHE_DIR"):
        return Path(os.environ["UDEPLOY_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "udeploy" / "mirrors"


@attrs.define
class GitProvider:
    """Reads remotes through cached bare mirrors: the engine's `SourceReader`."""

    cache_dir: Path = attrs.field(factory=default_cache_dir, converter=Path)
    _fetched: dict[str, git.Repo] = attrs.field(factory=dict, init=False)
    _batches: dict[str, BlobBatch] = attrs.field(factory=dict, init=False)
    _lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)

    name = "git"

    @classmethod
    def build(cls, host: Any, catalog: Any) -> GitProvider:
        """Needs neither: the cache folder comes from the environment (`$UDEPLOY_CACHE_DIR`)."""
        return cls()

    def mirror(self, url: str) -> git.Repo:
        """The bare mirror of `url`, fetched once per provider instance.

        Mirrors are keyed by the redacted URL: cloned once with the real one, later fetched through
        the mirror's own remote, so a plan that records only redacted URLs can still be applied.
        """
        key = redact_url(url)
        check_repo_url(url, path=key)
        with self._lock:
            if key in self._fetched:
                return self._fetched[key]
            path = self.cache_dir / (hashlib.sha256(key.encode()).hexdigest()[:20] + ".git")
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_suffix(".lock"), "w") as guard:
                fcntl.flock(guard, fcntl.LOCK_EX)  # one fetch per mirror, across processes too
                try:
                    if path.exists():
                        repo = git.Repo(path)
                        repo.git.update_environment(**GIT_ENV)
                        repo.git.fetch("--prune", "--force", "origin", "+refs/heads/*:refs/heads/*",
                                       "+refs/tags/*:refs/tags/*")
                    else:
                        repo = git.Repo.clone_from(url, path, mirror=True, env=GIT_ENV)
                except git.GitCommandError as exc:
                    detail = (exc.stderr or "").strip().replace(url, key) or type(exc).__name__
                    raise GitError(f"cannot fetch {key}: {detail}", path=key) from None
            self._fetched[key] = repo
            return repo

    def resolve(self, url: str, commit: str, *, path: str | None = None) -> str:
        """The full SHA of `commit` (a unique short or full SHA) in the remote (M5)."""
        where = path or redact_url(url)
        url_shown = redact_url(url)
        if not SHORT_SHA.fullmatch(commit):
            raise CommitNotFound(f"{commit!r} is not a hex commit id of 7 to 40 characters", path=where)
        repo = self.mirror(url)
        if FULL_SHA.fullmatch(commit):
            if _object_type(repo, commit) != "commit":
                raise CommitNotFound(f"commit {commit} does not exist in {url_shown}", path=where)
            return commit
        candidates = [c for c in _disambiguate(repo, commit) if _object_type(repo, c) == "commit"]
        if not candidates:
            raise CommitNotFound(f"no commit {commit} in {url_shown}", path=where)
        if len(candidates) > 1:
            raise CommitAmbiguous(
                f"short SHA {commit} is ambiguous in {url_shown}: {', '.join(sorted(candidates))}",
                path=where, details={"candidates": sorted(candidates)})
        return candidates[0]

    def ref_commit(self, url: str, ref: str) -> str:
        """The commit a remote branch points at; `ref` is `origin/<branch>` or a branch name."""
        check_ref(ref, path=str(ref)[:200])
        repo = self.mirror(url)
        branch = ref.removeprefix("origin/")
        try:
            return str(repo.git.rev_parse("--verify", "--quiet", f"refs/heads/{branch}^{{commit}}"))
        except git.GitCommandError as exc:
            raise GitError(f"remote ref {ref} does not exist in {redact_url(url)}", path=ref) from exc

    def read(self, url: str, commit: str, path: str) -> SourceFile:
        """The file at `path` in `commit`, read from git objects.

        Through the mirror's one `git cat-file --batch` (a fleet's plan reads hundreds of files); what
        it does not answer with a blob (a missing path, a tree, a path the line protocol cannot carry)
        takes the two-command path below, so those errors read exactly as they always have.
        """
        repo = self.mirror(url)
        found = self._batch(repo).blob(commit, path)
        if found is not None:
            blob_sha, data = found
            return SourceFile(path=path, data=data, blob_sha=blob_sha, commit=commit)
        try:
            blob_sha = repo.git.rev_parse("--verify", "--quiet", f"{commit}:{path}")
        except git.GitCommandError as exc:
            raise GitError(f"{path} does not exist at {commit[:12]} in {redact_url(url)}", path=path) from exc
        data = subprocess.run(["git", "-C", repo.git_dir, "cat-file", "blob", blob_sha],
                              check=True, capture_output=True).stdout
        return SourceFile(path=path, data=data, blob_sha=blob_sha, commit=commit)

    def subjects(self, url: str, commits: Sequence[str]) -> Mapping[str, str]:
        """The subject line of each full commit SHA in `commits` the mirror has, as `git log --format=%s`
        shows it; through the mirror's one `git cat-file --batch`, one request per distinct commit."""
        batch = self._batch(self.mirror(url))
        found = {c: batch.subject(c) for c in dict.fromkeys(commits)}
        return {c: s for c, s in found.items() if s is not None}

    def _batch(self, repo: git.Repo) -> BlobBatch:
        with self._lock:
            git_dir = str(repo.git_dir)
            if git_dir not in self._batches:
                self._batches[git_dir] = BlobBatch(git_dir)
            return self._batches[git_dir]

    def archive(self, url: str, commit: str, prefix: str | None = None) -> bytes:
        """`git archive` (tar) of the tracked files at `commit`, optionally only under `prefix` (B1)."""
        repo = self.mirror(url)
        args = ["git", "-C", repo.git_dir, "archive", "--format=tar", commit]
        if prefix:
            args.append(prefix)
        proc = subprocess.run(args, capture_output=True)
        if proc.returncode != 0:
            raise GitError(f"git archive {commit[:12]} failed: {proc.stderr.decode().strip()}", path=redact_url(url))
        return proc.stdout


BATCH_HEADER = re.compile(rb"([0-9a-f]{40}|[0-9a-f]{64}) ([a-z]+) ([0-9]+)\n")


class BlobBatch:
    """One long-lived `git cat-file --batch` on a mirror: a request is one line (an object name), the
    answer a header line and the object. Reads from several threads take turns (one pipe).

    A file in a directory is found through the directory's listing, read once per commit: git looks
    `<commit>:<path>` up by scanning each tree on the way, so a fleet's 3,333 manifests in one
    directory made every lookup scan 3,333 entries (quadratic)."""

    def __init__(self, git_dir: str) -> None:
        self._proc = subprocess.Popen(["git", "-C", git_dir, "cat-file", "--batch"],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        self._lock = threading.Lock()
        self._dirs: dict[tuple[str, str], dict[bytes, str] | None] = {}  # (commit, dir) -> blob name -> SHA
        weakref.finalize(self, _end_batch, self._proc)  # stdin closed: git exits; reap it

    def blob(self, commit: str, path: str) -> tuple[str, bytes] | None:
        """(blob SHA, content) of `path` at `commit`; None when the answer is anything but a blob."""
        if not _plain_path(path) or not FULL_SHA.fullmatch(commit):
            return None  # one line per request; relative paths and short SHAs mean other things to git
        folder, _, name = path.rpartition("/")
        with self._lock:
            if not folder:
                return self._blob(f"{commit}:{path}")
            if (commit, folder) not in self._dirs:
                self._dirs[(commit, folder)] = self._listing(f"{commit}:{folder}")
            blobs = self._dirs[(commit, folder)]
            sha = blobs.get(name.encode()) if blobs is not None else None
            return self._blob(sha) if sha is not None else None

    def subject(self, commit: str) -> str | None:
        """The subject of a full commit SHA (its message's first paragraph on one line, as git's `%s`),
        or None when it is not a commit of this mirror."""
        if not FULL_SHA.fullmatch(commit):
            return None
        with self._lock:
            found = self._object(commit)
        if found is None or found[1] != b"commit":
            return None
        _, _, message = found[2].partition(b"\n\n")
        paragraph = message.lstrip(b"\n").split(b"\n\n", 1)[0]
        return " ".join(line.strip() for line in paragraph.decode(errors="replace").splitlines()).strip()

    def _blob(self, name: str) -> tuple[str, bytes] | None:
        found = self._object(name)
        return (found[0], found[2]) if found is not None and found[1] == b"blob" else None

    def _listing(self, name: str) -> dict[bytes, str] | None:
        """The blobs of a tree (files and symlinks, not subtrees or submodules), by name."""
        found = self._object(name)
        if found is None or found[1] != b"tree":
            return None
        raw, width, blobs, at = found[2], len(found[0]) // 2, {}, 0
        while at < len(raw):  # entries: "<mode> <name>\0<binary object id>"
            space, nul = raw.index(b" ", at), raw.index(b"\0", at)
            mode, entry, object_id = raw[at:space], raw[space + 1:nul], raw[nul + 1:nul + 1 + width]
            if mode not in (b"40000", b"160000"):
                blobs[entry] = object_id.hex()
            at = nul + 1 + width
        return blobs

    def _object(self, name: str) -> tuple[str, bytes, bytes] | None:
        """(SHA, type, content) of one object name, or None when git has no such object."""
        stdin, stdout = self._proc.stdin, self._proc.stdout
        assert stdin is not None and stdout is not None
        try:
            stdin.write(f"{name}\n".encode())
            stdin.flush()
        except (BrokenPipeError, ValueError):
            return None
        header = BATCH_HEADER.fullmatch(stdout.readline())
        if header is None:  # "<request> missing" or "... ambiguous": nothing follows
            return None
        data = stdout.read(int(header[3]))
        stdout.read(1)  # the newline after every object
        return header[1].decode(), header[2], data


def _plain_path(path: str) -> bool:
    """A path the batch reads as git would read `<commit>:<path>`: one line, no empty, `.` or `..`
    part (git resolves those against a working directory), encodable as the bytes git stores."""
    if "\n" in path or "\0" in path or any(part in ("", ".", "..") for part in path.split("/")):
        return False
    try:
        path.encode()
    except UnicodeEncodeError:
        return False
    return True


def _end_batch(proc: subprocess.Popen[bytes]) -> None:
    if proc.stdin is not None:
        proc.stdin.close()
    proc.wait()
    if proc.stdout is not None:
        proc.stdout.close()


def _disambiguate(repo: git.Repo, prefix: str) -> list[str]:
    proc = subprocess.run(["git", "-C", repo.git_dir, "rev-parse", f"--disambiguate={prefix}"],
                          capture_output=True, text=True)
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def _object_type(repo: git.Repo, sha: str) -> str | None:
    proc = subprocess.run(["git", "-C", repo.git_dir, "cat-file", "-t", sha], capture_output=True, text=True)
    return proc.stdout.strip() if proc.returncode == 0 else None
