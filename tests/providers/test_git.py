"""The git provider's file reads: one `git cat-file --batch` per mirror answers them all, with the
same bytes and blob SHAs as git's own commands, and the same errors as before for what is not a blob."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.sample_repo import SampleRepo
from udeploy.engine.errors import GitError
from udeploy.providers.git import GitProvider

ROOT_FILES = ("deploy.json", "config.json", "CI.json", "README.md")


def _git(sample: SampleRepo, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(sample.origin), *args], check=True, capture_output=True).stdout


def test_reads_match_git_and_share_one_cat_file_process(sample: SampleRepo, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    provider = GitProvider(cache_dir=tmp_path / "cache")
    commit = provider.ref_commit(sample.url, "origin/master")
    started: list[Any] = []
    real_popen = subprocess.Popen

    def counting_popen(args: Any, *rest: Any, **kwargs: Any) -> Any:
        started.append(args)
        return real_popen(args, *rest, **kwargs)

    nested = [p for p in _git(sample, "ls-tree", "-r", "--name-only", commit).decode().splitlines() if "/" in p]
    files = [*ROOT_FILES, *nested[:3], *nested[-3:]]  # files in subdirectories go through their directory's listing
    monkeypatch.setattr(subprocess, "Popen", counting_popen)
    for _ in range(3):
        for path in files:
            got = provider.read(sample.url, commit, path)
            blob = _git(sample, "rev-parse", f"{commit}:{path}").decode().strip()
            assert (got.path, got.commit, got.blob_sha) == (path, commit, blob)
            assert got.data == _git(sample, "cat-file", "blob", blob)
    cat_files = [args for args in started if "cat-file" in args]
    assert sum("--batch" in args for args in cat_files) == 1
    assert len(cat_files) == 1 + 3 * len(files)  # the batch, and this test's own `git cat-file blob`s


@pytest.mark.parametrize("path", ["no-such-file.json", "deploy.json\nREADME.md", "./deploy.json", "deploy/no-such-file",
                                  "no-such-dir/deploy.json", "deploy//compose", "src/../deploy.json"])
def test_what_is_not_a_blob_fails_as_before(sample: SampleRepo, tmp_path: Path, path: str) -> None:
    provider = GitProvider(cache_dir=tmp_path / "cache")
    commit = provider.ref_commit(sample.url, "origin/master")
    with pytest.raises(GitError, match="does not exist at") as caught:
        provider.read(sample.url, commit, path)
    assert caught.value.path == path
    assert provider.read(sample.url, commit, "deploy.json").data  # the batch is still in step afterwards


def test_subjects_match_git_log_in_one_batch_and_leave_out_what_is_not_a_commit(
        sample: SampleRepo, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """K5: the PR comment's diff names each commit by its subject; one cat-file batch reads them all."""
    multi = sample.commit_change("VERSION-notes", "x\n", "first line\nsecond line\n\nbody paragraph")
    provider = GitProvider(cache_dir=tmp_path / "cache")
    head = provider.ref_commit(sample.url, "origin/master")
    commits = [*sample.commits.values(), multi]
    started: list[Any] = []
    real_popen = subprocess.Popen

    def counting_popen(args: Any, *rest: Any, **kwargs: Any) -> Any:
        started.append(args)
        return real_popen(args, *rest, **kwargs)

    tree = _git(sample, "rev-parse", f"{head}^{{tree}}").decode().strip()
    monkeypatch.setattr(subprocess, "Popen", counting_popen)
    got = provider.subjects(sample.url, [*commits, *commits, tree, "0" * 40, head[:7]])
    expected = {c: _git(sample, "log", "-1", "--format=%s", c).decode().rstrip("\n") for c in commits}
    assert got == expected
    assert got[multi] == "first line second line"
    assert sum("cat-file" in args for args in started) == 1
