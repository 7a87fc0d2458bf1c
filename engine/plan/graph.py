"""The step DAG behind a small interface (STYLE 6, K2).

`walk()` runs every ready node in parallel under a bound, releases a node's dependents only when
it succeeded (for apply, "succeeded" includes its verify: applied means converged), and skips the
dependents of a failed node instead of running them.

The graph keeps its own adjacency (insertion-ordered dicts) and orders itself (a lexicographic
topological sort, as networkx's); networkx is imported only to name a cycle and for `waves()`,
from a DiGraph built with the same order. A plan pays neither for the import (a tenth of a second)
nor for networkx's bookkeeping per node (issue 11).
"""

from __future__ import annotations

import enum
import heapq
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

import attrs

from udeploy.engine.errors import UdeployError

if TYPE_CHECKING:
    import networkx as nx


class GraphCycle(UdeployError, ValueError):
    code = "graph-cycle"


class NodeOutcome(enum.Enum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # an upstream node failed


@attrs.frozen
class WalkResult:
    outcomes: dict[str, NodeOutcome]
    errors: dict[str, str]  # node -> why it failed

    @property
    def ok(self) -> bool:
        return all(o is NodeOutcome.SUCCEEDED for o in self.outcomes.values())


class Graph:
    def __init__(self) -> None:
        self._attrs: dict[str, dict[str, object]] = {}  # node -> its attributes, in the order added
        self._succ: dict[str, dict[str, None]] = {}  # node -> downstream nodes, in the order connected
        self._pred: dict[str, dict[str, None]] = {}  # node -> upstream nodes
        self._edges: dict[tuple[str, str], None] = {}  # every edge, in the order connected

    def add(self, node: str, **attrs_: object) -> None:
        if node not in self._attrs:
            self._attrs[node], self._succ[node], self._pred[node] = {}, {}, {}
        self._attrs[node].update(attrs_)

    def connect(self, upstream: str, downstream: str) -> None:
        """`downstream` runs only after `upstream` succeeded."""
        for n in (upstream, downstream):
            if n not in self._attrs:
                raise KeyError(f"unknown node {n!r}")
        self._succ[upstream][downstream] = None
        self._pred[downstream][upstream] = None
        self._edges[(upstream, downstream)] = None

    def nodes(self) -> list[str]:
        """Every node in dependency order, the smallest name first among those ready (networkx's
        `lexicographical_topological_sort`; a cycle raises its error)."""
        order = self._lexicographic_order()
        if len(order) < len(self._attrs):
            import networkx as nx

            return list(nx.lexicographical_topological_sort(self._nx()))  # raises NetworkXUnfeasible
        return order

    def _lexicographic_order(self) -> list[str]:
        """Kahn's algorithm with a heap: shorter than the graph when it has a cycle."""
        indegree = {n: len(ups) for n, ups in self._pred.items()}
        ready = [n for n, d in indegree.items() if d == 0]
        heapq.heapify(ready)
        order: list[str] = []
        while ready:
            n = heapq.heappop(ready)
            order.append(n)
            for child in self._succ[n]:
                indegree[child] -= 1
                if indegree[child] == 0:
                    heapq.heappush(ready, child)
        return order

    def edges(self) -> list[tuple[str, str]]:
        return sorted(self._edges)

    def attrs(self, node: str) -> dict[str, object]:
        return dict(self._attrs[node])

    def upstream(self, node: str) -> list[str]:
        if node not in self._pred:
            return sorted(self._nx().predecessors(node))  # networkx's error for an unknown node
        return sorted(self._pred[node])

    def validate(self) -> None:
        """Refuse a cycle, naming it."""
        if len(self._lexicographic_order()) == len(self._attrs):
            return
        import networkx as nx

        cycle = nx.find_cycle(self._nx())
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        raise GraphCycle(f"the deployment graph has a cycle: {path}", path=path)

    def _nx(self) -> nx.DiGraph:
        """This graph as a networkx DiGraph, nodes and edges added in the same order as here."""
        import networkx as nx

        g: nx.DiGraph = nx.DiGraph()
        for node, node_attrs in self._attrs.items():
            g.add_node(node, **node_attrs)
        g.add_edges_from(self._edges)
        return g

    def waves(self) -> list[list[str]]:
        """Nodes grouped by depth: each wave depends only on earlier waves."""
        self.validate()
        import networkx as nx

        return [sorted(g) for g in nx.topological_generations(self._nx())]

    def walk(self, run: Callable[[str], None], *, parallelism: int = 10,
             done: Iterable[str] = ()) -> WalkResult:
        """Run `run(node)` for every node in dependency order; an exception fails the node.

        Nodes in `done` count as succeeded without running (a resumed walk).
        """
        self.validate()
        order = self.nodes()
        outcomes: dict[str, NodeOutcome] = {n: NodeOutcome.SUCCEEDED for n in done if n in self._attrs}
        errors: dict[str, str] = {}
        running: dict[Future[None], str] = {}  # touched only by this thread; workers just run nodes

        def ready() -> list[str]:
            """Nodes whose upstream all succeeded. In topological order a skip reaches every
            descendant within the same pass."""
            out = []
            for n in order:
                if n in outcomes or n in running.values():
                    continue
                ups = [outcomes.get(u) for u in self._pred[n]]
                if any(o in (NodeOutcome.FAILED, NodeOutcome.SKIPPED) for o in ups):
                    outcomes[n] = NodeOutcome.SKIPPED
                    errors[n] = "skipped: an upstream node did not succeed"
                elif all(o is NodeOutcome.SUCCEEDED for o in ups):
                    out.append(n)
            return out

        with ThreadPoolExecutor(max_workers=max(1, parallelism)) as pool:
            while True:
                for n in ready()[: max(0, parallelism - len(running))]:
                    running[pool.submit(run, n)] = n
                if not running:
                    break
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for fut in finished:
                    n = running.pop(fut)
                    exc = fut.exception()
                    if exc is None:
                        outcomes[n] = NodeOutcome.SUCCEEDED
                    else:
                        outcomes[n] = NodeOutcome.FAILED
                        errors[n] = str(exc) or type(exc).__name__
        return WalkResult(outcomes={n: outcomes[n] for n in order}, errors=errors)

    def text_tree(self) -> str:
        """The graph as indented text, for golden tests: each node under its first upstream."""
        lines: list[str] = []

        def emit(node: str, depth: int, seen: set[str]) -> None:
            ups = self.upstream(node)
            extra = f"  (also after {', '.join(ups[1:])})" if len(ups) > 1 else ""
            lines.append("  " * depth + node + extra)
            for child in sorted(self._succ[node]):
                if self.upstream(child)[0] == node and child not in seen:
                    seen.add(child)
                    emit(child, depth + 1, seen)

        seen: set[str] = set()
        for root in sorted(n for n in self._attrs if not self._pred[n]):
            emit(root, 0, seen)
        return "\n".join(lines)
