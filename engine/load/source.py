"""Where the desired state is read from, and the evidence of it (M7, M8).

Environment mode reads `deploy.json`, `config.json`, `CI.json` and the k3s manifests from git
objects at the remote ref (default `origin/master`), never the working tree, so a dirty or
uncommitted file has no effect. Local mode (`--file`) reads the given deploy.json and the rest
from the checkout's working tree.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Protocol

import attrs
import git

from udeploy.engine.errors import GitError, ManifestInvalid
from udeploy.engine.load.input_files import MAX_MANIFEST_BYTES, read_input, require_utf8_path, shown
from udeploy.engine.load.repo_url import check_ref, check_repo_url, redact_url
from udeploy.engine.provider_api import SourceReader

DEFAULT_REF = "origin/master"


@attrs.frozen
class ManifestSource:
    """The evidence a plan records of what it read; apply compares it (a moved ref is stale)."""

    mode: str  # "env" | "file"
    remote: str | None = None
    ref: str | None = None
    commit: str | None = None
    deploy_blob: str | None = None
    config_blob: str | None = None
    ci_blob: str | None = None
    file: str | None = None
    file_sha256: str | None = None


class Reader(Protocol):
    def read(self, path: str) -> bytes: ...


@attrs.frozen
class GitReader:
    """Files at one commit of the remote, through the source provider."""

    provider: SourceReader
    url: str
    commit: str

    def read(self, path: str) -> bytes:
        return self.provider.read(self.url, self.commit, path).data

    def blob_sha(self, path: str) -> str:
        return self.provider.read(self.url, self.commit, path).blob_sha


@attrs.frozen
class WorkTreeReader:
    """Files of a local checkout (local-manifest mode). A pull request shapes this tree, so a file
    is read only when it is a regular file inside the checkout: a symlink out of it, a loop, a
    directory or a FIFO under a manifest's name is refused by name."""

    root: Path

    def read(self, path: str) -> bytes:
        file = self.root / path
        real, inside = os.path.realpath(file), os.path.realpath(self.root)
        if os.path.commonpath([real, inside]) != inside:
            raise ManifestInvalid(f"{path} in {shown(self.root)} is a symlink that leaves the checkout",
                                  path=path)
        if not os.path.lexists(file):
            raise ManifestInvalid(f"{path} does not exist in {shown(self.root)}", path=path)
        return read_input(file, label=path, max_bytes=MAX_MANIFEST_BYTES, error=ManifestInvalid)


def origin_url(checkout: Path) -> str:
    """The fetch URL of the checkout's `origin` remote (read from git config, not the tree)."""
    try:
        return str(git.Repo(checkout, search_parent_directories=True).remotes.origin.url)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise GitError(f"{checkout} is not inside a git checkout (use --repo PATH)", path=str(checkout)) from exc
    except AttributeError as exc:
        raise GitError(f"{checkout} has no 'origin' remote", path=str(checkout)) from exc


def checkout_root(start: Path) -> Path:
    try:
        return Path(git.Repo(start, search_parent_directories=True).working_tree_dir or start)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError) as exc:
        raise GitError(f"{start} is not inside a git checkout (use --repo PATH)", path=str(start)) from exc


def open_env_source(provider: SourceReader, checkout: Path,
                    ref: str = DEFAULT_REF) -> tuple[GitReader, ManifestSource]:
    """Fetch the remote and pin the ref's commit; everything after reads from that commit."""
    check_ref(ref, path="--ref")  # before anything reaches git (issue 9)
    url = check_repo_url(origin_url(checkout), path="origin")
    commit = provider.ref_commit(url, ref)
    reader = GitReader(provider, url, commit)
    source = ManifestSource(
        mode="env", remote=redact_url(url), ref=ref if ref.startswith("origin/") else f"origin/{ref}", commit=commit,
        deploy_blob=reader.blob_sha("deploy.json"), config_blob=reader.blob_sha("config.json"),
        ci_blob=reader.blob_sha("CI.json"))
    return reader, source


def open_file_source(deploy_file: Path, checkout: Path) -> tuple[WorkTreeReader, bytes, ManifestSource]:
    require_utf8_path(deploy_file, "--file")
    data = read_input(deploy_file, label="--file", max_bytes=MAX_MANIFEST_BYTES, error=ManifestInvalid)
    root = checkout_root(checkout)
    reader = WorkTreeReader(root)
    # Local mode reads the working tree: record what was read, so apply can tell it changed.
    source = ManifestSource(mode="file", file=str(deploy_file.resolve()), file_sha256=_sha256(data),
                            config_blob=_sha256(reader.read("config.json")), ci_blob=_sha256(reader.read("CI.json")))
    return reader, data, source


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
