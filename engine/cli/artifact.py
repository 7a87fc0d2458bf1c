"""`udeploy artifact publish|status`: the CI producer side (C1, S1). Never applies anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from udeploy.engine.cli.common import RefOpt, RepoOpt, app, emit, guarded, progress
from udeploy.engine.errors import ExitCode
from udeploy.engine.load.source import DEFAULT_REF

artifact_app = typer.Typer(help="CI producer: publish and inspect commit-pinned images (never deploys).",
                           no_args_is_help=True)
app.add_typer(artifact_app, name="artifact")


@artifact_app.command("publish")
def publish(
    service: Annotated[str, typer.Option("--service", help="The service id to build.")],
    commit: Annotated[str, typer.Option("--commit", help="A pushed commit (short or full SHA).")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check readiness only: no build, no push.")] = False,
    repo: RepoOpt = Path("."), ref: RefOpt = DEFAULT_REF,
) -> None:
    """Build the service Dockerfile from `git archive` of the commit, label it, push
    <registry>/unidesk/<id>:<commit>, and print the digest and label evidence."""

    def run() -> int:
        from udeploy.engine.ci import artifact

        progress(f"publishing {service} at {commit}{' (dry run)' if dry_run else ''}")
        result = artifact.publish(repo, service, commit, dry_run=dry_run, ref=ref)
        emit(result)
        return int(ExitCode.ERROR) if result["status"] in ("infra-blocked", "unsupported") else int(ExitCode.OK)

    guarded(run)


@artifact_app.command("status")
def status(repo: RepoOpt = Path("."), ref: RefOpt = DEFAULT_REF) -> None:
    """Registry reachability, and which commits pinned by deploy.json have artifacts."""

    def run() -> int:
        from udeploy.engine.ci import artifact

        result = artifact.status(repo, ref=ref)
        emit(result)
        return int(ExitCode.ERROR) if result["status"] == "infra-blocked" else int(ExitCode.OK)

    guarded(run)


@artifact_app.command("mirror")
def mirror(
    artifact_id: Annotated[str, typer.Option("--artifact", help="The CI.json upstream-image artifact id.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Verify only: mirror nothing.")] = False,
    repo: RepoOpt = Path("."), ref: RefOpt = DEFAULT_REF,
) -> None:
    """Verify that the upstream registry serves the pinned digest, then mirror it to
    <registry>/upstream/... (P10). Unreachable upstream: pending-network-verification."""

    def run() -> int:
        from udeploy.engine.load import upstream

        result = upstream.mirror(repo, artifact_id, dry_run=dry_run, ref=ref)
        emit(result)
        return int(ExitCode.OK) if result["status"] in ("mirrored", "would-mirror") else int(ExitCode.ERROR)

    guarded(run)
