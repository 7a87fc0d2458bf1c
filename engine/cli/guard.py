"""`udeploy guard …`: standalone runs of the pre-rollout guards (G1: `guard code-queue-source`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from udeploy.engine.cli.common import app, emit, guarded, progress

guard_app = typer.Typer(name="guard", no_args_is_help=True,
                        help="Guards that must pass before a rollout; each prints JSON and exits 1 when degraded.")
app.add_typer(guard_app)


@guard_app.command("code-queue-source")
def code_queue_source(
    root: Annotated[Path, typer.Option("--root", help="The repo Code Queue Pods mount as /app (production: "
                                       "/home/ubuntu/cq-deploy); the guard runs on this path as mounted.")],
) -> None:
    """G1: every relative import under the Code Queue source resolves to a file (run after sync, before rollout).

    Fails closed on untrusted trees (issue 9): a path it cannot or will not read (permissions, symlink
    loops or leaving the root, FIFOs, files over the size cap) makes it degraded, `unreadable-path`.
    """

    def run() -> int:
        from udeploy.engine.load.source_guard import check_code_queue_source, guard_json

        result = check_code_queue_source(root)
        if result.degraded_reason is not None:
            unread = f" ({len(result.unreadable)} unreadable paths)" if result.unreadable else ""
            progress(f"code-queue source degraded: {result.degraded_reason.value}{unread}")
        emit(guard_json(result))
        return 0 if result.ok else 1

    guarded(run)
