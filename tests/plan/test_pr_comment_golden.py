"""Golden PR comments (K5, issue 14), compared with tests/cases/plan/comment-*/: the sample's offline
plan through the CLI (real git: commit subjects from the sample repo), a refreshed plan with drift,
blocked, gated and unsupported services and a failing guardrail, and that plan split in parts.
UDEPLOY_UPDATE_GOLDEN=1 rewrites them."""

from __future__ import annotations

import re
from pathlib import Path

import attrs
from markdown_it import MarkdownIt

from tests.conftest import Cli
from tests.plan.golden import assert_golden_text
from tests.plan.plan_values import SHA, env_manifest, environment, item, request
from tests.sample_repo import SampleRepo
from udeploy.engine.errors import Diagnostic, Severity
from udeploy.engine.plan.model import Action, Blocked, BlockedReason, GuardrailResult, Plan, ServiceChange
from udeploy.engine.plan.plan_item import ComposeRecord, PlanItem
from udeploy.engine.plan.pr_comment import to_markdown_parts
from udeploy.engine.plan.records import LiveHealth, LiveSummary
from udeploy.engine.provider_api import Presence

OLD = "fedcba9876543210fedcba9876543210fedcba98"
HEX = re.compile(r"\b[0-9a-f]{12}\b")


def comment(parts: list[str]) -> str:
    return "\n<!-- ===== next comment ===== -->\n".join(parts)


def named(text: str, sample: SampleRepo) -> str:
    """The sample's SHAs by commit name, so a fixture change that moves them leaves the golden alone."""
    for name, sha in sample.commits.items():
        text = text.replace(sha, f"<{name}>").replace(sha[:12], f"<{name}>").replace(sha[:7], f"<{name}>")
    return HEX.sub("<blob>", text)


def test_K5_offline_plan_comment_matches_golden(sample: SampleRepo, cli: Cli, tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    assert cli("plan", "--env", "dev", "--no-refresh", "-out", str(out)).exit_code == 0
    r = cli("show", str(out), "--format", "markdown")
    assert r.exit_code == 0, r.stdout
    parts = r.json["parts"]
    assert len(parts) == 1 and "Planned offline (`--no-refresh`)" in parts[0]
    assert "frontend: v2" in parts[0]  # the commit's subject, recorded in the plan file at plan time
    assert_golden_text("plan/comment-offline-dev", "expected-comment.md", named(comment(parts), sample))


def compose_item(service: str, subject: str) -> PlanItem:
    base = item()
    source = attrs.evolve(base.artifact_consumer.source, subject=subject)
    consumer = attrs.evolve(base.artifact_consumer, source=source,
                            registry_image=f"127.0.0.1:5000/unidesk/{service}:{SHA}")
    target = attrs.evolve(base.target, host="main-server", compose=ComposeRecord(
        project="unidesk", service=service, file="compose.yml", image="x", recreate="x"))
    return attrs.evolve(base, artifact_consumer=consumer, target=target)


def live(service: str, commit: str | None, presence: Presence = Presence.RUNNING) -> LiveSummary:
    running = presence is Presence.RUNNING
    return LiveSummary(target=f"main-server:unidesk/{service}", presence=presence,
                       image=f"127.0.0.1:5000/unidesk/{service}:{commit}" if running else None,
                       commit=commit if running else None, fingerprint="sha256:0", subject="backend: v1" if running
                       else None, health=LiveHealth(reachable=running, status=200 if running else None,
                                                    deploy_commit=commit if running else None))


def refreshed_plan(copies: int = 1) -> Plan:
    """Services in every state a reviewer meets, `copies` times over (to split the comment)."""
    services: list[ServiceChange] = []
    for n in range(copies):
        tag = f"-{n}" if copies > 1 else ""
        services += [
            ServiceChange(id=f"backend-core{tag}", action=Action.DEPLOY, reason=f"live commit {OLD[:12]} != {SHA[:12]}",
                          requested_commit=SHA[:7], resolved_commit=SHA,
                          item=compose_item(f"backend-core{tag}", "backend: v2 (#42, thanks @someone)"),
                          live=live(f"backend-core{tag}", OLD), drift="container restarted outside udeploy"),
            ServiceChange(id=f"frontend{tag}", action=Action.DEPLOY, reason="absent on main-server",
                          requested_commit=SHA, resolved_commit=SHA,
                          item=compose_item(f"frontend{tag}", "frontend: v2"),
                          live=live(f"frontend{tag}", None, Presence.ABSENT)),
            ServiceChange(id=f"gateway{tag}", action=Action.NOOP, reason=f"live commit {SHA[:12]} matches",
                          requested_commit=SHA, resolved_commit=SHA, item=compose_item(f"gateway{tag}", "gateway: v1"),
                          live=live(f"gateway{tag}", SHA)),
            ServiceChange(id=f"code-queue{tag}", action=Action.BLOCKED, reason="runtime verification is blocked",
                          requested_commit=SHA, resolved_commit=SHA, item=item(allowed=False),
                          blocked=Blocked(BlockedReason.RUNTIME_VERIFICATION_BLOCKED)),
            ServiceChange(id=f"billing{tag}", action=Action.BLOCKED, reason="guardrail E2 failed",
                          requested_commit=SHA, resolved_commit=SHA, item=item(),
                          blocked=Blocked(BlockedReason.GUARDRAIL, ("E2",))),
            ServiceChange(id=f"db-admin{tag}", action=Action.GATED, reason="supervisor-gated: plan only",
                          requested_commit=SHA, resolved_commit=SHA, item=item(allowed=False),
                          blocked=Blocked(BlockedReason.SUPERVISOR_GATED)),
            ServiceChange(id=f"legacy-cron{tag}", action=Action.UNSUPPORTED, reason="no executable target (P8)",
                          requested_commit=SHA, resolved_commit=SHA, item=item(allowed=False)),
        ]
    finding = Diagnostic(Severity.ERROR, "E2", "billing: Service/billing is a NodePort", address="billing")
    return Plan(format_version=1, udeploy_version="t", created_at="t", mode="env", environment=environment(),
                manifest=env_manifest(), request=request(), refreshed=True, forced=False, selection=(),
                services=tuple(services), nodes=(), edges=(),
                guardrails=(GuardrailResult(id="E2", name="no public exposure", passed=False, findings=(finding,)),
                            GuardrailResult(id="P6", name="runtime verification", passed=True)))


def test_K5_refreshed_plan_with_drift_and_blocked_services_matches_golden() -> None:
    parts = to_markdown_parts(refreshed_plan())
    [part] = parts
    warnings = part[part.index("**⚠ Warnings**"):part.index("<details>")]
    assert "Drift on `backend-core`" in warnings and "by rule **P6**" in warnings and "by rule **E2**" in warnings
    assert "Guardrail **E2**" in warnings
    assert "- commit  fedcba9 backend: v1\n+ commit  0123456 backend: v2 (#42, thanks @someone)" in part
    assert_golden_text("plan/comment-refreshed-dev", "expected-comment.md", comment(parts))


def test_K5_split_plan_matches_golden_every_part_marked_and_well_formed() -> None:
    parts = to_markdown_parts(refreshed_plan(copies=6), 4000)
    assert len(parts) > 2 and all(len(p) <= 4000 for p in parts)
    md = MarkdownIt("commonmark").enable("table")
    for i, part in enumerate(parts, 1):
        marker, title = part.splitlines()[:2]
        assert marker == "<!-- udeploy plan env=dev -->" and title.endswith(f"(part {i}/{len(parts)})")
        fences = [t for t in md.parse(part) if t.type == "fence"]
        assert all(t.info == "diff" for t in fences) and len(fences) == part.count("```diff")
    assert "**⚠ Warnings**" in parts[0] and not any("**⚠ Warnings**" in p for p in parts[1:])
    assert sum(p.count("```diff") for p in parts) == 12  # every deploy once, no block split
    assert_golden_text("plan/comment-split-dev", "expected-comment.md", comment(parts))
