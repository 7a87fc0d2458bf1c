"""Shared pieces of the `udeploy` command line: the typer app, the common options, and the
boundary that turns every domain error into one JSON document plus an exit code.

Command modules (`engine.cli.plan`, `.apply`, `.artifact`, `.guard`, `.validate`) register on `app`;
`engine.cli.main` imports them all.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from udeploy.engine import __version__
from udeploy.engine.errors import ExitCode, UdeployError

app = typer.Typer(
    name="udeploy", no_args_is_help=True, add_completion=False,
    help="Declarative plan/apply for service deployments: deploy.json says which commit runs; "
         "udeploy plans, reviews and applies it on Compose hosts and native k3s.")

EnvOpt = Annotated[str | None, typer.Option("--env", help="Environment mode: read origin/master:deploy.json "
                                            "and select environments.<env> (dev|prod).", envvar="UDEPLOY_ENV")]
FileOpt = Annotated[Path | None, typer.Option("--file", help="Local-manifest mode: read this deploy.json "
                                              "(the only mode that accepts schemaVersion 1).")]
ServiceOpt = Annotated[list[str] | None, typer.Option("--service", help="Limit to this service id (repeatable).")]
CommitOpt = Annotated[str | None, typer.Option("--commit", help="Full SHA overriding one reviewed artifact "
                                               "consumer's commit (needs --env and one --service).")]
RepoOpt = Annotated[Path, typer.Option("--repo", help="The deploy repository checkout (default: current "
                                       "directory).", envvar="UDEPLOY_REPO")]
RefOpt = Annotated[str, typer.Option("--ref", help="Remote ref to read the manifests from in environment mode.")]


TimeoutOpt = Annotated[list[str] | None, typer.Option(
    "--timeout", metavar="KIND[.connect|.read]=SECONDS",
    help="Override a timeout for this run (repeatable); KIND is registry, docker, ssh or kubernetes. "
         "Defaults and config.json settings: docs/reliability.md.")]
VerboseOpt = Annotated[bool, typer.Option("-v", "--verbose", help="Let the libraries' own logging (paramiko, "
                                          "urllib3, ...) through to stderr.", envvar="UDEPLOY_VERBOSE")]


def configure_logging(verbose: bool) -> None:
    """Library logging reaches stderr only when asked: without a handler Python prints a library's
    warnings and errors (paramiko's banner failure with its traceback) through its last-resort
    handler, so the root logger gets one that drops them; `-v` installs one that prints."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == "udeploy"]:
        root.removeHandler(old)
    handler: logging.Handler = logging.NullHandler()
    if verbose:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("udeploy: %(name)s %(levelname)s %(message)s"))
        root.setLevel(logging.DEBUG)
    handler.set_name("udeploy")
    root.addHandler(handler)


def emit(doc: Any) -> None:
    sys.stdout.write(json.dumps(doc, indent=2, sort_keys=False) + "\n")


def fail(error: UdeployError) -> NoReturn:
    emit(error.to_json())
    raise typer.Exit(int(error.exit_code))


def guarded(fn: Callable[[], int]) -> None:
    """Run a command body: JSON error and exit code for domain errors, never a bare traceback."""
    try:
        code = fn()
    except UdeployError as exc:
        fail(exc)
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:  # a bug: still one JSON document on stdout, the traceback on stderr
        traceback.print_exc(file=sys.stderr)
        emit({"error": {"code": "internal-error", "message": f"{type(exc).__name__}: {exc}", "path": None}})
        raise typer.Exit(int(ExitCode.ERROR)) from None
    raise typer.Exit(code)


def version_callback(value: bool) -> None:
    if value:
        emit({"udeployVersion": __version__})
        raise typer.Exit()


@app.callback()
def main_options(
    version: Annotated[bool, typer.Option("--version", callback=version_callback, is_eager=True,
                                          help="Print the udeploy version as JSON and exit.")] = False,
    verbose: VerboseOpt = False,
) -> None:
    """udeploy: plan, review, apply."""
    configure_logging(verbose)


OutOpt = Annotated[Path | None, typer.Option("-out", "--out", help="Write the plan file here, for review "
                                             "and `udeploy apply PLAN`.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Deploy even services whose live commit matches.")]
RefreshOpt = Annotated[bool, typer.Option("--refresh/--no-refresh", help="Read live state through the providers "
                                          "(default) or plan from the desired state only (O4).")]
ParallelOpt = Annotated[int, typer.Option("--parallelism", min=1, help="Concurrent provider reads.",
                                          envvar="UDEPLOY_PARALLELISM")]
FormatOpt = Annotated[str, typer.Option("--format", help="json (default), text or markdown.")]


def progress(message: str) -> None:
    sys.stderr.write(f"udeploy: {message}\n")


# Where jobs, locks and resume records live: every command that reads or writes state takes both.
StateOpt = Annotated[Path | None, typer.Option("--state-dir", help="Where jobs and locks live (default .state, "
                                               "or $UDEPLOY_STATE_DIR).")]
StateUrlOpt = Annotated[str | None, typer.Option("--state-url", envvar="UDEPLOY_STATE_URL", show_default=False,
                                                 help="A shared state backend (postgresql://user@host/db; the "
                                                 "password from PGPASSFILE or PGPASSWORD) for locks, jobs and "
                                                 "resume records instead of --state-dir (docs/state.md).")]
