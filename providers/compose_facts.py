"""Readers of a Compose host's observed state (STYLE 5): one call or command, then a `process`.

Nothing here changes the host. Each reader returns a typed value: the running container of one
Compose service (`RuntimeState`; a batch lists a project's containers once, `project_containers`),
its health (`HealthState`), whether a secret source file holds the required keys (names and
lengths only, never values), whether an image or a file exists, whether the host's node-local
egress proxy answers (`EgressProbe`, B3).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import docker
import docker.errors
import paramiko
import requests

from udeploy.engine.provider_api import HealthState, Presence, ProviderUnreachable, RuntimeState
from udeploy.providers.hostshell import HostShell
from udeploy.providers.net_cause import docker_unreachable

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
# Identity labels a reader keeps: ours (V1) and the OCI ones an upstream image is checked by (P10).
IDENTITY_PREFIXES = ("unidesk.ai/", "org.opencontainers.image.")
DEPLOY_ENV_PREFIX = "UNIDESK_DEPLOY_"

# Prints "<key>\t<length of value>" for every KEY=VALUE line of the file in $1; values never leave awk.
_KEY_LENGTHS = r"""
[ -f "$1" ] || exit 3
awk '
  /^[ \t]*(#|$)/ { next }
  {
    line = $0; sub(/^[ \t]*export[ \t]+/, "", line)
    eq = index(line, "="); if (eq == 0) next
    key = substr(line, 1, eq - 1); gsub(/[ \t]/, "", key)
    value = substr(line, eq + 1)
    if (value ~ /^".*"$/ || value ~ /^\047.*\047$/) value = substr(value, 2, length(value) - 2)
    printf "%s\t%d\n", key, length(value)
  }' "$1"
"""


# Prints the HTTP status of a GET of $2 made *through* the proxy $1, on the host (curl, else python3).
# NO_PROXY is dropped first: an operator's exemption list must not let the probe bypass the proxy.
_PROXY_PROBE = r"""
proxy=$1 url=$2 t=$3
unset NO_PROXY no_proxy
if command -v curl >/dev/null 2>&1; then
  exec curl -sS -o /dev/null -m "$t" --proxy "$proxy" -w '%{http_code}' "$url"
fi
exec python3 - "$proxy" "$url" "$t" <<'PY'
import sys, urllib.request, urllib.error
proxy, url, t = sys.argv[1], sys.argv[2], float(sys.argv[3])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": proxy, "https": proxy}))
try:
    with opener.open(url, timeout=t) as r:
        status = r.status
except urllib.error.HTTPError as e:
    status = e.code
except Exception as e:
    sys.stderr.write(str(getattr(e, "reason", e))); sys.exit(7)
sys.stdout.write(str(status))
PY
"""


def docker_call(shell: HostShell, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run one SDK call; a transport failure becomes ProviderUnreachable naming the host and the cause."""
    began = time.monotonic()
    try:
        return fn(*args, **kwargs)
    except docker.errors.DockerException:
        raise  # the engine answered (APIError, ImageNotFound, ...): the caller decides
    except (requests.exceptions.ConnectionError, OSError, paramiko.SSHException) as exc:
        raise docker_unreachable(shell.host_id, shell.endpoint, exc, began, shell.docker_timeout, what) from exc


# -- the running container of a Compose service


def service_container(shell: HostShell, project: str, service: str) -> Mapping[str, Any] | None:
    """`docker inspect` of the newest container of project/service (a running one first), or None.

    One list call (summaries, not an inspect per container), then one inspect; a container removed in
    between (a concurrent recreate) is looked up again.
    """
    filters = {"label": [f"{PROJECT_LABEL}={project}", f"{SERVICE_LABEL}={service}"]}
    for _ in range(3):
        found = docker_call(shell, f"list containers of {project}/{service}", shell.docker().api.containers,
                            all=True, filters=filters)
        inspected = _inspect_newest(shell, found)
        if inspected is not _GONE:
            return inspected
    return None


def project_containers(shell: HostShell, project: str) -> dict[str, list[Mapping[str, Any]]]:
    """The container summaries of a Compose project, by service: one list call for the whole project."""
    found = docker_call(shell, f"list containers of {project}", shell.docker().api.containers, all=True,
                        filters={"label": [f"{PROJECT_LABEL}={project}"]})
    by_service: dict[str, list[Mapping[str, Any]]] = {}
    for summary in found:
        service = (summary.get("Labels") or {}).get(SERVICE_LABEL)
        if service is not None:
            by_service.setdefault(service, []).append(summary)
    return by_service


def listed_container(shell: HostShell, project: str, service: str,
                     summaries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """What `service_container` answers, from summaries already listed (`project_containers`): the
    inspect of the newest; when it went away in between, project/service is looked up again."""
    inspected = _inspect_newest(shell, summaries)
    return service_container(shell, project, service) if inspected is _GONE else inspected


_GONE: Mapping[str, Any] = {}  # the newest container was removed between the list and the inspect


def _inspect_newest(shell: HostShell, summaries: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """`docker inspect` of the newest of `summaries` (a running one first); None when there is none."""
    if not summaries:
        return None
    newest = max(summaries, key=lambda c: (c.get("State") == "running", c.get("Created", 0)))
    try:
        return docker_call(shell, f"inspect {newest['Id'][:12]}", shell.docker().api.inspect_container,  # type: ignore[no-any-return]
                           newest["Id"])
    except docker.errors.NotFound:
        return _GONE


def inspect_container(shell: HostShell, container_id: str) -> Mapping[str, Any] | None:
    """`docker inspect` of one container by id, or None when it is gone."""
    try:
        return docker_call(shell, f"inspect {container_id[:12]}", shell.docker().api.inspect_container,  # type: ignore[no-any-return]
                           container_id)
    except docker.errors.NotFound:
        return None


def container_state(shell: HostShell, target: str, attrs: Mapping[str, Any] | None,
                    known_labels: dict[str, dict[str, str]] | None = None) -> RuntimeState:
    """The RuntimeState of an inspected container (None: ABSENT): its image, V1 labels and V2 env.

    `known_labels` (image id -> identity labels) spares a caller that reads the same images again
    and again the image inspect: an image id is the digest of its config, so its labels never change."""
    if attrs is None:
        return RuntimeState(target=target, presence=Presence.ABSENT)
    config = attrs.get("Config") or {}
    image_id = attrs.get("Image")
    return RuntimeState(
        target=target,
        presence=_presence(attrs.get("State") or {}),
        image=config.get("Image"),
        image_id=image_id,
        labels=_labels_of(shell, image_id, known_labels) if image_id else {},
        deploy_env=deploy_env(config.get("Env") or []),
        identity=attrs.get("Id"),
        detail=_state_detail(attrs.get("State") or {}),
    )


def _labels_of(shell: HostShell, image_id: str, known: dict[str, dict[str, str]] | None) -> dict[str, str]:
    """`image_labels`, kept in `known` once the engine had the image (never an answer for a missing one)."""
    if known is not None and image_id in known:
        return known[image_id]
    found = image_info(shell, image_id)
    labels = identity_labels(found)
    if known is not None and found is not None:
        known[image_id] = labels
    return labels


def _presence(state: Mapping[str, Any]) -> Presence:
    if state.get("Status") != "running":
        return Presence.NOT_READY
    health = (state.get("Health") or {}).get("Status")
    return Presence.NOT_READY if health in ("starting", "unhealthy") else Presence.RUNNING


def _state_detail(state: Mapping[str, Any]) -> str | None:
    status = state.get("Status")
    if status == "running":
        return None
    return f"container {status}, exit code {state.get('ExitCode')}" + (
        f": {state['Error']}" if state.get("Error") else "")


def deploy_env(env: Sequence[str]) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in env if "=" in item)
    return {k: v for k, v in pairs if k.startswith(DEPLOY_ENV_PREFIX)}


def image_labels(shell: HostShell, image: str) -> dict[str, str]:
    """The image's identity labels (`unidesk.ai/*`, V1; `org.opencontainers.image.*`, P10); {} when gone."""
    return identity_labels(image_info(shell, image))


def identity_labels(image: Mapping[str, Any] | None) -> dict[str, str]:
    """The identity labels of an inspected image ({} for None)."""
    labels = ((image or {}).get("Config") or {}).get("Labels") or {}
    return {k: v for k, v in labels.items() if k.startswith(IDENTITY_PREFIXES)}


def image_info(shell: HostShell, image: str) -> Mapping[str, Any] | None:
    """`docker image inspect` of a name or id, or None when the engine does not have it."""
    client = shell.docker()
    try:
        return docker_call(shell, f"inspect image {image}", client.api.inspect_image, image)  # type: ignore[no-any-return]
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.NotFound:
        return None


# -- health, read on the host


def read_health(shell: HostShell, port: int, path: str, timeout: float = 3.0) -> HealthState:
    answer = shell.http_get(f"http://127.0.0.1:{port}{path}", timeout=timeout)
    if answer.status is None:
        return HealthState(reachable=False, error=answer.error)
    return parse_health(answer.status, answer.body)


def parse_health(status: int, body: bytes) -> HealthState:
    """`{"deploy": {"repo", "commit", "requestedCommit"}, "auth": {flag: bool}}` into HealthState."""
    try:
        doc = json.loads(body)
    except ValueError:
        return HealthState(reachable=True, status=status, error=f"health body is not JSON: {body[:80]!r}")
    if not isinstance(doc, dict):
        return HealthState(reachable=True, status=status, error="health body is not a JSON object")
    deploy = doc.get("deploy")
    if not isinstance(deploy, dict):
        deploy = {}
    auth = doc.get("auth")
    flags = {k: v for k, v in auth.items() if isinstance(v, bool)} if isinstance(auth, dict) else None
    return HealthState(
        reachable=True, status=status,
        deploy_repo=deploy.get("repo") or None, deploy_commit=deploy.get("commit") or None,
        deploy_requested_commit=deploy.get("requestedCommit") or None, auth=flags,
        error=None if 200 <= status < 300 else f"health answered HTTP {status}")


# -- secrets (P7): names and lengths, never values


def secret_key_lengths(shell: HostShell, path: str) -> dict[str, int] | None:
    """Key -> value length of a KEY=VALUE file on the host; None when the file does not exist."""
    result = shell.run(_KEY_LENGTHS, path, timeout=30)
    if result.returncode == 3:
        return None
    if not result.ok:
        raise ProviderUnreachable(f"cannot read secret key names from {path} on {shell.where}: "
                                  f"exit {result.returncode}", path=shell.host_id)
    lengths: dict[str, int] = {}
    for line in result.stdout.splitlines():
        key, _, length = line.partition("\t")
        if key and length.isdigit():
            lengths[key] = int(length)
    return lengths


def secret_presence(shell: HostShell, source: str, path: str, keys: Sequence[str]) -> dict[str, Any]:
    lengths = secret_key_lengths(shell, path)
    present = {k: lengths[k] for k in keys if lengths and lengths.get(k, 0) > 0}
    missing = [k for k in keys if k not in present]
    if lengths is None:
        action = f"create {path} on {shell.host_id} with {', '.join(keys)}"
    elif missing:
        action = f"add {', '.join(missing)} to {path} on {shell.host_id}"
    else:
        action = "none"
    return {"secretSource": source, "secretFile": path, "secretFileExists": lengths is not None,
            "requiredSecretsPresent": not missing, "missingSecretKeys": missing,
            "presentSecretKeyLengths": present, "recommendedAction": action}


# -- the node-local egress proxy (B3)


@attrs.frozen
class EgressProbe:
    """One GET of `url` through `proxy`, made on the host."""

    proxy: str
    url: str
    status: int | None
    error: str | None = None

    @property
    def ok(self) -> bool:
        """The destination answered through the proxy: 2xx/3xx, or 401 (a registry's /v2/ without a token)."""
        return self.status is not None and (200 <= self.status < 400 or self.status == 401)

    @property
    def failure(self) -> str:
        if self.status is None:
            return self.error or "no answer"
        return f"HTTP {self.status}" + (f" ({self.error})" if self.error else "")


def egress_probe(shell: HostShell, proxy: str, url: str, timeout: float = 10.0) -> EgressProbe:
    result = shell.run(_PROXY_PROBE, proxy, url, f"{timeout:g}", timeout=timeout + 10)
    code = result.stdout.strip()
    status = int(code) if code.isdigit() and code != "000" else None
    error = result.stderr.strip().splitlines()[-1] if result.stderr.strip() else None
    if not result.ok and error is None:
        error = f"exit {result.returncode}"
    return EgressProbe(proxy=proxy, url=url, status=status, error=error)


# -- files on the host


def files_exist(shell: HostShell, paths: Sequence[str]) -> dict[str, bool]:
    return shell.exists(paths)
