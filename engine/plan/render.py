"""Human renderings of a plan: text for a terminal, and the DAG as Graphviz dot or SVG
(`engine.plan.page` builds the HTML page around the SVG). The markdown for pull-request comments
(K5) is `engine.plan.pr_comment`.

Every string in a plan may be hostile (issue 9): a plan file with a recomputed digest is accepted,
so service ids, reasons, node ids, providers, hosts and guardrail findings are shown, never obeyed.
Each rendering escapes them for its own syntax: control characters become visible escapes
(`printable`) and dot uses generated node names with quoted, escaped labels (the HTML page,
`engine.plan.page`, is `html.escape`d).

Size limits (issue 9): svg and the html page run a Graphviz layout, which is superlinear in the graph, so
they refuse a plan above `MAX_LAYOUT_NODES` nodes or `MAX_LAYOUT_EDGES` edges (`input-too-large`)
and stop a layout after `LAYOUT_TIMEOUT_SECONDS`; dot output has no limit. Text and markdown are
linear in the plan, with long fields clipped.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

from udeploy.engine.errors import InputTooLarge, UdeployError
from udeploy.engine.plan.model import Action, Node, Plan
from udeploy.engine.plan.records import EnvManifest

SYMBOL = {Action.DEPLOY: "~", Action.NOOP: "=", Action.UNSUPPORTED: "!", Action.BLOCKED: "x", Action.GATED: "?"}
MAX_LAYOUT_NODES = 2000  # measured: a 2,000-node, 4,000-edge random DAG lays out in about 5 s
MAX_LAYOUT_EDGES = 4000
LAYOUT_TIMEOUT_SECONDS: float = 60
TEXT_ID_WIDTH = 40  # the text table pads ids to at most this, so one long id cannot widen every line
FIELD_CLIP = 200  # header fields (ref, file) and findings are cut here in text and markdown


def printable(text: str) -> str:
    """`text` with every character Python deems non-printable (C0/C1 controls and ANSI escapes,
    newlines, bidi overrides, zero-width and other format characters, lone surrogates) shown as a
    visible `\\x..`/`\\u....` escape, so it cannot rewrite a terminal or break a line-based syntax."""
    if text.isprintable():  # the common case, at C speed
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + "…"


def shown(value: Any, limit: int = FIELD_CLIP) -> str:
    """A plan field as safe, bounded terminal text."""
    return printable(clip(str(value), limit))


def summary_line(plan: Plan) -> str:
    c = plan.counts()
    extra = f", {c['gated']} gated" if c["gated"] else ""
    return (f"{c['deploy']} to deploy, {c['noop']} unchanged, {c['unsupported']} unsupported, "
            f"{c['blocked']} blocked{extra}")


def _where(plan: Plan) -> str:
    m = plan.manifest
    if isinstance(m, EnvManifest):
        env = plan.environment.name if plan.environment else None
        return (f"env {shown(env)} from {shown(m.ref)} @ {shown(m.commit, 12)} "
                f"(deploy.json blob {shown(m.deploy_blob, 12)})")
    return f"local manifest {shown(m.file)}"


def failed_guardrails(plan: Plan) -> list[str]:
    """The failed guardrails' findings, raw: each renderer escapes them for its own syntax."""
    return [f"{g.id} {g.name}: {f.summary}" for g in plan.guardrails if not g.passed for f in g.findings]


def to_text(plan: Plan) -> str:
    lines = [f"udeploy plan: {_where(plan)}", ""]
    ids = [printable(s.id) for s in plan.services]
    width = min(max((len(i) for i in ids), default=0), TEXT_ID_WIDTH)
    for s, sid in zip(plan.services, ids, strict=True):
        lines.append(f"  {SYMBOL[s.action]} {clip(sid, 10 * FIELD_CLIP).ljust(width)}  {s.action.value:<11} "
                     f"{shown(s.resolved_commit, 12)}  {shown(s.reason, 10 * FIELD_CLIP)}")
        if s.drift:
            lines.append(f"    {'':{width}}  drift: {shown(s.drift, 10 * FIELD_CLIP)}")
    lines += ["", f"Plan: {summary_line(plan)}.", f"Steps: {len(plan.nodes)} nodes, {len(plan.edges)} edges."]
    failed = failed_guardrails(plan)
    lines.append("Guardrails: " + (f"{len(failed)} finding(s)" if failed else f"all {len(plan.guardrails)} passed"))
    lines += [f"  - {shown(f, 10 * FIELD_CLIP)}" for f in failed]
    if not plan.refreshed:
        lines.append("Note: planned without reading live state (--no-refresh).")
    return "\n".join(lines) + "\n"


# --- the step DAG ---------------------------------------------------------------------------------


def dot_label(*lines: str) -> str:
    """`lines` as one DOT double-quoted label that Graphviz shows literally: controls made visible,
    `&` kept from starting an entity, `\\` from starting an escString (`\\n`, `\\N`, ...) and `"`
    from closing the string; the lines are joined by escString line breaks. A quoted string is
    never an HTML-like label."""
    escaped = (printable(t).replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"') for t in lines)
    return '"' + "\\n".join(escaped) + '"'


# Fill colours of the DAG's nodes, by paint key: a plan paints each node with its service's action,
# a job with the node's state. The keys are fixed here (never plan text): the page's CSS classes too.
FILL = {
    Action.DEPLOY.value: "#bfdbfe", Action.NOOP.value: "#e5e7eb", Action.UNSUPPORTED.value: "#fed7aa",
    Action.BLOCKED.value: "#fecaca", Action.GATED.value: "#e9d5ff", "prerequisite": "#fef9c3",
    "succeeded": "#bbf7d0", "failed": "#fca5a5", "skipped": "#fde68a", "running": "#93c5fd",
    "not-reached": "#f3f4f6",
}
PREREQUISITE = "prerequisite"  # a node of no planned service (prerequisite/<name>)


def node_where(node: Node) -> str:
    """Where a node runs: `provider@host`, or the provider alone for a node of no host (registry)."""
    return f"{node.provider}@{node.host}" if node.host else node.provider


def action_paint(plan: Plan) -> dict[str, str]:
    """Each node's paint key: its service's action, or `prerequisite` for a node of no planned service."""
    actions = {s.id: s.action.value for s in plan.services}
    return {n.id: actions.get(n.service or "", PREREQUISITE) if n.service else PREREQUISITE for n in plan.nodes}


def dot_names(plan: Plan) -> dict[str, str]:
    """A generated DOT name per distinct node id (edge ends outside `nodes` included): plan ids
    never appear as DOT names, so no id can add a node, an edge or an attribute. The names are
    also the SVG element ids the plan page refers to."""
    names: dict[str, str] = {}
    for node_id in [n.id for n in plan.nodes] + [end for edge in plan.edges for end in edge]:
        names.setdefault(node_id, f"n{len(names)}")
    return names


def to_dot(plan: Plan, paint: dict[str, str] | None = None) -> str:
    """The DAG in DOT, each node filled by its paint key's colour (default: its service's action) and
    carrying its generated name as SVG id; nothing from the plan but quoted labels."""
    names = dot_names(plan)
    paint = action_paint(plan) if paint is None else paint
    lines = ["digraph udeploy {", "  rankdir=LR;", "  nodesep=0.15; ranksep=0.35;",
             '  node [shape=box, style="rounded,filled", fontname="monospace", fontsize=10, fillcolor="#ffffff"];']
    declared: set[str] = set()
    for n in plan.nodes:
        if n.id not in declared:
            declared.add(n.id)
            key = paint.get(n.id, PREREQUISITE)
            key = key if key in FILL else PREREQUISITE  # only FILL's own keys reach the DOT text
            lines.append(f'  {names[n.id]} [label={dot_label(n.id, node_where(n))}, id={names[n.id]}, '
                         f'fillcolor="{FILL[key]}"];')
    for node_id in [i for i in names if i not in declared]:  # an edge end the plan declares no node for
        lines.append(f'  {names[node_id]} [label={dot_label(node_id)}, id="{names[node_id]}", style=dashed];')
    lines += [f"  {names[a]} -> {names[b]};" for a, b in plan.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def check_layout_size(plan: Plan, fmt: str) -> None:
    """Refuse a Graphviz layout (svg, html) of a graph above the documented limits."""
    nodes, edges = len(plan.nodes), len(plan.edges)
    if nodes > MAX_LAYOUT_NODES or edges > MAX_LAYOUT_EDGES:
        raise InputTooLarge(
            f"--format {fmt} lays the graph out with Graphviz, which is superlinear: this plan has {nodes} nodes "
            f"and {edges} edges, above the limit of {MAX_LAYOUT_NODES} nodes and {MAX_LAYOUT_EDGES} edges; "
            "use --format dot (no limit)", path="--format",
            details={"format": fmt, "nodes": nodes, "edges": edges,
                     "maxNodes": MAX_LAYOUT_NODES, "maxEdges": MAX_LAYOUT_EDGES})


def to_svg(plan: Plan, fmt: str = "svg", paint: dict[str, str] | None = None) -> str:
    """The DAG laid out by Graphviz `dot`, bounded in size and time (`paint`: as `to_dot`)."""
    check_layout_size(plan, fmt)
    if not shutil.which("dot"):
        raise UdeployError("`dot` (Graphviz) is not installed: apt-get install graphviz, or use --format dot",
                           path="--format")
    try:
        done = subprocess.run(["dot", "-Tsvg"], input=to_dot(plan, paint).encode(), capture_output=True,
                              timeout=LAYOUT_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InputTooLarge(f"Graphviz did not lay the graph out within {LAYOUT_TIMEOUT_SECONDS} s; "
                            "use --format dot", path="--format", details={"format": fmt}) from exc
    if done.returncode != 0:
        why = shown(done.stderr.decode(errors="replace").strip(), 300)
        raise UdeployError(f"Graphviz dot failed (exit {done.returncode}): {why}", path="--format")
    return done.stdout.decode(errors="replace")
