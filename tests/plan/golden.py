"""Golden-file support: normalize a plan's volatile fields so it can be compared as data.

SHAs become `<commit:NAME>` (by the sample repo's commit names), blobs and digests become
placeholders, timestamps and fingerprints are dropped. Set UDEPLOY_UPDATE_GOLDEN=1 to rewrite.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path
from typing import Any

from tests.sample_repo import SampleRepo

CASES = Path(__file__).resolve().parents[1] / "cases"
HEX40 = re.compile(r"\b[0-9a-f]{40}\b")
SHA256 = re.compile(r"sha256:[0-9a-f]{16,64}")


def normalize(doc: Any, sample: SampleRepo) -> Any:
    names = {sha: name for name, sha in sample.commits.items()}
    text = json.dumps(doc, indent=2, sort_keys=True)
    for sha, name in names.items():
        text = text.replace(sha, f"<commit:{name}>").replace(f'"{sha[:7]}"', f'"<short:{name}>"')
    text = HEX40.sub("<sha>", text)
    text = SHA256.sub("<sha256>", text)
    value = json.loads(text)
    value.pop("createdAt", None)
    value["digest"] = "<digest>"
    return value


def assert_golden(case: str, actual: Any) -> None:
    assert_golden_text(case, "expected-plan.json", json.dumps(actual, indent=2, sort_keys=True) + "\n")


def assert_golden_text(case: str, name: str, actual: str) -> None:
    """Like `assert_golden`, for a rendering kept as text (a PR comment is read as markdown)."""
    path = CASES / case / name
    if os.environ.get("UDEPLOY_UPDATE_GOLDEN") or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        if not os.environ.get("UDEPLOY_UPDATE_GOLDEN"):
            raise AssertionError(f"wrote a new golden file {path}; review it and run again")
        return
    expected = path.read_text()
    if actual != expected:
        diff = "".join(difflib.unified_diff(expected.splitlines(True), actual.splitlines(True),
                                            "expected", "actual", n=2))
        raise AssertionError(f"{path} differs (UDEPLOY_UPDATE_GOLDEN=1 rewrites it):\n{diff[:8000]}")
