"""issue 9: the fuzz harness over every untrusted input (deploy.json, config.json, CI.json, k8s
manifests, the TypeScript tree, plan files with and without a recomputed digest, state files,
CLI arguments). Each kind runs `UDEPLOY_FUZZ_EXAMPLES` derandomized examples (reproducible in CI)
and fails listing every distinct violation; the counts table prints at the end of the session.
"""

from __future__ import annotations

import os

import pytest

from tests.fuzz.harness import TALLY
from tests.fuzz.kinds import KINDS
from tests.fuzz.runner import run_kind

EXAMPLES = int(os.environ.get("UDEPLOY_FUZZ_EXAMPLES", "20"))


@pytest.mark.parametrize("kind", list(KINDS))
def test_issue9_hostile_input_never_crashes_hangs_runs_or_is_believed(kind: str) -> None:
    """issue 9 (D5, G1, M1): no traceback, non-JSON stdout, exit outside 0-4, hang, injection or escape."""
    run_kind(kind, EXAMPLES)
    assert TALLY.examples[kind] > 0
    failures = TALLY.failures(kind)
    assert not failures, f"{len(failures)} distinct violations for {kind}:\n" + "\n".join(
        f"  {f.command}: {f.category} x{f.count}: {f.detail}\n      e.g. {f.example}" for f in failures)
