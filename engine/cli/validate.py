"""`udeploy validate`: options, one call to `engine.checks.validate.validate`, one JSON document.

A finding is not a crash: the document is always printed, exit 0 when nothing was found and 1
otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from udeploy.engine.cli.common import RepoOpt, app, emit, guarded, progress


@app.command("validate")
def validate_command(
    manifest: Annotated[list[Path] | None, typer.Option("--manifest", help="Validate this k3s manifest "
                                                        "(repeatable; default: every manifest config.json names).")]
    = None,
    repo: RepoOpt = Path("."),
    kubectl_dry_run: Annotated[bool, typer.Option("--kubectl-dry-run", help="Also dry-run every object (dryRun=All) "
                                                  "against the configured k3s API; falls back to a client-side "
                                                  "structural check, and says so, when it cannot.")] = False,
    kubeconfig: Annotated[Path | None, typer.Option("--kubeconfig", help="Kubeconfig for --kubectl-dry-run "
                                                    "(default: the k3s-native host's in config.json).")] = None,
    sandbox_docker_host: Annotated[str | None, typer.Option(
        "--sandbox-docker-host", envvar="UDEPLOY_SANDBOX_DOCKER_HOST",
        help="Docker engine that runs the manifest's db-guard script (D5) in throwaway containers without "
             "network (default: DOCKER_HOST, else the local socket). Never taken from the repository.")] = None,
    skip_db_guard: Annotated[bool, typer.Option("--skip-db-guard", help="Do not run the db-guard script (D5); "
                                                "the report says it was skipped.")] = False,
) -> None:
    """Check the k3s manifests: object schemas, dev isolation (D1-D4), ClusterIP-only (E2), db guard (D5)."""

    def run() -> int:
        from udeploy.engine.checks.validate import ValidateRequest, validate, validation_json

        request = ValidateRequest(repo, tuple(manifest or ()), kubectl_dry_run, kubeconfig, sandbox_docker_host,
                                  skip_db_guard)
        validation = validate(request, say=progress)
        emit(validation_json(validation))
        return 0 if validation.ok else 1

    guarded(run)
