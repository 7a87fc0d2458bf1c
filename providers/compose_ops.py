"""Executors of a Compose host (STYLE 5): the code that changes things, one step kind each.

Every executor takes the host shell, the host's directory layout and the node's recorded `params`,
and returns a `StepResult`. With `dry_run` it does every read and check and changes nothing, saying
what it would do. Secret values never pass through here: they are copied from file to file by a
command that runs on the host; only key names reach a result.
"""

from __future__ import annotations

import hashlib
import posixpath
import re
import shlex
import urllib.parse
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import docker.errors
import yaml
from docker.utils import parse_repository_tag

from engine.errors import UdeployError
from engine.provider_api import StepResult
from providers import compose_facts as facts
from providers.hostshell import HostShell

ENV_VALUE = re.compile(r"^[^\n\r]*$")
SECRET_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@attrs.frozen
class Layout:
    """Where udeploy keeps things on a host: `<composeRoot>/<project>/` per Compose project."""

    compose_root: str

    def project_dir(self, project: str) -> str:
        return posixpath.join(self.compose_root, project)

    def compose_path(self, project: str, file: str) -> str:
        return posixpath.join(self.project_dir(project), posixpath.basename(file))

    def env_file(self, project: str, service: str) -> str:
        return posixpath.join(self.project_dir(project), "env", f"{service}.env")

    def mirror_dir(self, repo: str) -> str:
        """The host's own bare mirror of a source repository (B1: the target fetches)."""
        return posixpath.join(self.compose_root, ".udeploy", "src", hashlib.sha256(repo.encode()).hexdigest()[:16]
                              + ".git")

    def build_dir(self, project: str | None, service: str, commit: str) -> str:
        base = posixpath.join(self.project_dir(project), ".build") if project else posixpath.join(
            self.compose_root, ".udeploy", "build")
        return posixpath.join(base, f"{service}-{commit[:12]}")


# -- transfer-image (C3): pull the artifact, retag for the Compose service; never build


def transfer_image(shell: HostShell, params: Mapping[str, Any], dry_run: bool) -> StepResult:
    image, local = str(params["image"]), str(params["localImage"])
    tags = [str(t) for t in params.get("localTags") or ["latest"]]
    targets = [f"{local}:{t}" for t in tags]
    present = facts.image_info(shell, image)
    info: dict[str, Any] = {"image": image, "localTags": targets, "alreadyPresent": present is not None}
    if dry_run:
        return StepResult(True, f"would pull {image} into {shell.host_id} and tag {', '.join(targets)}", info)
    client = shell.docker()
    repository, tag = parse_repository_tag(image)
    try:
        pulled = facts.docker_call(shell, f"pull {image}", client.images.pull, repository, tag=tag or "latest")
    except docker.errors.APIError as exc:
        return StepResult(False, f"pull of {image} on {shell.host_id} failed: {exc.explanation or exc}", info)
    for t in tags:
        facts.docker_call(shell, f"tag {image}", client.api.tag, pulled.id, local, t, force=True)
    info.update(imageId=pulled.id, repoDigests=pulled.attrs.get("RepoDigests", []))
    return StepResult(True, f"pulled {image} ({pulled.id[:19]}) on {shell.host_id}, tagged {', '.join(targets)}",
                      info)


# -- stamp (V2): the compose file from git at the manifest commit, the service env file


def stamp(shell: HostShell, layout: Layout, params: Mapping[str, Any], compose_yaml: bytes, blob_sha: str,
          secret: tuple[str, str] | None, dry_run: bool) -> StepResult:
    """Write `<project>/<file>` and `<project>/env/<service>.env`; `secret` = (source, path on host)."""
    project, service = str(params["project"]), str(params["service"])
    env: Mapping[str, str] = params.get("env") or {}
    bad = [k for k, v in env.items() if not SECRET_KEY.match(k) or not ENV_VALUE.match(str(v))]
    if bad:
        return StepResult(False, f"stamp env has keys or values an env file cannot hold: {', '.join(bad)}", {})
    secret_keys = [str(k) for k in params.get("secretKeys") or []]
    if not all(SECRET_KEY.match(k) for k in secret_keys):
        return StepResult(False, f"secret key names must be env names: {', '.join(secret_keys)}", {})
    compose_path = layout.compose_path(project, str(params["file"]))
    env_path = layout.env_file(project, service)
    try:
        env_files = referenced_env_files(compose_yaml, layout.project_dir(project))
    except ValueError as exc:
        return StepResult(False, f"compose file {params['file']} at {blob_sha[:12]}: {exc}", {})
    if env_path not in env_files.get(service, []):
        return StepResult(False, f"compose file {params['file']} at {blob_sha[:12]} has no service {service!r} "
                                 f"loading ./env/{service}.env: the stamp would not reach the container", {})
    wanted = sorted({p for paths in env_files.values() for p in paths})
    info: dict[str, Any] = {"projectDir": layout.project_dir(project), "composeFile": compose_path,
                            "composeBlob": blob_sha, "manifestCommit": params.get("manifestCommit"),
                            "envFile": env_path, "envKeys": sorted(env)}
    if secret_keys:
        if secret is None:
            return StepResult(False, f"{service} requires secrets {', '.join(secret_keys)} but has no secret "
                                     "source", info)
        presence = facts.secret_presence(shell, secret[0], secret[1], secret_keys)
        info["runtimeSecrets"] = presence
        if not presence["requiredSecretsPresent"]:
            return StepResult(False, f"missing runtime secrets {', '.join(presence['missingSecretKeys'])} in "
                                     f"{secret[0]}: nothing was changed ({presence['recommendedAction']})", info)
    missing = [p for p, exists in facts.files_exist(shell, [p for p in wanted if p != env_path]).items()
               if not exists]
    info["createdEnvFiles"] = missing
    if dry_run:
        return StepResult(True, f"would write {compose_path} and {env_path} ({', '.join(sorted(env))}"
                                + (f" + secrets {', '.join(secret_keys)}" if secret_keys else "") + ")", info)
    shell.write_file(compose_path, compose_yaml)
    body = "".join(f"{k}={v}\n" for k, v in env.items()).encode()
    if secret_keys:
        assert secret is not None
        staged = env_path + ".udeploy-stage"
        shell.write_file(staged, body, mode=0o600)
        copied = _copy_secret_lines(shell, secret[1], staged, env_path, secret_keys)
        if not copied.ok:
            return StepResult(False, f"copying secrets into {env_path} failed (exit {copied.returncode})", info)
        info["secretKeysCopied"] = secret_keys
    else:
        shell.write_file(env_path, body)
    info["createdEnvFiles"] = shell.touch_missing(missing)
    return StepResult(True, f"stamped {service} in {layout.project_dir(project)} on {shell.host_id} "
                            f"(compose blob {blob_sha[:12]})", info)


def _copy_secret_lines(shell: HostShell, source: str, staged: str, dest: str, keys: Sequence[str]) -> Any:
    """On the host: append the keys' lines from the secret file to the staged env file, then move it.
    A failure removes the staged file, which may already hold secret lines."""
    pattern = "^[ \t]*(export[ \t]+)?(" + "|".join(keys) + ")="
    script = ('{ grep -E "$3" "$1" | sed -E "s/^[ \t]*(export[ \t]+)?//" >> "$2" && chmod 600 "$2" '
              '&& mv -f "$2" "$4"; } || { rc=$?; rm -f "$2"; exit $rc; }')
    return shell.run(script, source, staged, pattern, dest, timeout=30)


def referenced_env_files(compose_yaml: bytes, project_dir: str) -> dict[str, list[str]]:
    """Service -> its `env_file`s as host paths (Compose v1 refuses to load a file with a missing one)."""
    try:
        doc = yaml.safe_load(compose_yaml)
    except yaml.YAMLError as exc:
        raise ValueError(f"not valid YAML: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise ValueError("no services mapping")
    found: dict[str, list[str]] = {}
    for name, spec in doc["services"].items():
        entries = (spec or {}).get("env_file") or []
        paths = []
        for entry in [entries] if isinstance(entries, str | dict) else entries:
            path = entry.get("path") if isinstance(entry, dict) else entry
            if path:
                paths.append(posixpath.normpath(posixpath.join(project_dir, str(path))))
        found[str(name)] = paths
    return found


# -- recreate (C3): exactly one service, from the image already on the host


def compose_command(shell: HostShell) -> list[str]:
    """`docker-compose` (v1) when installed on the host, else `docker compose` (v2)."""
    probe = shell.run("if command -v docker-compose >/dev/null 2>&1; then echo v1; "
                      "elif docker compose version >/dev/null 2>&1; then echo v2; else exit 127; fi", timeout=30)
    if not probe.ok:
        raise UdeployError(f"neither docker-compose nor `docker compose` is installed on {shell.where}",
                           path=shell.host_id)
    return ["docker-compose"] if probe.stdout.strip() == "v1" else ["docker", "compose"]


def recreate(shell: HostShell, layout: Layout, params: Mapping[str, Any], compose: list[str],
             dry_run: bool) -> StepResult:
    project, service = str(params["project"]), str(params["service"])
    path = layout.compose_path(project, str(params["file"]))
    base = [*compose, "-p", project, "-f", path]
    command = [*base, "up", "-d", "--no-build", "--no-deps", "--force-recreate", service]
    before = (facts.service_container(shell, project, service) or {}).get("Id")
    info: dict[str, Any] = {"command": shlex.join(command), "projectDir": layout.project_dir(project),
                            "containerBefore": before}
    if dry_run:
        stamped = facts.files_exist(shell, [path])[path]
        return StepResult(True, f"would run `{shlex.join(command)}`" + ("" if stamped else f" once {path} is stamped")
                          + (f", replacing container {before[:12]}" if before else ""), info)
    result = _in_dir(shell, layout.project_dir(project), command)
    info["log"] = result.tail()
    info["containerAfter"] = (facts.service_container(shell, project, service) or {}).get("Id")
    if not result.ok:
        return StepResult(False, f"`{shlex.join(command)}` failed on {shell.host_id} (exit {result.returncode})",
                          info)
    return StepResult(True, f"recreated {project}/{service} on {shell.host_id}", info)


def _in_dir(shell: HostShell, directory: str, argv: Sequence[str], env: str = "") -> Any:
    return shell.run(f'cd "$1" && shift && {env}exec "$@"', directory, *argv)


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
  mkdir -p "${mirror%/*}"; g clone -q --mirror "$repo" "$mirror"
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
    result = _in_dir(shell, dest, argv, env="export DOCKER_BUILDKIT=0; ")
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
