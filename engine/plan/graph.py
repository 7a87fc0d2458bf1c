"""The step DAG behind a small interface (STYLE 6, K2).

`walk()` runs every ready node in parallel under a bound, releases a node's dependents only when
it succeeded (for apply, "succeeded" includes its verify: applied means converged), and skips the
dependents of a failed node instead of running them.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import attrs
import networkx as nx

from udeploy.engine.errors import UdeployError


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
        self._g: nx.DiGraph = nx.DiGraph()

    def add(self, node: str, **attrs_: object) -> None:
        self._g.add_node(node, **attrs_)

    def connect(self, upstream: str, downstream: str) -> None:
        """`downstream` runs only after `upstream` succeeded."""
        for n in (upstream, downstream):
            if n not in self._g:
                raise KeyError(f"unknown node {n!r}")
        self._g.add_edge(upstream, downstream)

    def nodes(self) -> list[str]:
        return list(nx.lexicographical_topological_sort(self._g))

    def edges(self) -> list[tuple[str, str]]:
        return sorted(self._g.edges())

    def attrs(self, node: str) -> dict[str, object]:
        return dict(self._g.nodes[node])

    def upstream(self, node: str) -> list[str]:
        return sorted(self._g.predecessors(node))

    def validate(self) -> None:
        """Refuse a cycle, naming it."""
        try:
            cycle = nx.find_cycle(self._g)
        except nx.NetworkXNoCycle:
            return
        path = " -> ".join([u for u, _ in cycle] + [cycle[0][0]])
        raise GraphCycle(f"the deployment graph has a cycle: {path}", path=path)

    def waves(self) -> list[list[str]]:
        """Nodes grouped by depth: each wave depends only on earlier waves."""
        self.validate()
        return [sorted(g) for g in nx.topological_generations(self._g)]

    def walk(self, run: Callable[[str], None], *, parallelism: int = 10,
             done: Iterable[str] = ()) -> WalkResult:
        """Run `run(node)` for every node in dependency order; an exception fails the node.

        Nodes in `done` count as succeeded without running (a resumed walk).
        """
        self.validate()
        order = self.nodes()
        outcomes: dict[str, NodeOutcome] = {n: NodeOutcome.SUCCEEDED for n in done if n in self._g}
        errors: dict[str, str] = {}
        running: dict[Future[None], str] = {}  # touched only by this thread; workers just run nodes

        def ready() -> list[str]:
            """Nodes whose upstream all succeeded. In topological order a skip reaches every
            descendant within the same pass."""
            out = []
            for n in order:
                if n in outcomes or n in running.values():
                    continue
                ups = [outcomes.get(u) for u in self._g.predecessors(n)]
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
            for child in sorted(self._g.successors(node)):
                if self.upstream(child)[0] == node and child not in seen:
                    seen.add(child)
                    emit(child, depth + 1, seen)

        seen: set[str] = set()
        for root in sorted(n for n in self._g if self._g.in_degree(n) == 0):
            emit(root, 0, seen)
        return "\n".join(lines)
