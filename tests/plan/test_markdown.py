"""Markdown for pull-request bots (K5): the summary outside a collapsible block, and a large plan
split into numbered comments that each fit the limit and are well-formed on their own; linear in
the number of services (issue 9)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import attrs
import pytest
from typer.testing import CliRunner

from tests.plan.plan_values import SHA, env_manifest, environment, item, request
from udeploy.engine.cli import app
from udeploy.engine.plan.model import Action, Blocked, BlockedReason, Plan, ServiceChange
from udeploy.engine.plan.planfile import write_plan
from udeploy.engine.plan.pr_comment import result_line, to_markdown_parts

ITEM = item(allowed=True)


def stopped(action: Action) -> Blocked | None:
    return Blocked(BlockedReason.SUPERVISOR_GATED) if action in (Action.BLOCKED, Action.GATED) else None


def plan_of(n: int) -> Plan:
    actions = list(Action)
    services = tuple(ServiceChange(
        id=f"svc-{i:04d}", action=actions[i % len(actions)], reason=f"reason {i} | with a pipe " + "x" * (i % 90),
        requested_commit=SHA[:7], resolved_commit=SHA,
        item=ITEM, blocked=stopped(actions[i % len(actions)])) for i in range(n))
    return Plan(format_version=1, udeploy_version="t", created_at="t", mode="env",
                environment=environment(), manifest=env_manifest(), request=request(),
                refreshed=True, forced=False, selection=(), services=services, nodes=(), edges=(),
                guardrails=())


def well_formed(part: str) -> None:
    marker, title = part.splitlines()[:2]
    assert marker == "<!-- udeploy plan env=dev -->"  # on every part: the bot's handle
    assert title.startswith("**udeploy plan for `dev`** — ")
    assert part.count("<details>") == part.count("</details>") == 1
    assert part.index(title) < part.index("<details>")  # the result outside the block
    assert part.count("```diff") == part.count("```") / 2  # every diff block closed in its part
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
        assert result_line(plan) in p
    rows = [line for p in parts for line in p.splitlines() if line.startswith("| `svc-")]
    assert len(rows) == 300 and len(set(rows)) == 300  # every service once, none split
    if len(parts) > 1:
        assert all(f"part {i}/{len(parts)}" in p for i, p in enumerate(parts, 1))


def test_K5_small_plan_is_one_comment_with_a_one_line_summary() -> None:
    [part] = to_markdown_parts(plan_of(5))
    title = part.splitlines()[1]
    assert title == "**udeploy plan for `dev`** — 1 to deploy, 1 unchanged, 1 blocked, 1 gated, 1 unsupported"


def test_issue9_K5_20000_services_at_1000_chars_every_service_once_in_well_formed_parts() -> None:
    """issue 9: this took 30 s (the summary recounted every service for every part); it is linear now."""
    plan = plan_of(20000)
    parts = to_markdown_parts(plan, 1000)
    assert all(len(p) <= 1000 for p in parts)
    for p in parts:
        well_formed(p)
    rows = [line for p in parts for line in p.splitlines() if line.startswith("| `svc-")]
    assert len(rows) == 20000 and len(set(rows)) == 20000
    assert all(f"part {i}/{len(parts)}" in p for i, p in enumerate(parts, 1))


@pytest.mark.parametrize("chars", ["999", "0", "-5"])
def test_issue9_max_comment_chars_below_1000_is_a_usage_error(tmp_path: Path, chars: str) -> None:
    path = tmp_path / "plan.json"
    write_plan(plan_of(3), path)
    r = subprocess.run([sys.executable, "-m", "udeploy.engine.cli", "show", str(path), "--format", "markdown",
                        "--max-comment-chars", chars], capture_output=True, text=True, timeout=60)
    error = json.loads(r.stdout)["error"]
    assert r.returncode == 1 and error["code"] == "usage" and error["path"] == "max_comment_chars"


def test_issue9_max_comment_chars_too_small_for_this_plan_is_a_usage_error(tmp_path: Path) -> None:
    """A header that escapes long (a ref of `&`, each one `&amp;`) leaves no room for rows at 1000."""
    path = tmp_path / "plan.json"
    write_plan(attrs.evolve(plan_of(3), manifest=env_manifest(ref="&" * 500)), path)
    result = CliRunner().invoke(app, ["show", str(path), "--format", "markdown", "--max-comment-chars", "1000"])
    error = json.loads(result.stdout)["error"]
    assert result.exit_code == 1 and error["code"] == "usage" and error["path"] == "--max-comment-chars"
    assert "too small" in error["message"]


def test_issue9_show_markdown_through_the_cli_keeps_every_row(tmp_path: Path) -> None:
    path = tmp_path / "plan.json"
    write_plan(plan_of(300), path)
    result = CliRunner().invoke(app, ["show", str(path), "--format", "markdown", "--max-comment-chars", "1000"])
    assert result.exit_code == 0
    parts = json.loads(result.stdout)["parts"]
    assert all(len(p) <= 1000 for p in parts)
    assert sum(line.startswith("| `svc-") for p in parts for line in p.splitlines()) == 300


def test_issue14_hostile_subjects_images_and_hosts_stay_inside_their_diff_block() -> None:
    """Commit subjects (anyone who can commit writes them), images, hosts and live values land inside a
    ```diff block: each is one printable line after a fixed `- label `, so none closes the fence, and
    the comment renders no element but its own; the marker's scope cannot end its HTML comment."""
    from markdown_it import MarkdownIt

    from tests.plan.test_pr_comment_golden import compose_item, live
    from tests.untrusted.test_render_escaping import HOSTILE, Elements

    hostile = [*HOSTILE, "```\n</details>\n# heading", "\n```diff\n+ injected"]
    services = []
    for i, text in enumerate(hostile):
        it = compose_item(f"svc-{i}", text)
        it = attrs.evolve(it, target=attrs.evolve(it.target, host=text),
                          artifact_consumer=attrs.evolve(it.artifact_consumer, registry_image=text))
        services.append(ServiceChange(id=f"svc-{i}", action=Action.DEPLOY, reason=text, requested_commit=SHA,
                                      resolved_commit=SHA, item=it,
                                      live=attrs.evolve(live(f"svc-{i}", text), image=text, target=text)))
    plan = attrs.evolve(plan_of(0), services=tuple(services), environment=environment("dev --> <b>x</b>"))
    [part] = to_markdown_parts(plan)
    assert part.splitlines()[0] == "<!-- udeploy plan env=dev%20-%2D%3E%20%3Cb%3Ex%3C%2Fb%3E -->"
    fences = [t for t in MarkdownIt("commonmark").enable("table").parse(part) if t.type == "fence"]
    assert len(fences) == len(hostile) and all(t.info == "diff" for t in fences)
    for fence in fences:
        assert all(line[:2] in ("- ", "+ ", "  ", "# ") for line in fence.content.splitlines())
    parsed = Elements()
    parsed.feed(MarkdownIt("commonmark").enable("table").render(part))
    assert set(parsed.tags) <= {"p", "strong", "details", "summary", "table", "thead", "tbody", "tr", "th", "td",
                                "code", "ul", "li", "pre"}
    assert parsed.tags.count("details") == 1 and parsed.tags.count("pre") == len(hostile)
