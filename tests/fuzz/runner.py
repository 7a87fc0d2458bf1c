"""Drive the input kinds through hypothesis: one forked CLI run per example, the tally, the CLI.

`python -m tests.fuzz --examples 10000 [--seed N] [--kind KIND]...` spreads the examples over
the input kinds, prints the counts table and exits 1 on any violation. The pytest suite
(tests/fuzz/test_fuzz.py) runs the same with `UDEPLOY_FUZZ_EXAMPLES` per kind, derandomized.
"""

from __future__ import annotations

import argparse
import atexit
import os
import secrets
import shutil
import sys
import time
from pathlib import Path

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import seed as with_seed

from tests.fuzz.harness import TALLY, Workspace, check, clean_markers, make_workspace, markers, run_forked, surroundings
from tests.fuzz.kinds import EXPLICIT, KINDS, Case

_WORKSPACE: list[Workspace] = []


def workspace() -> Workspace:
    """The session's sample checkout, made on first use. Its path is lowercase hex on purpose:
    kubernetes-validate lowercases `kind`, and the traversal case plants a schema by that path."""
    if not _WORKSPACE:
        root = Path(os.environ.get("UDEPLOY_FUZZ_DIR", "/tmp")) / f"udeploy-fuzz-{secrets.token_hex(4)}"
        root.mkdir(parents=True)
        atexit.register(shutil.rmtree, root, ignore_errors=True)
        _WORKSPACE.append(make_workspace(root))
    return _WORKSPACE[0]


def run_case(ws: Workspace, case: Case) -> None:
    started = time.monotonic()
    ex = ws.new_example_dir()
    before = surroundings(ws)
    prepared = KINDS[case.kind][1](case, ws, ex)
    (ex / "tmp").mkdir(exist_ok=True)
    env = {**ws.env, "UDEPLOY_STATE_DIR": str(ex / "state"), "HOME": str(ex / "home"), "TMPDIR": str(ex / "tmp"),
           **prepared.env}
    run = run_forked(prepared.argv, ex, env)
    found = check(run, prepared)
    hits = markers(ws, ex)
    if hits:
        found.append(("injection", f"payload ran: created {', '.join(h.replace(str(ex), 'EX') for h in hits)}"))
        clean_markers(hits)
    escaped = surroundings(ws) - before
    if escaped:
        found.append(("escape", f"wrote outside its directory: {sorted(escaped)[:5]}"))
        for rel in escaped:
            top, _, rest = rel.partition("/")
            base = {"root": ws.root, "examples": ws.examples, "clone": ws.clone}[top]
            clean_markers([str(base / rest)])
    shutil.rmtree(ex, ignore_errors=True)
    TALLY.record(case.kind, case.command, found, f"argv={list(prepared.argv)[:8]} {prepared.describe}",
                 time.monotonic() - started)


def run_kind(kind: str, examples: int, seed: int | None = None, *, explicit: bool = True) -> None:
    """`examples` generated examples of one kind (derandomized unless a seed is given), after the
    explicit ones that reproduce each item issue 9 names."""
    strategy = KINDS[kind][0]

    @settings(max_examples=examples, deadline=None, derandomize=seed is None, database=None,
              suppress_health_check=list(HealthCheck), phases=(Phase.explicit, Phase.generate), print_blob=False)
    @given(strategy)
    def body(case: Case) -> None:
        run_case(workspace(), case)

    if explicit:
        for case in EXPLICIT.get(kind, []):
            body = example(case)(body)
    (with_seed(seed)(body) if seed is not None else body)()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz", description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=1000, help="total examples, spread over the kinds")
    parser.add_argument("--seed", type=int, default=None, help="a hypothesis seed (default: derandomized)")
    parser.add_argument("--kind", action="append", choices=sorted(KINDS), help="only these kinds (repeatable)")
    args = parser.parse_args(argv)
    kinds = args.kind or list(KINDS)
    per_kind = max(1, args.examples // len(kinds))
    for kind in kinds:
        run_kind(kind, per_kind, args.seed)
        sys.stderr.write(f"{kind}: {TALLY.examples[kind]} examples, "
                         f"{sum(TALLY.violations[kind].values())} violations\n")
    print(TALLY.table())
    return 1 if TALLY.distinct else 0
