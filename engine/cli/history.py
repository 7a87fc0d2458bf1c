"""`udeploy history` and `udeploy rollback`: verified deployments from the job records, and a
rollback pin on a new branch for review (engine/history). Neither applies anything."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from udeploy.engine.apply.jobs import default_state_dir
from udeploy.engine.apply.state import open_state
from udeploy.engine.cli.common import RefOpt, RepoOpt, StateOpt, StateUrlOpt, app, emit, guarded
from udeploy.engine.history.records import deployments
from udeploy.engine.history.rollback import RollbackRequest, rollback
from udeploy.engine.load.manifest import require_known_environment
from udeploy.engine.load.source import DEFAULT_REF

HistoryEnvOpt = Annotated[str, typer.Option("--env", help="The environment (dev|prod): its job records, its "
                                            "deploy.json entry.", envvar="UDEPLOY_ENV")]



@app.command()
def history(
    env: HistoryEnvOpt,
    service: Annotated[str | None, typer.Option("--service", help="Only this service id.")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Also list deployments whose live verification "
                                           "failed (verified: false).")] = False,
    state_dir: StateOpt = None, state_url: StateUrlOpt = None,
) -> None:
    """The verified deployments of an environment, newest first, from the job records: service, commit,
    when, job id, who (owner@host), plan digest, and whether live verification passed."""

    def run() -> int:
        require_known_environment(env)
        backend = open_state(state_dir or default_state_dir(), state_url)
        try:
            rows = deployments(backend, env, service, verified_only=not show_all)
            emit({"environment": env, "service": service, "stateBackend": backend.location,
                  "deployments": [r.to_json() for r in rows]})
        finally:
            backend.close()
        return 0

    guarded(run)


@app.command("rollback")
def rollback_command(
    env: HistoryEnvOpt,
    service: Annotated[str, typer.Option("--service", help="The service to pin back.")],
    to: Annotated[str | None, typer.Option("--to", help="A commit (full, or a unique prefix) from the service's "
                                           "verified history; default: the newest verified commit before "
                                           "the current pin.")] = None,
    push: Annotated[bool, typer.Option("--push", help="Push the new branch to origin for review.")] = False,
    repo: RepoOpt = Path("."), ref: RefOpt = DEFAULT_REF,
    state_dir: StateOpt = None, state_url: StateUrlOpt = None,
) -> None:
    """Pin a service back to a commit it ran verified: one `commitId` changed in deploy.json (formatting
    kept), committed on a new branch udeploy/rollback-<service>-<short> from the remote ref, pushed with
    --push. Prints the branch, its commit and the plan command to run; never applies. Refused with its
    rule when policy stops the service, or the commit has no published artifact."""

    def run() -> int:
        require_known_environment(env)
        backend = open_state(state_dir or default_state_dir(), state_url)
        try:
            emit(rollback(RollbackRequest(env=env, service=service, checkout=repo, to=to, push=push, ref=ref),
                          backend))
        finally:
            backend.close()
        return 0

    guarded(run)
