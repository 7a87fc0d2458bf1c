"""The step DAG (K2): cycles refused by name, parallel walks, skipped dependents, resumed walks;
and its renderings (`udeploy graph`) bounded in size (issue 9)."""

from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.plan.plan_values import env_manifest, environment, request
from udeploy.engine.cli import app
from udeploy.engine.plan import render
from udeploy.engine.plan.graph import Graph, GraphCycle, NodeOutcome
from udeploy.engine.plan.model import Node, Plan, StepKind
from udeploy.engine.plan.planfile import write_plan
from udeploy.engine.plan.render import MAX_LAYOUT_EDGES, MAX_LAYOUT_NODES


def chain_graph() -> Graph:
    g = Graph()
    for n in ("a", "b", "c", "d", "e"):
        g.add(n)
    for up, down in (("a", "b"), ("b", "c"), ("c", "d"), ("a", "e")):
        g.connect(up, down)
    return g


def test_K2_a_cycle_is_refused_naming_it() -> None:
    g = chain_graph()
    g.connect("d", "a")
    with pytest.raises(GraphCycle, match="a -> b -> c -> d -> a"):
        g.validate()


def test_K2_independent_nodes_run_in_parallel() -> None:
    g = Graph()
    for n in ("x", "y", "z"):
        g.add(n)
    running, peak, lock = [0], [0], threading.Lock()

    def run(_: str) -> None:
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1

    assert g.walk(run, parallelism=3).ok
    assert peak[0] == 3


def test_K2_a_failed_node_skips_its_descendants_not_its_siblings() -> None:
    ran: list[str] = []

    def run(n: str) -> None:
        ran.append(n)
        if n == "b":
            raise RuntimeError("boom")

    result = chain_graph().walk(run, parallelism=1)
    assert {n: o.value for n, o in result.outcomes.items()} == {
        "a": "succeeded", "b": "failed", "c": "skipped", "d": "skipped", "e": "succeeded"}
    assert "c" not in ran and "d" not in ran
    assert result.errors["b"] == "boom"


def test_K2_a_resumed_walk_does_not_redo_done_nodes() -> None:
    ran: list[str] = []
    result = chain_graph().walk(ran.append, done=["a", "b"])
    assert result.ok and sorted(ran) == ["c", "d", "e"]
    assert result.outcomes["a"] is NodeOutcome.SUCCEEDED


def test_waves_group_nodes_by_depth() -> None:
    assert chain_graph().waves() == [["a"], ["b", "e"], ["c"], ["d"]]


# --- issue 9: the renderings of the DAG are bounded -------------------------------------------------


def chain_plan_file(tmp_path: Path, nodes: int, extra_edges: int = 0) -> Path:
    """A plan file (digest recorded) whose graph is a chain of `nodes` steps plus `extra_edges`
    edges from the first step to later ones."""
    ids = [f"svc-{i}/stamp" for i in range(nodes)]
    steps = tuple(Node(id=i, kind=StepKind.STAMP, provider="compose", host="h", service=None) for i in ids)
    edges = [(a, b) for a, b in zip(ids, ids[1:], strict=False)]
    edges += [(ids[0], ids[2 + k % (nodes - 2)]) for k in range(extra_edges)]
    plan = Plan(format_version=1, udeploy_version="t", created_at="t", mode="env",
                environment=environment(), manifest=env_manifest(), request=request(),
                refreshed=True, forced=False, selection=(), services=(), nodes=steps, edges=tuple(edges),
                guardrails=())
    path = tmp_path / "plan.json"
    write_plan(plan, path)
    return path


def udeploy(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout


@pytest.mark.parametrize("fmt", ["svg", "html"])
def test_issue9_layout_above_the_node_limit_is_refused_naming_format_count_and_limit(tmp_path: Path,
                                                                                    fmt: str) -> None:
    path = chain_plan_file(tmp_path, MAX_LAYOUT_NODES + 1)
    code, out = udeploy("graph", str(path), "--format", fmt)
    error = json.loads(out)["error"]
    assert code == 1 and error["code"] == "input-too-large" and error["path"] == "--format"
    assert f"--format {fmt}" in error["message"]
    assert str(MAX_LAYOUT_NODES + 1) in error["message"] and str(MAX_LAYOUT_NODES) in error["message"]
    assert error["details"]["nodes"] == MAX_LAYOUT_NODES + 1 and error["details"]["maxNodes"] == MAX_LAYOUT_NODES
    # dot output of the same plan stays available: one line per node and per edge
    code, dot = udeploy("graph", str(path), "--format", "dot")
    assert code == 0
    assert len(re.findall(r"^  n\d+ \[label=", dot, re.M)) == MAX_LAYOUT_NODES + 1
    assert len(re.findall(r"^  n\d+ -> n\d+;$", dot, re.M)) == MAX_LAYOUT_NODES


def test_issue9_layout_above_the_edge_limit_is_refused(tmp_path: Path) -> None:
    path = chain_plan_file(tmp_path, 100, extra_edges=MAX_LAYOUT_EDGES)
    code, out = udeploy("graph", str(path), "--format", "svg")
    error = json.loads(out)["error"]
    assert code == 1 and error["code"] == "input-too-large"
    assert error["details"]["edges"] == MAX_LAYOUT_EDGES + 99 and error["details"]["maxEdges"] == MAX_LAYOUT_EDGES


def test_issue9_an_unknown_graph_format_is_a_usage_error_before_the_plan_is_read(tmp_path: Path) -> None:
    code, out = udeploy("graph", str(tmp_path / "missing.json"), "--format", "png")
    assert code == 1 and json.loads(out)["error"]["code"] == "usage"


def test_issue9_a_graph_under_the_limits_lays_out_as_svg(tmp_path: Path) -> None:
    code, svg = udeploy("graph", str(chain_plan_file(tmp_path, 30)), "--format", "svg")
    assert code == 0
    assert svg.count('class="node"') == 30 and svg.count('class="edge"') == 29


def test_issue9_a_layout_that_outlasts_the_timeout_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The node and edge limits bound the usual case; the timeout bounds a layout that is slow anyway
    (long labels, awkward shapes). Real Graphviz, with the deadline shortened so it passes."""
    monkeypatch.setattr(render, "LAYOUT_TIMEOUT_SECONDS", 0.001)
    code, out = udeploy("graph", str(chain_plan_file(tmp_path, 1000)), "--format", "html")
    error = json.loads(out)["error"]
    assert code == 1 and error["code"] == "input-too-large" and "within 0.001 s" in error["message"]
