"""`udeploy apply`, `udeploy job ...` and `udeploy lock ...`.

`apply PLAN` executes exactly a saved plan. `apply --env/--file ...` is the spec's one-step shape:
plan, then apply that plan, with the same checks. `--detach` prints the job id at once and runs
the job in the background; `job status` reports it, and `job status --follow` watches it to the end.
Progress goes to stderr (`engine/cli/progress_view.py`); stdout carries the one JSON document.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from udeploy.engine.apply.job_page import job_with_plan
from udeploy.engine.apply.job_status import TAIL_BYTES_MAX, follow_job, job_status_doc
from udeploy.engine.apply.jobs import check_job_id, default_state_dir
from udeploy.engine.apply.state import open_state
from udeploy.engine.cli.common import (
    CommitOpt,
    EnvOpt,
    FileOpt,
    ForceOpt,
    RefOpt,
    RepoOpt,
    ServiceOpt,
    StateOpt,
    StateUrlOpt,
    TimeoutOpt,
    VerboseOpt,
    app,
    configure_logging,
    emit,
    guarded,
)
from udeploy.engine.errors import ExitCode, UsageError
from udeploy.engine.load.desired import Request
from udeploy.engine.load.source import DEFAULT_REF
from udeploy.engine.load.timeouts import from_cli
from udeploy.engine.plan.page import job_paint, plan_page
from udeploy.engine.state_api import StateBackend

ApplyParallelOpt = Annotated[int, typer.Option("--parallelism", min=1, help="Nodes run at once (default 10).",
                                               envvar="UDEPLOY_PARALLELISM")]

job_app = typer.Typer(help="Follow apply jobs (.state/jobs/<jobId>/).", no_args_is_help=True)
lock_app = typer.Typer(help="Inspect or release the per-environment apply lock.", no_args_is_help=True)
app.add_typer(job_app, name="job")
app.add_typer(lock_app, name="lock")


@app.command()
def apply(
    plan_file: Annotated[Path | None, typer.Argument(help="A saved plan (udeploy plan -out). Without it, plan "
                                                     "and apply in one step from --env/--file.")] = None,
    env: EnvOpt = None, file: FileOpt = None, service: ServiceOpt = None, commit: CommitOpt = None,
    repo: RepoOpt = Path("."), ref: RefOpt = DEFAULT_REF, force: ForceOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Walk the same graph, read and check everything, "
                                          "change nothing.")] = False,
    detach: Annotated[bool, typer.Option("--detach", help="Print the job id and run the job in the "
                                         "background.")] = False,
    parallelism: ApplyParallelOpt = 10, state_dir: StateOpt = None, state_url: StateUrlOpt = None,
    job_id: Annotated[str | None, typer.Option("--job-id", hidden=True)] = None,
    timeout: TimeoutOpt = None, verbose: VerboseOpt = False,
) -> None:
    """Apply a saved plan exactly, or plan and apply in one step; print the job result as JSON."""
    if verbose:
        configure_logging(True)

    def run() -> int:
        from udeploy.engine.apply.start import StartApply, start_apply  # the walk and its clients: apply only
        from udeploy.engine.cli.progress_view import watching

        if job_id is not None:
            check_job_id(job_id, "--job-id")
        if plan_file is not None and (env or file or service or commit or force):
            raise UsageError("a saved plan already fixes environment, services and commits: give either "
                             "PLAN or --env/--file options, not both", path="PLAN")
        source = plan_file if plan_file is not None else Request(
            env=env, file=file, services=tuple(service or ()), commit=commit, checkout=repo, ref=ref)
        command = StartApply(source=source, state_dir=state_dir or default_state_dir(), checkout=repo, force=force,
                             parallelism=parallelism, dry_run=dry_run, detach=detach, job_id=job_id,
                             timeouts=from_cli(timeout or ()), state_url=state_url)
        with watching() as progress:
            result = start_apply(command, progress)
        emit(result)
        return int(ExitCode.OK) if result["state"] in ("succeeded", "started") else int(ExitCode.ERROR)

    guarded(run)


@job_app.command("status")
def job_status(
    job: Annotated[str, typer.Argument(help="The job id apply printed.")],
    tail_bytes: Annotated[int, typer.Option("--tail-bytes", min=0, max=TAIL_BYTES_MAX,
                                            help="How much of the log's end to include (at most 1 MiB).")] = 4096,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Show the job's node changes on stderr as they "
                                         "happen, until the job ends; then print its status and exit 0 if it "
                                         "succeeded, 1 if it failed, was refused or died.")] = False,
    state_dir: StateOpt = None, state_url: StateUrlOpt = None,
) -> None:
    """A job's state, per-node progress and a bounded tail of its log."""

    def run() -> int:
        where, job_id = state_dir or default_state_dir(), check_job_id(job, "JOB")
        with _backend(where, state_url) as backend:
            if not follow:
                emit(job_status_doc(where, job_id, tail_bytes, backend))
                return 0
            from udeploy.engine.cli.progress_view import watching  # rich: only for a watcher

            with watching() as progress:
                doc = follow_job(where, job_id, tail_bytes, backend, progress)
        emit(doc)
        return int(ExitCode.OK) if doc["state"] == "succeeded" else int(ExitCode.ERROR)

    guarded(run)


@job_app.command("show")
def job_show(
    job: Annotated[str, typer.Argument(help="The job id apply printed.")],
    fmt: Annotated[str, typer.Option("--format", help="json (the job's node states and where its plan was "
                                     "found) or html (the plan page, steps coloured by node state).")] = "json",
    plan: Annotated[Path | None, typer.Option("--plan", help="The job's plan file, when it is not where the job "
                                              "recorded it (digest-checked).")] = None,
    state_dir: StateOpt = None, state_url: StateUrlOpt = None,
) -> None:
    """A job with its plan: the plan page, steps coloured succeeded / failed / skipped / not reached."""

    def run() -> int:
        if fmt not in ("json", "html"):
            raise UsageError(f"--format must be json or html, not {fmt!r}", path="--format")
        where = state_dir or default_state_dir()
        with _backend(where, state_url) as backend:
            p, view = job_with_plan(backend, where, job, plan)
        if fmt == "html":
            sys.stdout.write(plan_page(p, view))
        else:
            emit({"jobId": view.job_id, "state": view.state, "plan": view.plan_source,
                  "nodes": job_paint(p, view)})
        return 0

    guarded(run)


@job_app.command("list")
def job_list(state_dir: StateOpt = None, state_url: StateUrlOpt = None) -> None:
    """Every job in the state directory (or backend), oldest first; an unreadable one is listed as such."""

    def run() -> int:
        with _backend(state_dir or default_state_dir(), state_url) as backend:
            emit({"jobs": backend.list_jobs()})
        return 0

    guarded(run)


@contextmanager
def _backend(state_dir: Path, state_url: str | None) -> Iterator[StateBackend]:
    backend = open_state(state_dir, state_url)
    try:
        yield backend
    finally:
        backend.close()


LOCK_ENVS = ("dev", "prod", "local-manifest")
LockEnvOpt = Annotated[str, typer.Option("--env", help="dev, prod, or local-manifest.")]


def lock_scope(env: str) -> str:
    if env not in LOCK_ENVS:
        raise UsageError(f"--env: {ascii(env)[:80]} is not one of {', '.join(LOCK_ENVS)}", path="--env")
    return env if env == "local-manifest" else f"env-{env}"


@lock_app.command("status")
def lock_status(env: LockEnvOpt = "dev", state_dir: StateOpt = None, state_url: StateUrlOpt = None) -> None:
    """Who holds the apply lock of an environment, and whether that process is still alive. A lock
    file udeploy cannot read shows `unreadable: true`: it counts as held."""

    def run() -> int:
        scope = lock_scope(env)
        with _backend(state_dir or default_state_dir(), state_url) as backend:
            emit({"scope": scope, "lock": backend.read_lock(scope)})
        return 0

    guarded(run)


@lock_app.command("release")
def lock_release(
    lock_id: Annotated[str, typer.Option("--lock-id", help="The id `udeploy lock status` shows; required so "
                                         "nobody releases a lock they have not looked at (an unreadable "
                                         "lock shows a stand-in id, unreadable-...).")],
    env: LockEnvOpt = "dev",
    state_dir: StateOpt = None, state_url: StateUrlOpt = None,
) -> None:
    """Force-release an environment's apply lock (for a holder that is gone)."""

    def run() -> int:
        scope = lock_scope(env)
        with _backend(state_dir or default_state_dir(), state_url) as backend:
            backend.release_lock(scope, lock_id)
        emit({"scope": scope, "released": lock_id})
        return 0

    guarded(run)
