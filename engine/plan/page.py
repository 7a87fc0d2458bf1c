"""The plan page (`udeploy graph PLAN --format html`, `udeploy job show JOB --format html`): one
self-contained HTML file with the summary, a service table with actions coloured, the step DAG
coloured by action (or, for a job, by node state) with a legend, zoomable, and node details on hover
or click.

Self-contained: no network and no CDN. The CSS and the script are constants of this module, inlined
and allowed by their SHA-256 hashes in a Content-Security-Policy that forbids everything else
(`default-src 'none'`): no fetch, no image, no other script or style, whatever the page holds.

Every string from the plan or the job record is hostile (issue 9): it reaches the page only as
`html.escape`d text (after `printable`), or inside Graphviz's SVG, whose labels `render.dot_label`
quotes. Element ids and classes are generated (`n0`, `p-deploy`), never plan text, and the script
never parses markup: it shows pre-rendered detail sections and changes the SVG's viewBox.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs

from udeploy.engine.plan import render
from udeploy.engine.plan.model import Action, Node, Plan, ServiceChange
from udeploy.engine.plan.records import EnvManifest
from udeploy.engine.plan.render import FILL, PREREQUISITE, clip, printable

# A job's node states as the page shows them; anything else in a job record reads as not reached.
JOB_STATES = ("succeeded", "failed", "skipped", "running", "not-reached")
PARAMS_SHOWN = 24  # a node's params summary lists at most this many leaves
PARAM_CLIP = 160
TEXT_CLIP = 2000


@attrs.frozen
class NodeRun:
    """One node in a job: its state (one of `JOB_STATES`) and the job's message about it."""

    state: str
    message: str | None = None
    at: str | None = None


@attrs.frozen
class JobView:
    """What the job page shows beside the plan: the job record, its node states read as `JOB_STATES`."""

    job_id: str
    state: str
    dry_run: bool
    started_at: str | None
    finished_at: str | None
    nodes: Mapping[str, NodeRun]  # by node id; a plan node absent here was not reached
    plan_source: str  # where the plan was found (the job's plan file, its spool, or --plan)


def e(value: Any, limit: int = TEXT_CLIP) -> str:
    """A plan or job value as escaped, bounded HTML text."""
    return html.escape(printable(clip(str(value), limit)), quote=True)


def _csp_hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


LEGEND_LABEL = {PREREQUISITE: "prerequisite", "not-reached": "not reached"}

STYLE = """
:root { color-scheme: light; --ink: #111827; --muted: #6b7280; --line: #d1d5db; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: var(--ink);
  background: #f9fafb; }
header { padding: 14px 20px 10px; background: #fff; border-bottom: 1px solid var(--line); }
h1 { font-size: 20px; margin: 0 0 6px; }
h2 { font-size: 16px; margin: 0 0 8px; }
main { padding: 14px 20px; display: grid; gap: 14px; }
section.card { background: #fff; border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; }
.meta { color: var(--muted); margin: 2px 0; overflow-wrap: anywhere; }
.chips { display: flex; flex-wrap: wrap; gap: 6px; margin: 8px 0 4px; padding: 0; list-style: none; }
.chip, .badge { display: inline-block; border: 1px solid rgba(0,0,0,.15); border-radius: 999px;
  padding: 1px 9px; font-size: 12.5px; white-space: nowrap; }
ul.warn { margin: 6px 0 0; padding: 4px 10px 4px 28px; background: #fffbeb; border: 1px solid #f59e0b;
  border-radius: 6px; max-height: 8.5em; overflow: auto; }
ul.warn li { overflow-wrap: anywhere; }
.dag-wrap { display: grid; grid-template-columns: minmax(0, 1fr) 320px; gap: 12px; }
.toolbar { display: flex; flex-wrap: wrap; align-items: center; gap: 6px; margin-bottom: 6px; }
.toolbar button { font: inherit; padding: 2px 10px; border: 1px solid var(--line); border-radius: 6px;
  background: #fff; cursor: pointer; }
.legend { display: flex; flex-wrap: wrap; gap: 6px; margin-left: auto; padding: 0; list-style: none; }
#dag { height: calc(100vh - 120px); min-height: 240px; border: 1px solid var(--line); border-radius: 6px;
  background: #fff; overflow: hidden; cursor: grab; touch-action: none; }
#dag svg { width: 100%; height: 100%; display: block; }
#dag g.node { cursor: pointer; }
#dag g.node.selected path, #dag g.node.selected polygon { stroke: #dc2626; stroke-width: 3; }
#dag g.node.lit path, #dag g.node.lit polygon { stroke: #2563eb; stroke-width: 3; }
aside#details { border: 1px solid var(--line); border-radius: 6px; padding: 10px 12px; overflow: auto;
  max-height: calc(100vh - 120px); background: #fff; }
aside h3 { font-size: 14px; margin: 0 0 6px; overflow-wrap: anywhere; font-family: ui-monospace, monospace; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 2px 10px; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; overflow-wrap: anywhere; }
ul.params { margin: 4px 0 0; padding-left: 16px; font-family: ui-monospace, monospace; font-size: 12px; }
ul.params li { overflow-wrap: anywhere; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; padding: 4px 8px; border-bottom: 1px solid #eee; vertical-align: top;
  overflow-wrap: anywhere; }
th { color: var(--muted); font-weight: 600; }
tbody tr:hover { background: #f3f4f6; }
td.id, td.sha { font-family: ui-monospace, monospace; font-size: 12.5px; }
td.sha, td.nowrap { white-space: nowrap; overflow-wrap: normal; }
@media (max-width: 900px) { .dag-wrap { grid-template-columns: 1fr; } }
""" + "".join(f".p-{key} {{ background: {colour}; }}\n" for key, colour in FILL.items())

SCRIPT = """
(function () {
  "use strict";
  var box = document.getElementById("dag");
  var svg = box && box.querySelector("svg");
  if (!svg) { return; }
  var full = svg.viewBox.baseVal;
  var home = { x: full.x, y: full.y, w: full.width, h: full.height };
  var view = { x: home.x, y: home.y, w: home.w, h: home.h };
  function apply() { svg.setAttribute("viewBox", [view.x, view.y, view.w, view.h].join(" ")); }
  function fitHeight() {  /* as tall as the graph at the box's width, at most the window */
    var want = box.clientWidth * home.h / home.w + 2;
    box.style.height = Math.max(240, Math.min(window.innerHeight - 120, want)) + "px";
  }
  fitHeight();
  window.addEventListener("resize", fitHeight);
  function zoom(factor, cx, cy) {
    var w = Math.min(Math.max(view.w * factor, home.w / 40), home.w * 4);
    var f = w / view.w;
    view.x = cx - (cx - view.x) * f; view.y = cy - (cy - view.y) * f;
    view.w = w; view.h = view.h * f; apply();
  }
  function centre() { return [view.x + view.w / 2, view.y + view.h / 2]; }
  function point(ev) {
    var r = svg.getBoundingClientRect();
    var s = Math.max(view.w / r.width, view.h / r.height);
    var ox = (r.width * s - view.w) / 2, oy = (r.height * s - view.h) / 2;
    return [view.x - ox + (ev.clientX - r.left) * s, view.y - oy + (ev.clientY - r.top) * s, s];
  }
  function button(id, factor) {
    document.getElementById(id).addEventListener("click", function () { var c = centre(); zoom(factor, c[0], c[1]); });
  }
  button("zoom-in", 0.8);
  button("zoom-out", 1.25);
  document.getElementById("zoom-fit").addEventListener("click", function () {
    view = { x: home.x, y: home.y, w: home.w, h: home.h }; apply();
  });
  box.addEventListener("wheel", function (ev) {
    ev.preventDefault(); var p = point(ev); zoom(ev.deltaY < 0 ? 0.85 : 1 / 0.85, p[0], p[1]);
  }, { passive: false });
  var drag = null;
  box.addEventListener("pointerdown", function (ev) {
    drag = { x: ev.clientX, y: ev.clientY, vx: view.x, vy: view.y, moved: false };
  });
  window.addEventListener("pointermove", function (ev) {
    if (!drag) { return; }
    var s = point(ev)[2], dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
    if (Math.abs(dx) + Math.abs(dy) > 3) { drag.moved = true; }
    view.x = drag.vx - dx * s; view.y = drag.vy - dy * s; apply();
  });
  window.addEventListener("pointerup", function () { setTimeout(function () { drag = null; }, 0); });

  var pinned = null;
  var empty = document.getElementById("detail-none");
  function show(name) {
    var sections = document.querySelectorAll("section.detail");
    for (var i = 0; i < sections.length; i++) { sections[i].hidden = sections[i].id !== "d-" + name; }
    empty.hidden = !!document.getElementById("d-" + name);
  }
  function select(g) {
    var old = svg.querySelectorAll("g.node.selected");
    for (var i = 0; i < old.length; i++) { old[i].classList.remove("selected"); }
    if (g) { g.classList.add("selected"); }
  }
  var nodes = svg.querySelectorAll("g.node");
  for (var i = 0; i < nodes.length; i++) {
    (function (g) {
      g.addEventListener("mouseenter", function () { if (!pinned) { show(g.id); } });
      g.addEventListener("click", function (ev) {
        if (drag && drag.moved) { return; }
        ev.stopPropagation(); pinned = g.id; select(g); show(g.id);
      });
    })(nodes[i]);
  }
  box.addEventListener("click", function () {
    if (drag && drag.moved) { return; }
    pinned = null; select(null); show("");
  });
  var rows = document.querySelectorAll("tr[data-nodes]");
  function light(names, on) {
    for (var j = 0; j < names.length; j++) {
      var g = document.getElementById(names[j]);
      if (g) { g.classList.toggle("lit", on); }
    }
  }
  for (var k = 0; k < rows.length; k++) {
    (function (tr) {
      var names = tr.getAttribute("data-nodes").split(" ").filter(Boolean);
      tr.addEventListener("mouseenter", function () { light(names, true); });
      tr.addEventListener("mouseleave", function () { light(names, false); });
    })(rows[k]);
  }
})();
"""

CSP = (f"default-src 'none'; style-src {_csp_hash(STYLE)}; script-src {_csp_hash(SCRIPT)}; "
       "img-src 'none'; base-uri 'none'; form-action 'none'")


def plan_page(plan: Plan, job: JobView | None = None) -> str:
    """The page for `plan`, or for `job`'s run of it: the DAG is laid out by Graphviz (bounded by
    `render.check_layout_size`) and painted by action, or by the job's node states."""
    paint = render.action_paint(plan) if job is None else job_paint(plan, job)
    svg = _inline_svg(render.to_svg(plan, "html", paint))
    names = render.dot_names(plan)
    title = f"udeploy job {e(job.job_id)}" if job else "udeploy plan"
    env = plan.environment.name if plan.environment else "local manifest"
    legend_keys = sorted(set(paint.values()), key=list(FILL).index)
    actions = {s.id: s.action.value for s in plan.services}
    return "".join([
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<meta http-equiv='Content-Security-Policy' content=\"{CSP}\">",
        "<meta name='viewport' content='width=device-width, initial-scale=1'>",
        f"<title>{title} · {e(env, 80)}</title><style>{STYLE}</style></head><body>",
        _header(plan, job, title, env),
        "<main>",
        "<section class='card'><div class='toolbar'><h2>Steps</h2>",
        "<button type='button' id='zoom-in' title='Zoom in'>+</button>",
        "<button type='button' id='zoom-out' title='Zoom out'>−</button>",
        "<button type='button' id='zoom-fit' title='Fit the window'>fit</button>",
        "<ul class='legend' aria-label='legend'>",
        "".join(f"<li class='chip p-{k}'>{LEGEND_LABEL.get(k, k)}</li>" for k in legend_keys),
        "</ul></div><div class='dag-wrap'>",
        f"<div id='dag' role='img' aria-label='step graph'>{svg}</div>",
        "<aside id='details'><p id='detail-none' class='meta'>Hover over a step for its details; "
        "click to keep them.</p>",
        "".join(_node_detail(n, names[n.id], actions.get(n.service or ""), job) for n in _unique(plan.nodes)),
        "</aside></div></section>",
        _service_table(plan, job, names),
        "</main>",
        f"<script>{SCRIPT}</script></body></html>\n",
    ])


def job_paint(plan: Plan, job: JobView) -> dict[str, str]:
    """Each plan node's paint key in `job`: its state, or `not-reached`."""
    return {n.id: _state_of(job, n.id) for n in plan.nodes}


def _state_of(job: JobView, node_id: str) -> str:
    run = job.nodes.get(node_id)
    return run.state if run is not None and run.state in JOB_STATES else "not-reached"


def _unique(nodes: tuple[Node, ...]) -> Iterator[Node]:
    seen: set[str] = set()
    for n in nodes:
        if n.id not in seen:
            seen.add(n.id)
            yield n


def _chips(counts: Mapping[str, int]) -> str:
    return "<ul class='chips'>" + "".join(
        f"<li class='chip p-{k}'>{n} {LEGEND_LABEL.get(k, k)}</li>" for k, n in counts.items() if n) + "</ul>"


def _header(plan: Plan, job: JobView | None, title: str, env: str) -> str:
    m = plan.manifest
    if isinstance(m, EnvManifest):
        source = (f"manifest {e(m.ref, 200)} @ <code>{e(m.commit[:12])}</code> · "
                  f"deploy.json blob {e((m.deploy_blob or '—')[:12])}")
    else:
        source = f"local manifest {e(m.file, 200)}"
    live = "live state read (refreshed)" if plan.refreshed else "offline: live state not read (--no-refresh)"
    lines = [f"<header><h1>{title} <span class='meta'>· {e(env, 80)}</span></h1>",
             f"<p class='meta'>{source} · {live} · planned {e(plan.created_at, 40)} · "
             f"udeploy {e(plan.udeploy_version, 40)}</p>",
             f"<p class='meta'>{e(render.summary_line(plan), 400)} · {len(plan.nodes)} steps, "
             f"{len(plan.edges)} edges</p>",
             _chips({a.value: n for a, n in ((a, plan.counts()[a.value]) for a in Action)})]
    if job is not None:
        states = [_state_of(job, n.id) for n in _unique(plan.nodes)]
        lines += [f"<p class='meta'>job state <strong>{e(job.state, 40)}</strong>"
                  f"{' (dry run)' if job.dry_run else ''} · started {e(job.started_at, 40)} · "
                  f"finished {e(job.finished_at or '—', 40)} · plan from {e(job.plan_source, 400)}</p>",
                  _chips({s: states.count(s) for s in JOB_STATES})]
    return "".join(lines) + _warnings(plan) + "</header>"


def _warnings(plan: Plan) -> str:
    items = [] if plan.refreshed else ["Planned offline (--no-refresh): deploy is assumed where live state "
                                       "was not read."]
    items += [f"Drift on {s.id}: {s.drift}" for s in plan.services if s.drift]
    items += render.failed_guardrails(plan)
    if not items:
        return f"<p class='meta'>Guardrails: all {len(plan.guardrails)} passed.</p>"
    shown = "".join(f"<li>{e(i, 400)}</li>" for i in items[:200])
    more = f"<li>… and {len(items) - 200} more</li>" if len(items) > 200 else ""
    return f"<ul class='warn' aria-label='warnings'>{shown}{more}</ul>"


def _service_table(plan: Plan, job: JobView | None, names: Mapping[str, str]) -> str:
    by_service: dict[str, list[str]] = {}
    for n in _unique(plan.nodes):
        if n.service:
            by_service.setdefault(n.service, []).append(n.id)
    head = ["service", "action", "commit", "consumer", "target", "blocked", "reason"] + (["steps"] if job else [])
    rows = []
    for s in plan.services:
        ids = by_service.get(s.id, [])
        cells = [f"<td class='id'>{e(s.id, 400)}</td>",
                 f"<td><span class='badge p-{s.action.value}'>{s.action.value}</span></td>",
                 f"<td class='sha' title='{e(s.resolved_commit, 80)}'>{e(s.resolved_commit[:12])}</td>",
                 f"<td class='nowrap'>{e(s.item.artifact_consumer.consumer_kind, 200)}</td>",
                 f"<td>{e(s.item.target.host or '—', 200)}</td>",
                 f"<td>{_blocked(s)}</td>",
                 f"<td>{e(s.reason, 600)}</td>"]
        if job is not None:
            states = [_state_of(job, i) for i in ids]
            cells.append("<td>" + (" ".join(f"<span class='badge p-{k}'>{states.count(k)} "
                                            f"{LEGEND_LABEL.get(k, k)}</span>"
                                            for k in JOB_STATES if states.count(k)) or "—") + "</td>")
        rows.append(f"<tr data-nodes='{' '.join(names[i] for i in ids)}'>{''.join(cells)}</tr>")
    return (f"<section class='card'><h2>Services ({len(plan.services)})</h2><table><thead><tr>"
            + "".join(f"<th>{h}</th>" for h in head) + "</tr></thead><tbody>" + "".join(rows)
            + "</tbody></table></section>")


def _blocked(s: ServiceChange) -> str:
    return "—" if s.blocked is None else f"{e(s.blocked.rule, 20)} <span class='meta'>{e(s.blocked, 200)}</span>"


def _node_detail(n: Node, name: str, action: str | None, job: JobView | None) -> str:
    facts = [("kind", e(n.kind.value)), ("provider", e(n.provider, 200))]
    if n.host:
        facts.append(("host", e(n.host, 200)))
    facts.append(("service", e(n.service or "—", 400)))
    if action:
        facts.append(("action", f"<span class='badge p-{action}'>{action}</span>"))
    if job is not None:
        state = _state_of(job, n.id)
        run = job.nodes.get(n.id)
        facts.append(("state", f"<span class='badge p-{state}'>{LEGEND_LABEL.get(state, state)}</span>"))
        if run is not None and run.at:
            facts.append(("at", e(run.at, 40)))
        if run is not None and run.message:
            facts.append(("message", e(run.message, 1000)))
    dl = "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in facts)
    return (f"<section class='detail' id='d-{name}' hidden><h3>{e(n.id, 400)}</h3><dl>{dl}</dl>"
            f"{_params(n.params)}</section>")


def _params(params: Mapping[str, Any]) -> str:
    """A summary of a node's params: the leaves as `key.path: value`, clipped. Params hold no secret
    values (only key names, booleans and lengths), but their text is hostile like every plan field."""
    leaves = list(_leaves(params, ""))
    if not leaves:
        return ""
    items = "".join(f"<li>{e(k, 200)}: {e(v, PARAM_CLIP)}</li>" for k, v in leaves[:PARAMS_SHOWN])
    more = f"<li>… and {len(leaves) - PARAMS_SHOWN} more</li>" if len(leaves) > PARAMS_SHOWN else ""
    return f"<p class='meta'>params</p><ul class='params'>{items}{more}</ul>"


def _leaves(value: Any, prefix: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(value, list | tuple) and any(isinstance(v, Mapping) for v in value):
        for i, v in enumerate(value):
            yield from _leaves(v, f"{prefix}[{i}]")
    elif isinstance(value, list | tuple):
        yield prefix, ", ".join(str(v) for v in value)
    else:
        yield prefix, "—" if value is None else str(value).lower() if isinstance(value, bool) else str(value)


SVG_SIZE = re.compile(r'\s(?:width|height)="[^"]*"')


def _inline_svg(svg: str) -> str:
    """Graphviz's SVG for inlining: no XML prolog or DOCTYPE, and no fixed size, so the viewBox
    scales it to the window (the root tag is Graphviz's own, never plan text)."""
    start = svg.find("<svg")
    if start < 0:
        return html.escape(svg)
    end = svg.index(">", start)
    return SVG_SIZE.sub("", svg[start:end]) + svg[end:]
