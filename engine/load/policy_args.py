"""Argument rules that policy sets before any work is done (P3, P4).

`check_request` needs no I/O and runs first; `check_commit_override` runs once the selected
service is joined with the catalog, still before any commit is resolved or anything observed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Protocol

from udeploy.engine.errors import PolicyRefused, UsageError
from udeploy.engine.load.catalog import LiveApplyMode, Microservice


class Request(Protocol):
    """What these rules read of `udeploy.engine.load.desired.Request` (which calls them)."""

    @property
    def env(self) -> str | None: ...

    @property
    def file(self) -> Path | None: ...

    @property
    def services(self) -> tuple[str, ...]: ...

    @property
    def commit(self) -> str | None: ...

FULL_SHA = re.compile(r"^[0-9a-f]{40}$")


def check_request(request: Request) -> None:
    if (request.env is None) == (request.file is None):
        raise UsageError("give exactly one of --env dev|prod or --file deploy.json", path="--env/--file")
    if request.commit is None:
        return
    if request.file is not None:
        raise PolicyRefused("--commit is refused in local-manifest mode (--file); use --env dev|prod "
                            "--service <id> --commit <full-sha>", rule="P3", path="--commit")
    if len(set(request.services)) != 1:
        raise PolicyRefused("--commit overrides exactly one service: give --service <id> once",
                            rule="P3", path="--commit")
    if not FULL_SHA.match(request.commit):
        raise PolicyRefused(f"--commit needs a full 40-character SHA, not {request.commit!r}",
                            rule="P3", path="--commit")


def check_commit_override(request: Request, ms: Microservice, environment: str | None) -> None:
    """P3: only a reviewed artifact consumer that this environment can apply takes --commit."""
    env_target = ms.environments.get(environment) if environment else None
    consumer = ms.reviewed_artifact_consumer and env_target is not None and \
        env_target.consumer_kind not in ("unsupported", "d601-dev-target-side-build") and \
        env_target.live_apply.mode is not LiveApplyMode.UNSUPPORTED
    if not consumer:
        raise PolicyRefused(f"--commit is only for reviewed artifact consumers; {ms.id} is not one in "
                            f"{environment}", rule="P3", path="--service")
