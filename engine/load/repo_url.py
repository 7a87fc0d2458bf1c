"""Which repository URLs and refs udeploy hands to git (issue 9: pull-request content is hostile).

`deploy.json` `repo`, config.json `repository.url` and the CI declaration's `repo` come from a
branch anyone with a pull request can shape, and reach `git clone`. Git's transports can run
commands (`ext::sh -c …`, `fd::`), read without authentication (`git://`, `http://`), or take an
option (`-u…`, `ssh://-oProxyCommand=…`). So only the transports udeploy supports pass:

- `https://host/path`
- `ssh://[user@]host[:port]/path` and the scp-like `[user@]host:path`
- `file:///absolute/path` (the tests' bare repositories)

Everything else is refused by name (`repo-url-refused`), as is any whitespace or control
character, and any part that could read as an option. The checks run where a manifest is parsed
(so `plan --no-refresh` refuses too) and again in the git provider before any git command.

A ref (`--ref`, a plan's manifest ref) names a branch: it must be a valid refname under
`refs/heads/` by git's rules (`git check-ref-format`) and never start with `-`.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

from udeploy.engine.errors import UdeployError

ALLOWED_SCHEMES = ("https", "ssh", "file")
# `[user@]host:path` with no `/` before the colon is git's scp-like syntax.
SCP_LIKE = re.compile(r"^(?:(?P<user>[A-Za-z0-9._~+][A-Za-z0-9._~+-]*)@)?(?P<host>[A-Za-z0-9][A-Za-z0-9.-]*|"
                      r"\[[0-9A-Fa-f:.]+\]):(?P<path>[^:].*)$")
SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*)://")
TRANSPORT_HELPER = re.compile(r"^(?P<transport>[A-Za-z0-9][A-Za-z0-9+.-]*)::")
USERINFO = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/]*@")
REF_FORBIDDEN = set(" ~^:?*[\\")


class RepoUrlRefused(UdeployError, ValueError):
    """A repository URL with a transport udeploy does not support, or that git could misread."""

    code = "repo-url-refused"


class RefRefused(UdeployError, ValueError):
    """A ref that is not a valid branch name (or could read as an option)."""

    code = "ref-refused"


def check_repo_url(url: object, path: str) -> str:
    """`url` if git may be given it; else `RepoUrlRefused` naming the JSON path or argument."""
    if not isinstance(url, str) or not url:
        raise RepoUrlRefused(f"repository URL must be a non-empty string, not {type(url).__name__}", path=path)
    shown = _shown(url)
    helper = TRANSPORT_HELPER.match(url)
    if helper:
        raise RepoUrlRefused(f"repository URL {shown} uses git's '{helper['transport']}::' transport, which "
                             f"udeploy refuses (allowed: {_allowed()})", path=path)
    if url.startswith("-"):
        raise RepoUrlRefused(f"repository URL {shown} starts with '-' and would read as a git option", path=path)
    if any(c.isspace() or ord(c) < 0x20 or ord(c) == 0x7F for c in url):
        raise RepoUrlRefused(f"repository URL {shown} contains whitespace or control characters", path=path)
    scheme = SCHEME.match(url)
    if scheme:
        _check_url_with_scheme(url, scheme["scheme"].lower(), shown, path)
        return url
    if SCP_LIKE.fullmatch(url):
        return url
    raise RepoUrlRefused(f"repository URL {shown} is not a URL udeploy accepts (allowed: {_allowed()})", path=path)


def _check_url_with_scheme(url: str, scheme: str, shown: str, path: str) -> None:
    if scheme not in ALLOWED_SCHEMES:
        raise RepoUrlRefused(f"repository URL {shown} uses the '{scheme}://' transport, which udeploy refuses "
                             f"(allowed: {_allowed()})", path=path)
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        raise RepoUrlRefused(f"repository URL {shown} is malformed: {exc}", path=path) from None
    if scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise RepoUrlRefused(f"repository URL {shown}: file:// needs an absolute local path (file:///…)",
                                 path=path)
        return
    if not host or host.startswith("-") or (parts.username or "").startswith("-"):
        raise RepoUrlRefused(f"repository URL {shown} has no usable host (or one that reads as an option)",
                             path=path)


def _shown(url: str) -> str:
    """The URL as an error may print it: without userinfo (a token there is a secret, P7), bounded."""
    bare = USERINFO.sub(r"\1", url)
    return ascii(bare) if len(bare) <= 200 else ascii(bare[:200]) + "…"


def _allowed() -> str:
    return "https://, ssh://, user@host:path, file:///"


MAX_REF_BYTES = 255  # a branch is one file name under refs/heads/ on most file systems


def check_ref(ref: object, path: str) -> str:
    """`ref` if it is a branch git accepts (`origin/<branch>` or `<branch>`); else `RefRefused`.

    Git's refname rules (git-check-ref-format(1)) applied to `refs/heads/<branch>`, plus: never
    a leading `-`, so it can never read as an option such as `--upload-pack=…`.
    """
    if not isinstance(ref, str) or not ref:
        raise RefRefused("a ref must be a non-empty branch name", path=path)
    branch = ref.removeprefix("origin/")
    problem = ref_problem(branch)
    if problem:
        raise RefRefused(f"ref {ascii(ref)[:200]} is not a valid branch name: {problem}", path=path)
    return ref


def ref_problem(branch: str) -> str | None:
    """Why `refs/heads/<branch>` breaks git's refname rules, or None when it is valid."""
    if not branch:
        return "it is empty"
    try:
        if len(branch.encode("utf-8")) > MAX_REF_BYTES:
            return f"it is longer than {MAX_REF_BYTES} bytes"
    except UnicodeEncodeError:
        return "it is not valid Unicode (a lone surrogate)"
    if branch.startswith("-"):
        return "it starts with '-'"
    if any(ord(c) < 0x20 or ord(c) == 0x7F or c in REF_FORBIDDEN for c in branch):
        return "it contains a space, a control character or one of ~^:?*[\\"
    if ".." in branch or "@{" in branch:
        return "it contains '..' or '@{'"
    if branch.startswith("/") or branch.endswith("/") or "//" in branch or branch.endswith("."):
        return "it starts or ends with '/', contains '//', or ends with '.'"
    if any(part.startswith(".") or part.endswith(".lock") for part in branch.split("/")):
        return "a component starts with '.' or ends with '.lock'"
    return None


def redact_url(url: str) -> str:
    """The URL without userinfo: a remote like `https://ci-token:SECRET@host/repo` is recorded
    and printed as `https://host/repo` (P7)."""
    parts = urlsplit(url)
    if parts.scheme in ("http", "https") and "@" in parts.netloc:
        return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
    return url
