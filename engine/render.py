"""Human renderings of a plan: text for a terminal, markdown for pull-request comments (K5),
and the DAG as Graphviz dot or a self-contained HTML page."""

from __future__ import annotations

import html
from collections.abc import Iterable

from engine.plan import Action, Plan

SYMBOL = {Action.DEPLOY: "~", Action.NOOP: "=", Action.UNSUPPORTED: "!", Action.BLOCKED: "x", Action.GATED: "?"}
GITHUB_COMMENT_LIMIT = 65536


def summary_line(plan: Plan) -> str:
    c = plan.counts()
    extra = f", {c['gated']} gated" if c["gated"] else ""
    return (f"{c['deploy']} to deploy, {c['noop']} unchanged, {c['unsupported']} unsupported, "
            f"{c['blocked']} blocked{extra}")


def _where(plan: Plan) -> str:
    m = plan.manifest
    if m.get("mode") == "env":
        env = (plan.environment or {}).get("name")
        return (f"env {env} from {m.get('ref')} @ {str(m.get('commit'))[:12]} "
                f"(deploy.json blob {str(m.get('deployBlob'))[:12]})")
    return f"local manifest {m.get('file')}"


def failed_guardrails(plan: Plan) -> list[str]:
    return [f"{g.id} {g.name}: {f.summary}" for g in plan.guardrails if not g.passed for f in g.findings]


def to_text(plan: Plan) -> str:
    lines = [f"udeploy plan: {_where(plan)}", ""]
    width = max((len(s.id) for s in plan.services), default=0)
    for s in plan.services:
        lines.append(f"  {SYMBOL[s.action]} {s.id.ljust(width)}  {s.action.value:<11} "
                     f"{s.resolved_commit[:12]}  {s.reason}")
        if s.drift:
            lines.append(f"    {'':{width}}  drift: {s.drift}")
    lines += ["", f"Plan: {summary_line(plan)}.", f"Steps: {len(plan.nodes)} nodes, {len(plan.edges)} edges."]
    failed = failed_guardrails(plan)
    lines.append("Guardrails: " + (f"{len(failed)} finding(s)" if failed else f"all {len(plan.guardrails)} passed"))
    lines += [f"  - {f}" for f in failed]
    if not plan.refreshed:
        lines.append("Note: planned without reading live state (--no-refresh).")
    return "\n".join(lines) + "\n"


def _md_rows(plan: Plan) -> list[str]:
    rows = []
    for s in plan.services:
        kind = s.item.get("artifactConsumer", {}).get("consumerKind", "")
        blocked = s.item.get("blockedReason") or ""
        reason = s.reason.replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{s.id}` | **{s.action.value}** | `{s.resolved_commit[:12]}` | {kind} | {blocked} | {reason} |")
    return rows


def to_markdown_parts(plan: Plan, max_chars: int = GITHUB_COMMENT_LIMIT) -> list[str]:
    """The plan as one or more PR comments, each at most `max_chars` and each well-formed on its own:
    the one-line summary outside a collapsible block, table rows never split, every block closed."""
    head = f"**udeploy plan** — {summary_line(plan)}\n\n{_where(plan)}\n"
    table_head = ["| service | action | commit | consumer | blocked | reason |",
                  "|---|---|---|---|---|---|"]
    findings = failed_guardrails(plan)
    tail_lines = ["", "**Guardrails:** " + (f"{len(findings)} finding(s)" if findings else
                                            f"all {len(plan.guardrails)} passed")]
    tail_lines += [f"- {f}" for f in findings]
    parts: list[str] = []
    rows = _md_rows(plan)
    tail = "\n".join(tail_lines)
    # Room for the title (longest form), the details wrapper, the table head and the guardrail tail.
    fixed = len(head) + 120 + sum(len(r) + 1 for r in table_head) + len(tail) + 80
    if max_chars - fixed <= 200:
        raise ValueError(f"--max-comment-chars {max_chars} is too small for one plan comment")
    chunks = list(_chunk(rows, max_chars - fixed))
    total = len(chunks)
    for i, chunk in enumerate(chunks, 1):
        title = head if i == 1 else f"**udeploy plan** (part {i}/{total}) — {summary_line(plan)}\n"
        if total > 1 and i == 1:
            title = f"**udeploy plan** (part 1/{total}) — {summary_line(plan)}\n\n{_where(plan)}\n"
        body = "\n".join(table_head + chunk)
        extra = tail if i == total else ""
        part = f"{title}\n<details><summary>Services ({len(chunk)})</summary>\n\n{body}\n{extra}\n\n</details>\n"
        parts.append(part)
    return parts


def _chunk(rows: list[str], budget: int) -> Iterable[list[str]]:
    """Rows grouped so each group's text fits `budget`; a row is never split (an over-long one is cut)."""
    chunk: list[str] = []
    size = 0
    for row in rows:
        row = row if len(row) < budget else row[: budget - 5] + "… |"
        if chunk and size + len(row) + 1 > budget:
            yield chunk
            chunk, size = [], 0
        chunk.append(row)
        size += len(row) + 1
    yield chunk


def to_dot(plan: Plan) -> str:
    lines = ["digraph udeploy {", "  rankdir=LR;", '  node [shape=box, fontname="monospace"];']
    for n in plan.nodes:
        lines.append(f'  "{n.id}" [label="{n.id}\\n{n.provider}@{n.host or "-"}"];')
    lines += [f'  "{a}" -> "{b}";' for a, b in plan.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_html(plan: Plan, svg: str | None = None) -> str:
    body = svg or "<pre>" + html.escape(to_dot(plan)) + "</pre>"
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>udeploy plan graph</title></head><body>"
            f"<h1>udeploy plan</h1><p>{html.escape(summary_line(plan))}</p>{body}</body></html>\n")
