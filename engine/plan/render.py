"""Human renderings of a plan: text for a terminal, and the DAG as Graphviz dot, SVG or a
self-contained HTML page. The markdown for pull-request comments (K5) is `engine.plan.pr_comment`.

Every string in a plan may be hostile (issue 9): a plan file with a recomputed digest is accepted,
so service ids, reasons, node ids, providers, hosts and guardrail findings are shown, never obeyed.
Each rendering escapes them for its own syntax: control characters become visible escapes
(`printable`), dot uses generated node names with quoted, escaped labels, and HTML is
`html.escape`d.

Size limits (issue 9): svg and html run a Graphviz layout, which is superlinear in the graph, so
they refuse a plan above `MAX_LAYOUT_NODES` nodes or `MAX_LAYOUT_EDGES` edges (`input-too-large`)
and stop a layout after `LAYOUT_TIMEOUT_SECONDS`; dot output has no limit. Text and markdown are
linear in the plan, with long fields clipped.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from typing import Any

from udeploy.engine.errors import InputTooLarge, UdeployError
from udeploy.engine.plan.model import Action, Plan
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


def _dot_names(plan: Plan) -> dict[str, str]:
    """A generated DOT name per distinct node id (edge ends outside `nodes` included): plan ids
    never appear as DOT names, so no id can add a node, an edge or an attribute."""
    names: dict[str, str] = {}
    for node_id in [n.id for n in plan.nodes] + [end for edge in plan.edges for end in edge]:
        names.setdefault(node_id, f"n{len(names)}")
    return names


def to_dot(plan: Plan) -> str:
    names = _dot_names(plan)
    lines = ["digraph udeploy {", "  rankdir=LR;", '  node [shape=box, fontname="monospace"];']
    declared: set[str] = set()
    for n in plan.nodes:
        if n.id not in declared:
            declared.add(n.id)
            label = dot_label(n.id, f"{n.provider}@{n.host or '-'}")
            lines.append(f"  {names[n.id]} [label={label}];")
    for node_id in [i for i in names if i not in declared]:  # an edge end the plan declares no node for
        lines.append(f"  {names[node_id]} [label={dot_label(node_id)}, style=dashed];")
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


def to_svg(plan: Plan, fmt: str = "svg") -> str:
    """The DAG laid out by Graphviz `dot`, bounded in size and time."""
    check_layout_size(plan, fmt)
    if not shutil.which("dot"):
        raise UdeployError("`dot` (Graphviz) is not installed: apt-get install graphviz, or use --format dot",
                           path="--format")
    try:
        done = subprocess.run(["dot", "-Tsvg"], input=to_dot(plan).encode(), capture_output=True,
                              timeout=LAYOUT_TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired as exc:
        raise InputTooLarge(f"Graphviz did not lay the graph out within {LAYOUT_TIMEOUT_SECONDS} s; "
                            "use --format dot", path="--format", details={"format": fmt}) from exc
    if done.returncode != 0:
        why = shown(done.stderr.decode(errors="replace").strip(), 300)
        raise UdeployError(f"Graphviz dot failed (exit {done.returncode}): {why}", path="--format")
    return done.stdout.decode(errors="replace")


def to_html(plan: Plan, svg: str | None = None) -> str:
    """One self-contained page: the CSP forbids scripts and every fetch, whatever the content."""
    body = _inline_svg(svg) if svg else "<pre>" + html.escape(to_dot(plan)) + "</pre>"
    csp = "default-src 'none'; style-src 'unsafe-inline'"
    return (f"<!doctype html><html><head><meta charset='utf-8'>"
            f"<meta http-equiv='Content-Security-Policy' content=\"{csp}\">"
            f"<title>udeploy plan graph</title></head><body>"
            f"<h1>udeploy plan</h1><p>{html.escape(summary_line(plan))}</p><p>{html.escape(_where(plan))}</p>"
            f"{body}</body></html>\n")


def _inline_svg(svg: str) -> str:
    """Graphviz's SVG without its XML prolog and DOCTYPE, which have no place inside HTML."""
    start = svg.find("<svg")
    return svg[start:] if start >= 0 else html.escape(svg)
