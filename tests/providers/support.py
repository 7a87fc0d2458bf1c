"""Shared values of the provider tests: the test service, its labels and env, the lab's pieces."""

from __future__ import annotations

import socket
from pathlib import Path

import attrs
import git

SERVICE_REPO_URL = "https://github.com/pikasTech/udtest"
BUSYBOX = "unidesk-lab/busybox:latest"
SECRET_KEYS = ["UNIDESK_BAIDU_NETDISK_CLIENT_ID", "UNIDESK_BAIDU_NETDISK_CLIENT_SECRET",
               "UNIDESK_BAIDU_NETDISK_TOKEN_KEY"]
AUTH_FLAGS = ["configured", "clientIdConfigured", "clientSecretConfigured", "tokenKeyConfigured", "loggedIn"]

SERVE_SH = r"""#!/bin/sh
# udtest service: /health from the stamped deploy env (V3) and secret presence flags (P7).
set -eu
str() { printf '%s' "$1" | tr -d '"\\\000-\037'; }
flag() { if [ -n "$1" ]; then echo true; else echo false; fi; }
id=$(flag "${UNIDESK_BAIDU_NETDISK_CLIENT_ID:-}")
secret=$(flag "${UNIDESK_BAIDU_NETDISK_CLIENT_SECRET:-}")
token=$(flag "${UNIDESK_BAIDU_NETDISK_TOKEN_KEY:-}")
configured=false; logged=false
[ "$id" = true ] && [ "$secret" = true ] && configured=true
[ "$configured" = true ] && [ "$token" = true ] && logged=true
mkdir -p /www
cat > /www/health <<JSON
{"status":"ok","service":"svc",
 "deploy":{"repo":"$(str "${UNIDESK_DEPLOY_REPO:-}")","commit":"$(str "${UNIDESK_DEPLOY_COMMIT:-}")",
           "requestedCommit":"$(str "${UNIDESK_DEPLOY_REQUESTED_COMMIT:-}")"},
 "auth":{"configured":$configured,"clientIdConfigured":$id,"clientSecretConfigured":$secret,
         "tokenKeyConfigured":$token,"loggedIn":$logged}}
JSON
exec httpd -f -p "${LISTEN_ADDR:+$LISTEN_ADDR:}${PORT:-8080}" -h /www
"""

DOCKERFILE = f"""FROM {BUSYBOX}
STOPSIGNAL SIGKILL
COPY serve.sh /srv/serve.sh
ENTRYPOINT ["/bin/busybox", "sh", "/srv/serve.sh"]
"""

MAIN_COMPOSE = """version: "3.7"
services:
  svc:
    image: {image}:latest
    env_file: ./env/svc.env
    ports: ["127.0.0.1:{port}:8080"]
  other:
    image: {image}:latest
    env_file: [./env/other.env, ./env/other.extra.env]
"""

D601_COMPOSE = """version: "3.7"
services:
  svc:
    image: {image}:latest
    env_file: ./env/svc.env
    network_mode: host
    environment: [PORT={port}, LISTEN_ADDR=127.0.0.1]
  other:
    image: {image}:latest
    env_file: [./env/other.env, ./env/other.extra.env]
    network_mode: host
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@attrs.frozen
class Source:
    """The service's git remote and its commits: "old" and "new" are deployed, "dry" never is."""

    remote: str  # file:// URL of the bare repository
    clone: Path
    commits: dict[str, str]
    manifest_commit: str  # the commit the compose files are read at
    compose_files: dict[str, str]  # host id -> compose file path in the repository
    ports: dict[str, int]  # host id -> health port on the host's loopback
    local_image: str  # the Compose service's image name on the hosts


def v1_labels(commit: str) -> dict[str, str]:
    return {"unidesk.ai/service-id": "svc", "unidesk.ai/source-repo": SERVICE_REPO_URL,
            "unidesk.ai/source-commit": commit, "unidesk.ai/dockerfile": "svc/Dockerfile"}


def deploy_env(commit: str) -> dict[str, str]:
    return {"UNIDESK_DEPLOY_SERVICE_ID": "svc", "UNIDESK_DEPLOY_REPO": SERVICE_REPO_URL,
            "UNIDESK_DEPLOY_COMMIT": commit, "UNIDESK_DEPLOY_REQUESTED_COMMIT": commit[:7]}


@attrs.frozen
class Images:
    registry: str  # "127.0.0.1:5000"
    repository: str  # "udtest-<token>/svc"
    digests: dict[str, str]  # commit -> manifest digest as pushed

    def ref(self, commit: str) -> str:
        return f"{self.registry}/{self.repository}:{commit}"


def init_repo(root: Path, name: str) -> tuple[Path, git.Repo]:
    """A bare origin `<name>.git` and a clone `<name>/` with a test identity; returns (bare, clone repo)."""
    bare, clone = root / f"{name}.git", root / name
    git.Repo.init(bare, bare=True)
    repo = git.Repo.init(clone)
    with repo.config_writer() as cw:
        cw.set_value("user", "name", "udtest").set_value("user", "email", "udtest@invalid")
        cw.set_value("commit", "gpgSign", "false")
    repo.create_remote("origin", bare.as_uri())
    return bare, repo
