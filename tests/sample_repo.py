"""Materialize fixtures/unidesk-sample as a real git remote with real commits.

`materialize(workdir)` creates, under `workdir`:

- `origin.git`: a bare repository standing in for https://github.com/pikasTech/unidesk;
- `clone/`: a working clone whose `origin` is that GitHub URL;
- `gitconfig`: a private global git config (user identity, and `url.<file://origin>.insteadOf`
  so the GitHub URL resolves to the bare repo). It only takes effect through `SampleRepo.env`
  (`GIT_CONFIG_GLOBAL`), never through the user's ~/.gitconfig.

The history is: "initial" (the fixture tree), "backend-core-v2" and "frontend-v2" (each bumps that
service's VERSION), optionally "collision-a"/"collision-b" (siblings whose SHAs share a 7-hex
prefix) merged by "collision-merge", then "deploy": `deploy.json` rendered from
`deploy.template.json`, every "@HEAD" pinned to "frontend-v2". Identity and dates are fixed,
so the SHAs are the same on every run for the same fixture content.

Demo: `python3 -m tests.sample_repo --out DIR [--colliding-short-sha]` prints the result as JSON.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import git

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "unidesk-sample"
REPO_URL = "https://github.com/pikasTech/unidesk"
AUTHOR_NAME = "UniDesk Sample"
AUTHOR_EMAIL = "sample@unidesk.invalid"
EPOCH = 1767225600  # 2026-01-01T00:00:00Z; the n-th commit is dated EPOCH + 60 * n
SHORT = 7
# Fixture files that are inputs to the materializer, not part of the sample monorepo.
NOT_IN_REPO = {"deploy.template.json"}

Doc = dict[str, Any]  # a parsed JSON document


@dataclass
class SampleRepo:
    workdir: Path
    origin: Path  # the bare repository
    clone: Path  # a working clone; its `origin` remote is REPO_URL
    env: dict[str, str]  # add to os.environ for every git call (GitPython or CLI)
    commits: dict[str, str] = field(default_factory=dict)  # name -> full SHA, in commit order
    collision_prefix: str | None = None  # shared by exactly the commits "collision-a" and "-b"
    url: str = REPO_URL
    _clock: int = 0

    @property
    def origin_url(self) -> str:
        return self.origin.as_uri()

    @cached_property
    def repo(self) -> git.Repo:
        repo = git.Repo(self.clone)
        repo.git.update_environment(**self.env)
        return repo

    def head(self) -> str:
        return self.repo.head.commit.hexsha

    def short(self, sha: str) -> str:
        """The shortest unique abbreviation of at least 7 hex digits."""
        return str(self.repo.git.rev_parse(f"--short={SHORT}", sha))

    def deploy_json(self, ref: str = "HEAD") -> Doc:
        doc: Doc = json.loads(self.repo.git.show(f"{ref}:deploy.json"))
        return doc

    def commit_change(
        self, path: str, content: str | bytes | None, message: str, *, name: str | None = None
    ) -> str:
        """Write (or delete, with content=None) one file, commit, push to master; returns the SHA."""
        target = self.clone / path
        if content is None:
            target.unlink()
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
        return self._commit(message, name=name)

    def set_pin(self, env: str, service_id: str, commit: str) -> str:
        """Set environments.<env>.services[id].commitId to `commit` verbatim, commit, push."""
        doc = self.deploy_json()
        entries = [s for s in doc["environments"][env]["services"] if s["id"] == service_id]
        if not entries:
            raise KeyError(f"{service_id} is not listed in deploy.json#environments.{env}")
        entries[0]["commitId"] = commit
        return self.commit_change("deploy.json", _dump(doc), f"deploy: pin {env} {service_id} to {commit}")

    # -- internals

    def _dates(self) -> dict[str, str]:
        self._clock += 1
        stamp = f"@{EPOCH + 60 * self._clock} +0000"
        return {"GIT_AUTHOR_DATE": stamp, "GIT_COMMITTER_DATE": stamp}

    def _commit(self, message: str, *, name: str | None = None) -> str:
        repo = self.repo
        repo.git.add("-A")
        repo.git.commit("-q", "-m", message, env=self._dates())
        return self._push(repo.head.commit.hexsha, name)

    def _push(self, sha: str, name: str | None) -> str:
        self.repo.git.push("-q", "-u", "origin", "HEAD:refs/heads/master")
        self.commits[name or sha] = sha
        return sha

    def _collide(self) -> None:
        """Add two sibling commits whose SHAs share a 7-hex prefix, and merge them into master.

        Birthday search over candidate commit objects that differ only in their message: about
        sqrt(16**7) ~ 16k SHA-1s computed in Python, then only the winning pair is written.
        """
        repo = self.repo
        note = self.clone / "docs" / "short-sha-collision.md"
        note.parent.mkdir(exist_ok=True)
        note.write_text("Two commits touching this file share a 7-hex SHA prefix on purpose (M5).\n")
        repo.git.add("-A")
        tree, parent = repo.git.write_tree(), self.head()
        stamp = self._dates()["GIT_AUTHOR_DATE"][1:]
        ident = f"{AUTHOR_NAME} <{AUTHOR_EMAIL}> {stamp}"
        header = f"tree {tree}\nparent {parent}\nauthor {ident}\ncommitter {ident}\n\n"
        seen: dict[str, bytes] = {}
        i = 0
        while True:
            body = f"{header}Short-SHA collision candidate {i}\n".encode()
            sha = hashlib.sha1(b"commit %d\0" % len(body) + body).hexdigest()
            if sha[:SHORT] in seen:
                pair = (seen[sha[:SHORT]], body)
                break
            seen[sha[:SHORT]] = body
            i += 1
        shas = []
        for n, body in enumerate(pair):
            tmp = self.workdir / f".collision-{n}"
            tmp.write_bytes(body)
            shas.append(repo.git.hash_object("-w", "-t", "commit", str(tmp)))
            tmp.unlink()
        merge = repo.git.commit_tree(
            "-p", shas[0], "-p", shas[1], "-m", "Merge short-SHA collision pair", tree, env=self._dates()
        )
        repo.git.update_ref("HEAD", merge)  # the index already holds `tree`
        self.commits["collision-a"], self.commits["collision-b"] = shas
        self._push(merge, "collision-merge")
        self.collision_prefix = shas[0][:SHORT]


def _dump(doc: Doc) -> str:
    return json.dumps(doc, indent=2) + "\n"


def _write_gitconfig(path: Path, origin: Path) -> None:
    # Both spellings of the GitHub URL map to the bare repo (insteadOf matches the longest prefix).
    path.write_text(
        f"[user]\n\tname = {AUTHOR_NAME}\n\temail = {AUTHOR_EMAIL}\n"
        "[init]\n\tdefaultBranch = master\n"
        "[commit]\n\tgpgSign = false\n"
        "[core]\n\tautocrlf = false\n"
        f'[url "{origin.as_uri()}"]\n\tinsteadOf = {REPO_URL}\n\tinsteadOf = {REPO_URL}.git\n'
    )


def render_deploy_json(sample: SampleRepo, template: Doc, source_head: str) -> Doc:
    """Replace template commitIds "@HEAD" / "@<commit name>" with real pins.

    dev pins use the unique short SHA (7 hex digits when unique), prod pins the full SHA.
    """
    doc: Doc = json.loads(json.dumps(template))
    for env_name, env in doc["environments"].items():
        for entry in env["services"]:
            token = entry["commitId"]
            if not token.startswith("@"):
                continue
            sha = source_head if token == "@HEAD" else sample.commits[token[1:]]
            entry["commitId"] = sample.short(sha) if env_name == "dev" else sha
    return doc


def init_empty(workdir: Path) -> SampleRepo:
    """An empty bare origin, a clone of it through the GitHub URL, and the private git config."""
    workdir = Path(workdir).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    origin, clone, config = workdir / "origin.git", workdir / "clone", workdir / "gitconfig"
    for p in (origin, clone, config):
        if p.exists():
            raise FileExistsError(p)
    _write_gitconfig(config, origin)
    env = {"GIT_CONFIG_GLOBAL": str(config), "GIT_CONFIG_NOSYSTEM": "1"}
    cli = git.Git(str(workdir))
    cli.update_environment(**env)
    cli.init("-q", "--bare", "-b", "master", str(origin))
    cli.clone("-q", REPO_URL, str(clone))  # empty remote: git only warns
    sample = SampleRepo(workdir=workdir, origin=origin, clone=clone, env=env)
    sample.repo.git.symbolic_ref("HEAD", "refs/heads/master")
    return sample


def materialize(workdir: Path, *, colliding_short_sha: bool = False) -> SampleRepo:
    sample = init_empty(workdir)
    clone = sample.clone

    shutil.copytree(
        FIXTURE,
        clone,
        dirs_exist_ok=True,
        ignore=lambda _d, names: [n for n in names if n in NOT_IN_REPO or n == "__pycache__"],
    )
    sample._commit("Import UniDesk sample monorepo", name="initial")
    sample.commit_change(
        "src/components/backend-core/VERSION", "2\n", "backend-core: v2", name="backend-core-v2"
    )
    sample.commit_change("src/components/frontend/VERSION", "2\n", "frontend: v2", name="frontend-v2")
    source_head = sample.head()  # "@HEAD" pins: the same commit with or without the collision pair
    if colliding_short_sha:
        sample._collide()

    template = json.loads((FIXTURE / "deploy.template.json").read_text())
    pins = render_deploy_json(sample, template, source_head)
    sample.commit_change("deploy.json", _dump(pins), "deploy: pin services", name="deploy")
    return sample


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m tests.sample_repo", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--out", type=Path, required=True, help="empty or missing directory to create the repos in"
    )
    parser.add_argument("--colliding-short-sha", action="store_true")
    args = parser.parse_args(argv)
    sample = materialize(args.out, colliding_short_sha=args.colliding_short_sha)
    json.dump(
        {
            "origin": str(sample.origin),
            "clone": str(sample.clone),
            "url": sample.url,
            "commits": sample.commits,
            "collisionPrefix": sample.collision_prefix,
            "env": sample.env,
            "shell": " ".join(f"export {k}={v};" for k, v in sample.env.items()),
        },
        sys.stdout,
        indent=2,
    )
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
