"""Small stdlib-only helpers for scripts/lab (the parts that are clumsy in bash).

labtool.py http-ok URL [STATUS]    exit 0 if GET URL answers STATUS (default 200)
labtool.py manifest-ok REGISTRY REPO TAG
                                   exit 0 if the registry has that manifest
labtool.py shell-exports           read the layout JSON on stdin, print `export UDLAB_...=...`
"""

from __future__ import annotations

import json
import shlex
import sys
import urllib.error
import urllib.request
from collections.abc import Callable

# Media types a distribution v2 registry may store for a pushed image.
MANIFEST_TYPES = ", ".join(
    [
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    ]
)


def http_status(url: str, method: str = "GET", headers: dict[str, str] | None = None) -> int:
    request = urllib.request.Request(url, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=3) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (OSError, ValueError):
        return 0  # refused, timed out, reset: not answering


def http_ok(url: str, status: str = "200") -> int:
    return 0 if http_status(url) == int(status) else 1


def manifest_ok(registry: str, repo: str, tag: str) -> int:
    url = f"{registry.rstrip('/')}/v2/{repo}/manifests/{tag}"
    return 0 if http_status(url, "HEAD", {"Accept": MANIFEST_TYPES}) == 200 else 1


def shell_exports() -> int:
    """Flatten {"main": {"docker_host": ...}} into `export UDLAB_MAIN_DOCKER_HOST=...`."""
    layout = json.load(sys.stdin)

    def walk(prefix: str, value: object) -> None:
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(f"{prefix}_{key}".upper().replace("-", "_"), inner)
        else:
            print(f"export {prefix}={shlex.quote(str(value))}")

    walk("UDLAB", layout)
    return 0


def main(argv: list[str]) -> int:
    commands: dict[str, Callable[..., int]] = {
        "http-ok": http_ok,
        "manifest-ok": manifest_ok,
        "shell-exports": shell_exports,
    }
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        return 2
    return commands[argv[0]](*argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
