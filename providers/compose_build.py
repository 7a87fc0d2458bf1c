"""Target-side builds on a Compose host (B1-B4): the host fetches the repository, exports the
commit with `git archive` and builds from that archive, never from the operator's tree. Provider
hosts do it through their node-local egress proxy, scoped to the one step (B3); builds reuse the
current image as cache (B4).
"""

from __future__ import annotations

import posixpath
import shlex
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from udeploy.engine.errors import CommitNotFound
from udeploy.engine.load.repo_url import check_repo_url
from udeploy.engine.provider_api import StepResult
from udeploy.providers import compose_facts as facts
from udeploy.providers.compose_ops import Layout
from udeploy.providers.git import FULL_SHA
from udeploy.providers.hostshell import HostShell, run_in_dir

# -- target-side build (B1, B3, B4): the host fetches, archives and builds; never the operator's tree

PROXY_VARIABLES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy")
PROXY_NAME = "provider-gateway-ws-egress"


@attrs.frozen
class BuildProxy:
    """B3: a provider host's node-local egress proxy, given to one step's process and build only.

    Never written anywhere lasting: not /etc/docker/daemon.json, not a shell profile, not the Docker
    CLI config. The fetch gets it in its own environment (and as git's `-c http.proxy`, which beats
    any configured proxy); the build gets it as `--build-arg`s, with `--network host`.
    """

    proxy: str
    probe_url: str

    @property
    def label(self) -> str:
        return f"{PROXY_NAME}:{_redact(self.proxy)}"

    def variables(self) -> dict[str, str]:
        return dict.fromkeys(PROXY_VARIABLES, self.proxy)


def _redact(url: str) -> str:
    """A proxy URL without its userinfo (a password must not reach a log)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.username and not parts.password:
        return url
    return urllib.parse.urlunsplit(parts._replace(netloc=f"***@{parts.hostname}"
                                                  + (f":{parts.port}" if parts.port else "")))


def _shown(argv: Sequence[str]) -> list[str]:
    """argv as logged: proxy build args without userinfo."""
    out = []
    for arg in argv:
        key, eq, value = arg.partition("=")
        out.append(f"{key}={_redact(value)}" if eq and key in PROXY_VARIABLES else arg)
    return out


def _probe(shell: HostShell, proxy: BuildProxy, lines: list[str], what: str) -> StepResult | None:
    """Probe through the proxy before `what`; a failure stops the step (no fallback to direct internet)."""
    probe = facts.egress_probe(shell, proxy.proxy, proxy.probe_url)
    lines.append(f"target_build_proxy_probe_url={probe.url}")
    if probe.ok:
        lines.append("target_build_proxy_probe=ok")
        return None
    lines.append(f"target_build_proxy_probe=failed: {probe.failure}")
    return StepResult(False, f"egress probe of {probe.url} through {proxy.label} failed on {shell.host_id} "
                             f"({probe.failure}): no {what} without the proxy, and no fallback to direct internet (B3)",
                      {"proxy": proxy.label, "probeUrl": probe.url, "probeStatus": probe.status, "log": lines})


_EXPORT = r"""
set -eu
repo=$1 commit=$2 mirror=$3 dest=$4 ctx=$5 proxy=${6:-}
if [ -n "$proxy" ]; then  # B3: this process only
  export HTTP_PROXY="$proxy" HTTPS_PROXY="$proxy" ALL_PROXY="$proxy"
  export http_proxy="$proxy" https_proxy="$proxy" all_proxy="$proxy"
  unset NO_PROXY no_proxy
fi
g() { if [ -n "$proxy" ]; then git -c http.proxy="$proxy" "$@"; else git "$@"; fi; }
if [ -d "$mirror" ]; then
  g -C "$mirror" fetch -q --prune origin '+refs/heads/*:refs/heads/*' '+refs/tags/*:refs/tags/*'
else
  mkdir -p "${mirror%/*}"; g clone -q --mirror -- "$repo" "$mirror"
fi
full=$(git -C "$mirror" rev-parse --verify --quiet "$commit^{commit}") || {
  echo "commit $commit not in $repo" >&2; exit 4; }
rm -rf "$dest"; mkdir -p "$dest"
if [ -n "$ctx" ]; then git -C "$mirror" archive --format=tar "$full" -- "$ctx" | tar -x -C "$dest"
else git -C "$mirror" archive --format=tar "$full" | tar -x -C "$dest"; fi
echo "target_source_repo=$repo"
echo "target_source_commit=$full"
echo "target_source_archive=git-archive"
echo "target_build_context_files=$(find "$dest" -type f | wc -l | tr -d ' ')"
"""

_LS_REMOTE = r"""
proxy=${2:-}
if [ -n "$proxy" ]; then
  export HTTP_PROXY="$proxy" HTTPS_PROXY="$proxy" ALL_PROXY="$proxy"
  export http_proxy="$proxy" https_proxy="$proxy" all_proxy="$proxy"
  unset NO_PROXY no_proxy
  exec git -c http.proxy="$proxy" ls-remote --exit-code "$1" >/dev/null
fi
exec git ls-remote --exit-code "$1" >/dev/null
"""


def export_source(shell: HostShell, layout: Layout, params: Mapping[str, Any], service_id: str,
                  dry_run: bool, proxy: BuildProxy | None = None) -> StepResult:
    repo, commit = str(params["repo"]), str(params["commit"])
    check_repo_url(repo, path=f"{service_id}/export-source.repo")  # plan params are hostile too (issue 9)
    if not FULL_SHA.fullmatch(commit):
        raise CommitNotFound(f"commit {ascii(commit)[:60]} is not a full SHA",
                             path=f"{service_id}/export-source.commit")
    mirror = layout.mirror_dir(repo)
    dest = layout.build_dir(params.get("project"), service_id, commit)
    info: dict[str, Any] = {"repo": repo, "commit": commit, "mirror": mirror, "buildDir": dest,
                            "context": params.get("context"), "proxy": proxy.label if proxy else None}
    lines = [f"target_source_proxy={proxy.label if proxy else 'none'}"]
    if proxy is not None:
        stopped = _probe(shell, proxy, lines, f"fetch of {repo}")
        if stopped is not None:
            return attrs.evolve(stopped, facts={**info, **stopped.facts})
    via = proxy.proxy if proxy else ""
    if dry_run:
        probe = shell.run(_LS_REMOTE, repo, via, timeout=60)
        info["log"] = lines + probe.tail()
        return StepResult(probe.ok, f"would fetch {repo} on {shell.host_id} and git archive {commit[:12]} into "
                                    f"{dest}" if probe.ok else f"{repo} is not reachable from {shell.host_id}", info)
    result = shell.run(_EXPORT, repo, commit, mirror, dest, str(params.get("context") or ""), via)
    info["log"] = lines + result.tail(40)
    if not result.ok:
        return StepResult(False, f"exporting {repo}@{commit[:12]} on {shell.host_id} failed "
                                 f"(exit {result.returncode})", info)
    return StepResult(True, f"exported {commit[:12]} of {repo} into {dest} on {shell.host_id}"
                      + (f" through {proxy.label}" if proxy else ""), info)


def build_image(shell: HostShell, layout: Layout, params: Mapping[str, Any], service_id: str,
                dry_run: bool, proxy: BuildProxy | None = None) -> StepResult:
    """`docker build` of the exported archive on the host's own engine (its legacy builder: no fresh
    builder per deploy), tagged `<image>` and `<name>:latest`, with the V1 labels (B4: cache from
    the current image, inline cache metadata, the declared warm build base)."""
    image, dockerfile = str(params["image"]), str(params["dockerfile"])
    labels: Mapping[str, str] = params.get("labels") or {}
    name, _, tag = image.rpartition(":")
    commit = labels.get("unidesk.ai/source-commit") or tag
    dest = layout.build_dir(params.get("project"), service_id, commit)
    context = posixpath.join(dest, str(params.get("context") or ""))
    info: dict[str, Any] = {"image": image, "proxy": proxy.label if proxy else None}
    lines = [f"target_build_proxy={proxy.label if proxy else 'none'}"]
    if proxy is not None:
        stopped = _probe(shell, proxy, lines, f"build of {image}")
        if stopped is not None:
            return attrs.evolve(stopped, facts={**info, **stopped.facts})
    current = f"{name}:latest"
    cache_from = current if facts.image_info(shell, current) is not None else None
    # `--cache-to type=inline` as a build arg: BuildKit embeds the cache metadata in the image; the
    # engine's legacy builder (the lab's: no buildx) ignores it and keeps its layer cache in the engine.
    build_args = {**(proxy.variables() if proxy else {}), "BUILDKIT_INLINE_CACHE": "1"}
    base_arg = params.get("buildBaseArg")
    base = f"{name}-build-base" if base_arg else None
    if base is not None and facts.image_info(shell, base) is None:
        base = None  # declared, but no warm base on this host yet: the Dockerfile's default applies
    if base_arg and base:
        build_args[str(base_arg)] = base
    argv = ["docker", "build", "-f", posixpath.join(dest, dockerfile), "-t", image, "-t", current]
    argv += ["--network", "host"] if proxy else []
    argv += [arg for key, value in labels.items() for arg in ("--label", f"{key}={value}")]
    argv += ["--cache-from", cache_from] if cache_from else []
    argv += [arg for key, value in build_args.items() for arg in ("--build-arg", f"{key}={value}")]
    argv.append(context)
    lines += [f"target_build_network={'host' if proxy else 'default'}", f"target_build_context={context}",
              f"target_build_cache_from={cache_from or 'none'}", "target_build_cache_to=type=inline"]
    if base_arg:
        lines.append(f"target_build_base_image={base or 'none'}")
    shown = _shown(argv)
    info.update(command=shlex.join(shown), cacheFrom=cache_from, buildBase=base,
                buildArgs=sorted(build_args))
    if dry_run:
        exists = facts.files_exist(shell, [context])[context]
        info["log"] = lines
        return StepResult(True, f"would run `{shlex.join(shown)}` on {shell.host_id}"
                          + ("" if exists else " after export-source"), info)
    missing = facts.files_exist(shell, [posixpath.join(dest, dockerfile), context])
    if not all(missing.values()):
        info["log"] = lines
        return StepResult(False, f"build context is incomplete on {shell.host_id}: "
                                 f"{', '.join(p for p, ok in missing.items() if not ok)} (run export-source)", info)
    result = run_in_dir(shell, dest, argv, env="export DOCKER_BUILDKIT=0; ")
    info["log"] = lines + result.tail(40)
    if not result.ok:
        return StepResult(False, f"docker build of {image} on {shell.host_id} failed (exit {result.returncode})",
                          info)
    built = facts.image_labels(shell, image)
    wrong = sorted(k for k, v in labels.items() if built.get(k) != v)
    if wrong:
        return StepResult(False, f"built {image} lacks the expected labels {', '.join(wrong)}", info)
    return StepResult(True, f"built {image} on {shell.host_id} from the git archive of {commit[:12]}"
                      + (f" through {proxy.label}" if proxy else ""), info)
