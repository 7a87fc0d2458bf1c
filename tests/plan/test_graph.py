"""The step DAG (K2): cycles refused by name, parallel walks, skipped dependents, resumed walks."""

from __future__ import annotations

import threading
import time

import pytest

from engine.graph import Graph, GraphCycle, NodeOutcome


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
