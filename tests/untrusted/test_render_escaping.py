"""issue 9, security item 3: every string in a plan is hostile (a plan file with a recomputed digest
is accepted), so each rendering shows it as text and never lets it add structure: dot nodes and
edges, SVG/HTML elements, markdown table cells, or terminal control sequences.

Each test reads the rendering back with a real parser: Graphviz (`dot -Tjson`), an XML parser for
SVG, `html.parser` for the HTML plan and job pages, markdown-it (CommonMark + GFM tables) for PR comments."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from markdown_it import MarkdownIt
from typer.testing import CliRunner

from tests.plan.plan_values import SHA, env_manifest, environment, item, request
from udeploy.engine.apply.state import LocalState
from udeploy.engine.cli import app
from udeploy.engine.errors import Diagnostic, Severity
from udeploy.engine.plan import page
from udeploy.engine.plan.model import (
    Action,
    Blocked,
    BlockedReason,
    GuardrailResult,
    Node,
    Plan,
    ServiceChange,
    StepKind,
)
from udeploy.engine.plan.planfile import canonical, to_document, write_plan
from udeploy.engine.plan.pr_comment import to_markdown_parts
from udeploy.engine.plan.render import FILL, printable

ITEM = item(allowed=True)

# Strings that break a syntax when pasted raw: dot quoting and escStrings, SVG/HTML/markdown markup,
# table pipes and code spans, terminal escapes (clear screen, set title, OSC 8 link), bidi overrides.
HOSTILE = [
    'a" -> "pwn',
    'b"]; evil [label="x", URL="http://evil"]; "c',
    "ends with a backslash\\",
    "\\N\\G\\n\\l escStrings",
    "two\nlines\r\nand\ttab",
    "\x1b[2J\x1b]0;owned\x07\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\",
    "</details><!-- <img src=x onerror=alert(1)> <script>alert(2)</script>",
    "`code` | pipe || `` ` ``",
    "&lt;already&gt; &amp; & entities",
    "--> ]]> <![CDATA[ x",
    "\u202egnp.exe\u200b",
    "*bold* _em_ [link](http://evil) ![img](http://evil/x.png) $x$ ~~s~~",
]


def _stopped(action: Action) -> Blocked | None:
    return Blocked(BlockedReason.GUARDRAIL, ("E2", "P7")) if action in (Action.BLOCKED, Action.GATED) else None


def hostile_plan(strings: list[str] = HOSTILE) -> Plan:
    """A plan whose every free-form string is hostile: node ids (chained by edges), providers, hosts,
    service ids, reasons, drift, the manifest ref and the guardrail findings (a blocked reason is a
    `BlockedReason`, never free text)."""
    nodes = tuple(Node(id=s, kind=StepKind.STAMP, provider=f"prov {s}", host=f"host {s}", service=s)
                  for s in strings)
    edges = tuple((a, b) for a, b in zip(strings, strings[1:], strict=False))
    services = tuple(ServiceChange(id=s, action=list(Action)[i % len(Action)], reason=f"reason {s}",
                                   requested_commit=SHA[:7], resolved_commit=SHA,
                                   item=ITEM, drift=f"drift {s}", blocked=_stopped(list(Action)[i % len(Action)]))
                     for i, s in enumerate(strings))
    findings = tuple(Diagnostic(Severity.ERROR, "x", f"finding {s}") for s in strings)
    return Plan(format_version=1, udeploy_version="t", created_at="t", mode="env",
                environment=environment(strings[0]), manifest=env_manifest(ref=strings[-1]), request=request(),
                refreshed=True, forced=False, selection=(), services=services, nodes=nodes, edges=edges,
                guardrails=(GuardrailResult(id="P6", name=strings[-1], passed=False, findings=findings),))


@pytest.fixture
def hostile_file(tmp_path: Path) -> Path:
    path = tmp_path / "plan.json"
    write_plan(hostile_plan(), path)  # write_plan records the digest: read_plan accepts the file
    return path


def udeploy(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


def graphviz_json(dot: str) -> dict:
    done = subprocess.run(["dot", "-Tjson"], input=dot.encode(), capture_output=True, check=True, timeout=60)
    return json.loads(done.stdout)


def shown_label(raw: str) -> list[str]:
    """A DOT label as Graphviz draws it: escString `\\n` breaks lines, `\\\\` is a backslash,
    then character entities."""
    lines = re.split(r"(?<!\\)((?:\\\\)*)\\n", raw)
    # re.split keeps the captured backslash pairs: glue them back onto the line before each break
    joined = [lines[0]]
    for pairs, line in zip(lines[1::2], lines[2::2], strict=True):
        joined[-1] += pairs
        joined.append(line)
    return [html.unescape(line.replace("\\\\", "\\")) for line in joined]


def test_issue9_the_issue_plan_file_with_a_recomputed_digest_adds_no_edge(tmp_path: Path) -> None:
    """The reported case: a node id `a" -> "pwn`, digest recomputed, rendered an edge not in the plan."""
    doc = to_document(hostile_plan(["a", "b"]))
    doc["graph"]["nodes"][0]["id"] = 'a" -> "pwn'
    doc["graph"]["edges"] = [['a" -> "pwn', "b"]]
    doc["digest"] = "sha256:" + hashlib.sha256(canonical(doc)).hexdigest()
    path = tmp_path / "crafted.json"
    path.write_text(json.dumps(doc))
    code, dot = udeploy("graph", str(path))
    assert code == 0
    g = graphviz_json(dot)
    labels = {o["_gvid"]: shown_label(o["label"])[0] for o in g["objects"]}
    assert sorted(labels.values()) == ['a" -> "pwn', "b"]
    assert [(labels[e["tail"]], labels[e["head"]]) for e in g["edges"]] == [('a" -> "pwn', "b")]


def test_issue9_dot_has_exactly_the_plans_nodes_and_edges(hostile_file: Path) -> None:
    code, dot = udeploy("graph", str(hostile_file), "--format", "dot")
    assert code == 0
    g = graphviz_json(dot)
    drawn = {o["_gvid"]: shown_label(o["label"]) for o in g["objects"]}
    assert len(drawn) == len(HOSTILE)
    assert sorted(drawn.values()) == sorted([printable(s), printable(f"prov {s}@host {s}")] for s in HOSTILE)
    edges = [(drawn[e["tail"]][0], drawn[e["head"]][0]) for e in g["edges"]]
    assert edges == [(printable(a), printable(b)) for a, b in zip(HOSTILE, HOSTILE[1:], strict=False)]


def test_issue9_svg_is_well_formed_xml_showing_each_id_as_text(hostile_file: Path) -> None:
    code, svg = udeploy("graph", str(hostile_file), "--format", "svg")
    assert code == 0
    root = ET.fromstring(svg.encode())  # raises on anything not well-formed
    ns = {"svg": "http://www.w3.org/2000/svg"}
    groups = [g.get("class") for g in root.iter("{http://www.w3.org/2000/svg}g")]
    assert groups.count("node") == len(HOSTILE) and groups.count("edge") == len(HOSTILE) - 1
    texts = sorted(t.text or "" for t in root.findall(".//svg:text", ns))
    assert texts == sorted([printable(s) for s in HOSTILE] + [printable(f"prov {s}@host {s}") for s in HOSTILE])
    assert not any(el.tag.endswith(("script", "a", "foreignObject", "image")) for el in root.iter())


class Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.attrs: list[tuple[str, str | None]] = []
        self.comments: list[str] = []
        self.text: list[str] = []
        self.raw: dict[str, list[str]] = {}  # the text of each script and style element
        self._open: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.attrs += attrs
        self._open = tag

    def handle_endtag(self, tag: str) -> None:
        self._open = None

    def handle_comment(self, data: str) -> None:
        self.comments.append(data)

    def handle_data(self, data: str) -> None:
        if self._open in ("script", "style"):
            self.raw.setdefault(self._open, []).append(data)
        else:
            self.text.append(data)


PAGE_TAGS = {"html", "head", "meta", "title", "style", "body", "header", "h1", "h2", "h3", "span", "p", "code",
             "strong", "ul", "li", "main", "section", "div", "button", "aside", "dl", "dt", "dd", "table", "thead",
             "tbody", "tr", "th", "td", "script", "svg", "g", "path", "polygon", "text"}
PAGE_IDS = re.compile(r"n\d+|d-n\d+|graph0|edge\d+|dag|details|detail-none|zoom-(in|out|fit)")
PAGE_CLASSES = {"meta", "chip", "chips", "badge", "card", "toolbar", "legend", "dag-wrap", "detail", "params",
                "warn", "id", "sha", "nowrap", "graph", "node", "edge"} | {f"p-{k}" for k in FILL}


def check_page(text: str, plan: Plan, strings: list[str]) -> Elements:
    """The plan page holds only its own elements, ids, classes and script; every hostile string is text."""
    parsed = Elements()
    parsed.feed(text)
    parsed.close()
    assert set(parsed.tags) <= PAGE_TAGS, set(parsed.tags) - PAGE_TAGS
    # exactly the module's own script and style, each allowed by its hash and nothing else
    assert parsed.tags.count("script") == 1 and parsed.raw["script"] == [page.SCRIPT]
    assert parsed.tags.count("style") == 1 and parsed.raw["style"] == [page.STYLE]
    [csp] = [v for k, v in parsed.attrs if k == "content" and v and "default-src" in v]
    assert csp == page.CSP and "default-src 'none'" in csp and "unsafe" not in csp
    for body, directive in ((page.SCRIPT, "script-src"), (page.STYLE, "style-src")):
        digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
        assert f"{directive} 'sha256-{digest}'" in csp
    # nothing to fetch or run: no URL, no handler, no style attribute; ids and classes are generated
    names = {k for k, _ in parsed.attrs}
    assert not names & {"src", "href", "xlink:href", "action", "style", "srcdoc", "formaction"}
    assert not [k for k in names if k.startswith("on")]
    assert all(PAGE_IDS.fullmatch(v or "") for k, v in parsed.attrs if k == "id")
    assert all(c in PAGE_CLASSES for k, v in parsed.attrs if k == "class" for c in (v or "").split())
    assert all(re.fullmatch(r"(n\d+( n\d+)*)?", v or "") for k, v in parsed.attrs if k == "data-nodes")
    # one graph node, one detail section per step; one row per service
    n, e = len({node.id for node in plan.nodes}), len(plan.edges)
    assert [v for k, v in parsed.attrs if k == "class"].count("node") == n
    assert [v for k, v in parsed.attrs if k == "class"].count("edge") == e
    assert [v for k, v in parsed.attrs if k == "class"].count("detail") == n
    assert len([v for k, v in parsed.attrs if k == "data-nodes"]) == len(plan.services)
    # Graphviz's comments name only the generated node names (n0, n1 -> n2), never a plan id
    assert all(re.fullmatch(r"\s*(n\d+(&#45;&gt;n\d+)?|Title: udeploy Pages: 1)\s*", c) for c in parsed.comments)
    shown = "".join(parsed.text)
    assert all(printable(s) in shown for s in strings)
    return parsed


def test_issue9_html_page_has_no_injected_elements_and_stays_self_contained(hostile_file: Path) -> None:
    code, text = udeploy("graph", str(hostile_file), "--format", "html")
    assert code == 0
    check_page(text, hostile_plan(), HOSTILE)


def test_issue14_job_page_shows_a_hostile_job_record_as_text(hostile_file: Path, tmp_path: Path) -> None:
    """The job record is as hostile as the plan: node messages, timestamps, states and the job's own
    state are text; a state udeploy does not know reads as not reached."""
    plan = hostile_plan()
    state = tmp_path / "state"
    job = LocalState(state).create_job(plan_digest=to_document(plan)["digest"], plan_file=str(hostile_file),
                                       environment=HOSTILE[0], dry_run=False, nodes=[n.id for n in plan.nodes])
    for i, s in enumerate(HOSTILE):
        job.node(s, ["succeeded", "failed", "skipped", s][i % 4], message=f"message {s}")
    job.finish(HOSTILE[6], {"services": []})
    code, text = udeploy("job", "show", job.id, "--format", "html", "--state-dir", str(state))
    assert code == 0, text
    parsed = check_page(text, plan, HOSTILE + [f"message {s}" for s in HOSTILE])
    assert printable(HOSTILE[6]) in "".join(parsed.text)
    painted = [v for k, v in parsed.attrs if k == "class" and v and v.startswith("badge p-")]
    assert "badge p-not-reached" in painted and not [v for v in painted if v[len("badge p-"):] not in FILL]


def cells_per_row(part: str) -> list[int]:
    """The number of cells in each table row, as a CommonMark + GFM-tables renderer sees them."""
    counts: list[int] = []
    for tok in MarkdownIt("commonmark").enable("table").parse(part):
        if tok.type == "tr_open":
            counts.append(0)
        elif tok.type in ("th_open", "td_open"):
            counts[-1] += 1
    return counts


def test_issue9_markdown_cells_keep_the_columns_and_hold_no_raw_html(hostile_file: Path) -> None:
    code, out = udeploy("show", str(hostile_file), "--format", "markdown")
    assert code == 0
    [part] = json.loads(out)["parts"]
    md = MarkdownIt("commonmark").enable("table")
    rendered = md.render(part)
    parsed = Elements()
    parsed.feed(rendered)
    allowed = {"p", "strong", "details", "summary", "table", "thead", "tbody", "tr", "th", "td", "code", "ul", "li",
               "pre"}  # issue 14: `pre` holds each service's ```diff block
    assert set(parsed.tags) <= allowed, set(parsed.tags) - allowed
    assert parsed.tags.count("details") == 1 and parsed.tags.count("tr") == 1 + len(HOSTILE)
    assert parsed.tags.count("td") == 6 * len(HOSTILE)  # every row keeps the table's six columns
    rows = [line for line in part.splitlines() if line.startswith("| ") and "---" not in line][1:]
    assert len(rows) == len(HOSTILE)
    for row in rows:
        assert "<" not in row and len(re.findall(r"(?<!\\)\|", row)) == 7
    # the only raw tags in the comment are the bot's marker (issue 14) and the collapsible block's own
    assert re.findall(r"<[^>]*>", part) == ["<!-- udeploy plan env=a%22%20-%3E%20%22pwn -->", "<details>",
                                            "<summary>", "</summary>", "</details>"]
    # each reason reads back, as text, exactly as printable() shows it
    text = "".join(parsed.text)
    assert all(f"reason {printable(s)}" in text for s in HOSTILE)


def test_issue9_markdown_clips_a_huge_hostile_cell_without_losing_a_column() -> None:
    plan = hostile_plan([s * 400 for s in HOSTILE])
    parts = to_markdown_parts(plan, 4000)
    assert all(len(p) <= 4000 for p in parts)
    rows = [line for p in parts for line in p.splitlines() if line.startswith("| ") and "---" not in line
            and not line.startswith("| service")]
    assert len(rows) == len(HOSTILE)
    assert all(len(re.findall(r"(?<!\\)\|", row)) == 7 and "<" not in row for row in rows)
    cells = [c for p in parts for c in cells_per_row(p)]
    heads = sum(p.count("| service | action |") for p in parts)  # issue 14: a part of diff blocks has no table
    assert set(cells) == {6} and len(cells) == heads + len(HOSTILE)


def test_issue9_text_rendering_has_no_control_characters(hostile_file: Path) -> None:
    code, out = udeploy("show", str(hostile_file), "--format", "text")
    assert code == 0
    assert all(ch.isprintable() for line in out.split("\n") for ch in line), "a control character reached the terminal"
    # one line per service and one per drift: a newline in an id or reason adds none
    service_lines = [line for line in out.splitlines() if line.startswith("  ") and "reason " in line]
    assert len(service_lines) == len(HOSTILE)
    assert "\\x1b[2J" in out  # the escape is shown, not obeyed


def test_issue9_markdown_mentions_and_issue_references_stay_inert() -> None:
    """A reason that says `@org/admins` or `#1` must not make the bot ping people or link issues."""
    text = "".join(to_markdown_parts(hostile_plan(["ping @org/admins see #1"])))
    assert "@org/admins" not in text and "#1" not in text
    assert "@\u2060org/admins" in text and "#\u20601" in text
