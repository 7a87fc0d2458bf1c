"""The plan-side commands: plan, check, show, graph, guardrails.

Thin typer commands that call one engine function each (STYLE 10); the shared options and the
error boundary live in `udeploy.engine.cli.common`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from udeploy.engine.cli.common import (
    CommitOpt,
    EnvOpt,
    FileOpt,
    ForceOpt,
    FormatOpt,
    OutOpt,
    ParallelOpt,
    RefOpt,
    RefreshOpt,
    RepoOpt,
    ServiceOpt,
    TimeoutOpt,
    VerboseOpt,
    app,
    configure_logging,
    emit,
    guarded,
    progress,
)
from udeploy.engine.errors import ExitCode, UsageError
from udeploy.engine.load.desired import Request
from udeploy.engine.load.input_files import check_writable_target
from udeploy.engine.load.source import DEFAULT_REF
from udeploy.engine.load.timeouts import from_cli
from udeploy.engine.plan import page, render
from udeploy.engine.plan.guardrails import REGISTRY
from udeploy.engine.plan.model import Plan
from udeploy.engine.plan.planfile import encode, read_plan, save, to_document
from udeploy.engine.plan.planner import PlanOptions, make_plan
from udeploy.engine.plan.pr_comment import GITHUB_COMMENT_LIMIT, to_markdown_parts


def _human(plan_value: Plan, fmt: str, max_chars: int = GITHUB_COMMENT_LIMIT) -> str | None:
    if fmt == "json":
        return None
    if fmt == "text":
        return render.to_text(plan_value)
    if fmt == "markdown":
        parts = to_markdown_parts(plan_value, max_chars)
        return "\n\n---\n\n".join(parts)
    raise UsageError(f"--format must be json, text or markdown, not {fmt!r}", path="--format")


@app.command()
def plan(
    env: EnvOpt = None, file: FileOpt = None, service: ServiceOpt = None, commit: CommitOpt = None,
    repo: RepoOpt = Path("."), ref: RefOpt = DEFAULT_REF, out: OutOpt = None, refresh: RefreshOpt = True,
    force: ForceOpt = False, parallelism: ParallelOpt = 10, fmt: FormatOpt = "json",
    detailed_exitcode: Annotated[bool, typer.Option("--detailed-exitcode", help="Exit 2 when the plan "
                                                    "deploys something (0 when nothing changes; 1 when live "
                                                    "state could not be read).")] = False,
    timeout: TimeoutOpt = None, verbose: VerboseOpt = False,
) -> None:
    """Resolve the desired state, read what is live, diff and run the guardrails; print the plan."""
    if verbose:
        configure_logging(True)

    def run() -> int:
        if fmt not in ("json", "text", "markdown"):  # before any work, and before -out writes anything
            raise UsageError(f"--format must be json, text or markdown, not {fmt!r}", path="--format")
        timeouts = from_cli(timeout or ())
        if out is not None:
            check_writable_target(out, "-out")
        request = Request(env=env, file=file, services=tuple(service or ()), commit=commit,
                          checkout=repo, ref=ref)
        progress("planning" + (" (reading live state)" if refresh else " offline (--no-refresh)"))
        planned = make_plan(request, PlanOptions(refresh=refresh, force=force, parallelism=parallelism,
                                                 timeouts=timeouts))
        text = encode(to_document(planned.plan)) if out or fmt == "json" else ""
        if out:
            save(text, out)
            progress(f"plan written to {out}; apply it with `udeploy apply {out}`")
        human = _human(planned.plan, fmt)
        sys.stdout.write(text if human is None else human)  # the file's text is the JSON `emit` would print
        return int(ExitCode.CHANGES) if detailed_exitcode and planned.plan.has_changes else int(ExitCode.OK)

    guarded(run)


@app.command()
def check(
    env: EnvOpt = None, file: FileOpt = None, service: ServiceOpt = None, repo: RepoOpt = Path("."),
    ref: RefOpt = DEFAULT_REF, parallelism: ParallelOpt = 10, timeout: TimeoutOpt = None,
    verbose: VerboseOpt = False,
) -> None:
    """Compare live runtime with the desired repo and commit, and run the k3s runtime checks (E3
    sandbox image, E5 Code Queue diagnostics); change nothing. Exit 2 when anything differs or fails (O5),
    1 when live state could not be read."""
    if verbose:
        configure_logging(True)

    def run() -> int:
        from udeploy.engine.checks.live import check_live  # the runtime checks' clients: check only

        request = Request(env=env, file=file, services=tuple(service or ()), checkout=repo, ref=ref)
        doc = check_live(request, parallelism, from_cli(timeout or ()))
        emit(doc)
        return int(ExitCode.OK) if doc["inSync"] and doc["checksPassed"] else int(ExitCode.CHANGES)

    guarded(run)


PlanArg = Annotated[Path, typer.Argument(help="A plan file written by `udeploy plan -out`.")]


@app.command()
def show(
    plan_file: PlanArg, fmt: FormatOpt = "json",
    max_comment_chars: Annotated[int, typer.Option("--max-comment-chars", min=1000, help="Split the markdown "
                                                   "rendering into comments of at most this many characters.")]
    = GITHUB_COMMENT_LIMIT,
) -> None:
    """Render a saved plan: json, text, or markdown for a pull-request comment (split under the limit)."""

    def run() -> int:
        p = read_plan(plan_file)
        if fmt == "markdown":
            try:
                parts = to_markdown_parts(p, max_comment_chars)
            except ValueError as exc:
                raise UsageError(str(exc), path="--max-comment-chars") from exc
            if not sys.stdout.isatty():
                emit({"summary": render.summary_line(p), "parts": parts})
            else:
                sys.stdout.write("\n\n---\n\n".join(parts))
            return 0
        human = _human(p, fmt, max_comment_chars)
        if human is None:
            emit(to_document(p))
        else:
            sys.stdout.write(human)
        return 0

    guarded(run)


GRAPH_FORMAT_HELP = ("dot (default, any size), svg (needs Graphviz) or html (a self-contained page: summary, "
                     "services, the DAG coloured by action, node details). svg and html refuse "
                     f"a plan above {render.MAX_LAYOUT_NODES} nodes or {render.MAX_LAYOUT_EDGES} edges "
                     "(input-too-large): Graphviz layout is superlinear.")


@app.command()
def graph(plan_file: PlanArg, fmt: Annotated[str, typer.Option("--format", help=GRAPH_FORMAT_HELP)] = "dot") -> None:
    """Print the plan's step DAG as Graphviz dot, SVG or an HTML page."""

    def run() -> int:
        if fmt not in ("dot", "svg", "html"):
            raise UsageError(f"--format must be dot, svg or html, not {fmt!r}", path="--format")
        p = read_plan(plan_file)
        if fmt == "dot":
            sys.stdout.write(render.to_dot(p))
        else:
            sys.stdout.write(render.to_svg(p) if fmt == "svg" else page.plan_page(p))
        return 0

    guarded(run)


@app.command("guardrails")
def list_guardrails() -> None:
    """List the guardrail checks: each runs at plan time and again before apply mutates anything (K4)."""
    emit({"guardrails": [{"id": g.id, "name": g.name, "summary": g.summary} for g in REGISTRY.values()]})
