"""`udeploy apply`, `udeploy job ...` and `udeploy lock ...`.

`apply PLAN` executes exactly a saved plan. `apply --env/--file ...` is the spec's one-step shape:
plan, then apply that plan, with the same checks. `--detach` prints the job id at once and runs
the job in the background; `job status` follows it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from udeploy.engine.apply.jobs import (
    SMALL_RECORD_LIMIT,
    Job,
    JobNotFound,
    JobRecordCorrupt,
    check_job_id,
    default_state_dir,
    list_jobs,
    new_job_id,
    pid_alive,
    read_record,
    tail_of,
    valid_pid,
)
from udeploy.engine.apply.lock import read_lock, release
from udeploy.engine.apply.run import ApplyOptions, apply_plan, plan_scope
from udeploy.engine.cli.common import (
    CommitOpt,
    EnvOpt,
    FileOpt,
    ForceOpt,
    RefOpt,
    RepoOpt,
    ServiceOpt,
    app,
    emit,
    guarded,
    progress,
)
from udeploy.engine.errors import ExitCode, PolicyRefused, UdeployError, UsageError
from udeploy.engine.load.desired import Request
from udeploy.engine.load.source import DEFAULT_REF
from udeploy.engine.plan.model import Action, Plan
from udeploy.engine.plan.planfile import make_converter, read_plan, write_plan
from udeploy.engine.plan.planner import PlanOptions, make_plan

StateOpt = Annotated[Path | None, typer.Option("--state-dir", help="Where jobs and locks live (default .state, "
                                               "or $UDEPLOY_STATE_DIR).")]
ApplyParallelOpt = Annotated[int, typer.Option("--parallelism", min=1, help="Nodes run at once (default 10).",
                                               envvar="UDEPLOY_PARALLELISM")]

job_app = typer.Typer(help="Follow apply jobs (.state/jobs/<jobId>/).", no_args_is_help=True)
lock_app = typer.Typer(help="Inspect or release the per-environment apply lock.", no_args_is_help=True)
app.add_typer(job_app, name="job")
app.add_typer(lock_app, name="lock")


# The requirement behind each blockedReason, for the refusal a one-step apply of that service gets.
RULE_OF_BLOCK = {
    "runtime-verification-blocked": "P6", "maintenance-channel-direct-deploy-blocked": "P5",
    "disabled-executor": "P11", "reviewed-artifact-consumer": "P4", "runtime-secrets-missing": "P7",
    "digest-pin-required": "P10", "pending-network-verification": "P10", "mirror-missing": "P10",
    "artifact-missing": "P3", "supervisor-gated": "P2", "supervisor-only-production-apply": "P2",
}


def refuse_policy(plan: Plan, selected: tuple[str, ...], dry_run: bool) -> None:
    """One-step apply: asking by name for what policy refuses is a refusal (exit 3), with the
    structured payload (O7); an environment-wide apply just leaves such services untouched."""
    for s in plan.services:
        if plan.mode == "file" and s.item.get("blockedReason") == "reviewed-artifact-consumer":
            raise PolicyRefused(f"{s.id}: {s.reason}", rule="P4", path=s.id, details={"service": _payload(s)})
        if s.id not in selected or s.action in (Action.DEPLOY, Action.NOOP):
            continue
        if dry_run and s.action is Action.GATED:
            continue
        rule = "O7" if s.action is Action.UNSUPPORTED else RULE_OF_BLOCK.get(str(s.item.get("blockedReason")), "P2")
        raise PolicyRefused(f"{s.id} is {s.action.value} in this environment: {s.reason}", rule=rule, path=s.id,
                            details={"service": _payload(s)})


def _payload(s: object) -> dict[str, object]:
    doc: dict[str, object] = make_converter().unstructure(s)
    return doc


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
    parallelism: ApplyParallelOpt = 10, state_dir: StateOpt = None,
    job_id: Annotated[str | None, typer.Option("--job-id", hidden=True)] = None,
) -> None:
    """Apply a saved plan exactly, or plan and apply in one step; print the job result as JSON."""

    def run() -> int:
        state = state_dir or default_state_dir()
        if job_id is not None:
            check_job_id(job_id, "--job-id")
        if plan_file is not None:
            if env or file or service or commit or force:
                raise UsageError("a saved plan already fixes environment, services and commits: give either "
                                 "PLAN or --env/--file options, not both", path="PLAN")
            plan, path = read_plan(plan_file), plan_file
        else:
            request = Request(env=env, file=file, services=tuple(service or ()), commit=commit,
                              checkout=repo, ref=ref)
            progress("planning")
            plan = make_plan(request, PlanOptions(force=force, parallelism=parallelism)).plan
            refuse_policy(plan, request.services, dry_run)
            path = None
        if detach:
            return _detach(plan, path, state, repo, dry_run, parallelism)
        options = ApplyOptions(state_dir=state, checkout=repo, parallelism=parallelism, dry_run=dry_run,
                               plan_file=str(path) if path else None, job_id=job_id)
        progress(f"applying {len(plan.nodes)} nodes in {plan_scope(plan)}{' (dry run)' if dry_run else ''}")
        try:
            result = apply_plan(plan, options, progress=progress)
        except UdeployError as exc:
            if job_id:  # a detached child: leave the refusal where `job status` looks
                _record_refusal(state, job_id, plan, exc)
            raise
        emit(result)
        return int(ExitCode.OK) if result["state"] == "succeeded" else int(ExitCode.ERROR)

    guarded(run)


def _detach(plan: Plan, path: Path | None, state: Path, repo: Path, dry_run: bool, parallelism: int) -> int:
    job_id = new_job_id()
    spool = state / "jobs" / f"{job_id}.plan.json"
    spool.parent.mkdir(parents=True, exist_ok=True)
    if path is None:
        write_plan(plan, spool)
    else:
        spool.write_bytes(path.read_bytes())
    args = [sys.executable, "-m", "udeploy.engine.cli", "apply", str(spool.resolve()), "--job-id", job_id,
            "--state-dir", str(state.resolve()), "--repo", str(repo.resolve()), "--parallelism", str(parallelism)]
    if dry_run:
        args.append("--dry-run")
    with open(state / "jobs" / f"{job_id}.out", "ab") as out:
        child = subprocess.Popen(args, stdout=out, stderr=out, stdin=subprocess.DEVNULL, start_new_session=True,
                                 env=os.environ.copy())
    # Until the child has created the job (after the lock and the trust checks), `job status`
    # answers from this launch record, so a child that dies early is reported, not lost.
    (state / "jobs" / f"{job_id}.launch.json").write_text(json.dumps({"jobId": job_id, "pid": child.pid}))
    emit({"jobId": job_id, "state": "started", "pid": child.pid, "statusCommand": f"udeploy job status {job_id}"})
    return int(ExitCode.OK)


def _record_refusal(state: Path, job_id: str, plan: Plan, exc: UdeployError) -> None:
    try:
        job = Job.open(state, job_id)
    except UdeployError:
        job = Job.create(state, plan_digest="", plan_file=None, environment=(plan.environment or {}).get("name"),
                         dry_run=False, nodes=[], job_id=job_id)
    job.log(f"refused: {exc.code}: {exc.message}")
    job.finish("refused", exc.to_json())


TAIL_BYTES_MAX = 1 << 20  # a tail is for a terminal or a bot comment; the whole log is on disk


@job_app.command("status")
def job_status(
    job: Annotated[str, typer.Argument(help="The job id apply printed.")],
    tail_bytes: Annotated[int, typer.Option("--tail-bytes", min=0, max=TAIL_BYTES_MAX,
                                            help="How much of the log's end to include (at most 1 MiB).")] = 4096,
    state_dir: StateOpt = None,
) -> None:
    """A job's state, per-node progress and a bounded tail of its log."""

    def run() -> int:
        emit(job_status_doc(state_dir or default_state_dir(), check_job_id(job, "JOB"), tail_bytes))
        return 0

    guarded(run)


def job_status_doc(state: Path, job_id: str, tail_bytes: int) -> dict[str, object]:
    tail_bytes = max(0, min(tail_bytes, TAIL_BYTES_MAX))
    try:
        j = Job.open(state, job_id)
    except JobNotFound:
        launch = state / "jobs" / f"{job_id}.launch.json"
        if not launch.exists() and not launch.is_symlink():
            raise
        return _launch_status(launch, state / "jobs" / f"{job_id}.out", job_id, tail_bytes)
    doc = j.status()
    tail = j.tail(tail_bytes)
    doc["logTail"] = tail or ""
    if tail is None:
        doc["logProblem"] = f"{j.dir / 'log'} is missing or not a regular file"
    return doc


def _launch_status(launch: Path, out: Path, job_id: str, tail_bytes: int) -> dict[str, object]:
    """A detached job before its child created the job directory: answered from the launch record."""
    record = read_record(launch, SMALL_RECORD_LIMIT, error=JobRecordCorrupt)
    pid = record.get("pid")
    if not valid_pid(pid) or record.get("jobId") != job_id:
        raise JobRecordCorrupt(f"job {job_id}: {launch} is corrupt (jobId or pid missing or wrong)",
                               path=str(launch))
    return {"jobId": job_id, "state": "starting" if pid_alive(pid) else "died", "pid": pid, "nodes": {},
            "note": "the detached apply has not created its job yet (lock and trust checks come first)",
            "logTail": (tail_of(out, tail_bytes) or "") if tail_bytes else ""}


@job_app.command("list")
def job_list(state_dir: StateOpt = None) -> None:
    """Every job under the state directory, oldest first; an unreadable one is listed as such."""

    def run() -> int:
        emit({"jobs": list_jobs(state_dir or default_state_dir())})
        return 0

    guarded(run)


LOCK_ENVS = ("dev", "prod", "local-manifest")
LockEnvOpt = Annotated[str, typer.Option("--env", help="dev, prod, or local-manifest.")]


def lock_scope(env: str) -> str:
    if env not in LOCK_ENVS:
        raise UsageError(f"--env: {ascii(env)[:80]} is not one of {', '.join(LOCK_ENVS)}", path="--env")
    return env if env == "local-manifest" else f"env-{env}"


@lock_app.command("status")
def lock_status(env: LockEnvOpt = "dev", state_dir: StateOpt = None) -> None:
    """Who holds the apply lock of an environment, and whether that process is still alive. A lock
    file udeploy cannot read shows `unreadable: true`: it counts as held."""

    def run() -> int:
        scope = lock_scope(env)
        emit({"scope": scope, "lock": read_lock(state_dir or default_state_dir(), scope)})
        return 0

    guarded(run)


@lock_app.command("release")
def lock_release(
    lock_id: Annotated[str, typer.Option("--lock-id", help="The id `udeploy lock status` shows; required so "
                                         "nobody releases a lock they have not looked at (an unreadable "
                                         "lock shows a stand-in id, unreadable-...).")],
    env: LockEnvOpt = "dev",
    state_dir: StateOpt = None,
) -> None:
    """Force-release an environment's apply lock (for a holder that is gone)."""

    def run() -> int:
        scope = lock_scope(env)
        release(state_dir or default_state_dir(), scope, lock_id)
        emit({"scope": scope, "released": lock_id})
        return 0

    guarded(run)
