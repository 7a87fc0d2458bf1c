"""Markdown for pull-request bots (K5): the summary outside a collapsible block, and a large plan
split into numbered comments that each fit the limit and are well-formed on their own."""

from __future__ import annotations

import re

import pytest

from engine.plan import Action, Plan, ServiceChange
from engine.render import summary_line, to_markdown_parts

SHA = "0123456789abcdef0123456789abcdef01234567"


def plan_of(n: int) -> Plan:
    actions = list(Action)
    services = tuple(ServiceChange(
        id=f"svc-{i:04d}", action=actions[i % len(actions)], reason=f"reason {i} | with a pipe " + "x" * (i % 90),
        requested_commit=SHA[:7], resolved_commit=SHA,
        item={"artifactConsumer": {"consumerKind": "main-server-compose"}}) for i in range(n))
    return Plan(format_version=1, udeploy_version="t", created_at="t", mode="env",
                environment={"name": "dev", "namespace": "unidesk-dev"},
                manifest={"mode": "env", "ref": "origin/master", "commit": SHA, "deployBlob": SHA},
                request={}, refreshed=True, forced=False, selection=(), services=services, nodes=(), edges=(),
                guardrails=())


def well_formed(part: str) -> None:
    assert part.count("<details>") == part.count("</details>") == 1
    assert part.index("**udeploy plan**") < part.index("<details>")  # summary outside the block
    assert part.count("```") % 2 == 0
    for line in part.splitlines():
        if line.startswith("| `svc-"):
            assert line.endswith("|") and len(re.findall(r"(?<!\\)\|", line)) == 7


@pytest.mark.parametrize("limit", [65536, 20000, 8000])
def test_K5_300_services_split_under_the_limit(limit: int) -> None:
    plan = plan_of(300)
    parts = to_markdown_parts(plan, limit)
    assert all(len(p) <= limit for p in parts)
    for p in parts:
        well_formed(p)
        assert summary_line(plan) in p
    rows = [line for p in parts for line in p.splitlines() if line.startswith("| `svc-")]
    assert len(rows) == 300 and len(set(rows)) == 300  # every service once, none split
    if len(parts) > 1:
        assert all(f"part {i}/{len(parts)}" in p for i, p in enumerate(parts, 1))


def test_K5_small_plan_is_one_comment_with_a_one_line_summary() -> None:
    [part] = to_markdown_parts(plan_of(5))
    first = part.splitlines()[0]
    assert first.startswith("**udeploy plan**") and "to deploy" in first and "unchanged" in first
