"""Executors of a Compose host (STYLE 5): the code that changes things, one step kind each.

Every executor takes the host shell, the host's directory layout and the node's recorded `params`,
and returns a `StepResult`. With `dry_run` it does every read and check and changes nothing, saying
what it would do. Secret values never pass through here: they are copied from file to file by a
command that runs on the host; only key names reach a result.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import posixpath
import re
import shlex
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any

import attrs
import docker.errors
import yaml
from docker.utils import parse_repository_tag

from udeploy.engine.errors import UdeployError
from udeploy.engine.provider_api import StepResult
from udeploy.providers import compose_facts as facts
from udeploy.providers.hostshell import HostShell, run_in_dir

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


@attrs.define
class Written:
    """What this process already put on a host (or saw there) while stamping, so that the next
    service of the same project does not ask again: env files known to exist, and the git blob each
    compose file was last written from. Kept by the provider, used under the project's files lock;
    only facts this process wrote or read, for the length of one apply."""

    env_files: set[str] = attrs.field(factory=set)
    compose_blobs: dict[str, str] = attrs.field(factory=dict)


def stamp(shell: HostShell, layout: Layout, params: Mapping[str, Any], compose_yaml: bytes, blob_sha: str,
          secret: tuple[str, str] | None, dry_run: bool, written: Written | None = None,
          exclusive: AbstractContextManager[Any] | None = None) -> StepResult:
    """Write `<project>/<file>` and `<project>/env/<service>.env`; `secret` = (source, path on host).

    With `written`, a compose file this process already wrote from the same blob is not written
    again, and env files it already wrote, touched or saw are not looked up again (Compose v1 needs
    every env file of the project to exist; asking for all of them per service made a project's
    stamps quadratic in its size)."""
    written = Written() if written is None else written
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
    # The project's shared files (its compose file, every env file Compose v1 loads) change only under
    # `exclusive` (the provider's files lock of the project, held by every stamp of it, not by `up`:
    # each write replaces a file whole); everything above is read outside it.
    with exclusive or contextlib.nullcontext():
        unknown = [p for p in wanted if p != env_path and p not in written.env_files]
        missing = [p for p, exists in facts.files_exist(shell, unknown).items() if not exists] if unknown else []
        info["createdEnvFiles"] = missing
        if dry_run:
            return StepResult(True, f"would write {compose_path} and {env_path} ({', '.join(sorted(env))}"
                                    + (f" + secrets {', '.join(secret_keys)}" if secret_keys else "") + ")", info)
        if written.compose_blobs.get(compose_path) != blob_sha:
            shell.write_file(compose_path, compose_yaml)
            written.compose_blobs[compose_path] = blob_sha
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
        info["createdEnvFiles"] = shell.touch_missing(missing) if missing else []
        written.env_files.update(wanted)
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
    if probe.returncode == 127:
        raise UdeployError(f"neither docker-compose nor `docker compose` is installed on {shell.where}",
                           path=shell.host_id)
    if not probe.ok:
        raise UdeployError(f"cannot tell which Compose {shell.where} has: the probe exited {probe.returncode} "
                           f"({probe.stderr.strip()[-200:]})", path=shell.host_id)
    return ["docker-compose"] if probe.stdout.strip() == "v1" else ["docker", "compose"]


def recreate(shell: HostShell, layout: Layout, params: Mapping[str, Any], compose: list[str],
             dry_run: bool, exclusive: AbstractContextManager[Any] | None = None,
             known_labels: dict[str, dict[str, str]] | None = None) -> StepResult:
    """`up --force-recreate` of one service, under `exclusive` (the provider's project lock: two `up`s
    of a Compose v1 project race to create its network); the container ids before and after, for
    the log, are read outside it. The container read after is the service's runtime as `observe`
    reads it (`known_labels` as there), reported for apply's resume record."""
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
    # Compose's own Docker API timeout is 60 s: a stalled engine fails the step after the host's
    # docker read timeout instead, as every other call to it does.
    http_timeout = f"COMPOSE_HTTP_TIMEOUT={max(1, math.ceil(shell.docker_timeout.read))} "
    with exclusive or contextlib.nullcontext():
        result = run_in_dir(shell, layout.project_dir(project), command, env=http_timeout)
    info["log"] = result.tail()
    after = facts.service_container(shell, project, service)
    info["containerAfter"] = (after or {}).get("Id")
    if not result.ok:
        return StepResult(False, f"`{shlex.join(command)}` failed on {shell.host_id} (exit {result.returncode})",
                          info)
    return StepResult(True, f"recreated {project}/{service} on {shell.host_id}", info,
                      runtime=facts.container_state(shell, f"{shell.host_id}:{project}/{service}", after,
                                                    known_labels))
