"""What apply records for resume after a succeeded step, and when it reads the service for it
(no lab: the pool is a stand-in that fails the test if it is asked to read).

A resume compares the recorded runtime fingerprint only for nodes not done yet, so after the node
that closes a service's chain nothing is read; a step that reports its runtime is believed; a step
that left the runtime untouched keeps what the record holds (None: the record is not overwritten).
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from udeploy.engine.apply.run import _closing_nodes, _fingerprint_after
from udeploy.engine.provider_api import Presence, RuntimeState, StepKind, StepResult


def node(service: str | None, kind: str) -> Any:
    return SimpleNamespace(id=f"{service or 'prerequisite'}/{kind}", service=service, kind=StepKind(kind))


def chain(service: str, *kinds: str) -> tuple[list[Any], list[tuple[str, str]]]:
    nodes = [node(service, k) for k in kinds]
    return nodes, [(a.id, b.id) for a, b in zip(nodes, nodes[1:], strict=False)]


class NoReads:
    def runtime(self, host: str) -> Any:
        raise AssertionError(f"apply read the runtime of {host} for a fingerprint it never compares")


def test_the_last_node_of_each_chain_closes_it_and_no_other() -> None:
    a, a_edges = chain("a", "verify-artifact", "transfer-image", "stamp", "recreate", "verify-live")
    b, b_edges = chain("b", "import-image", "apply-objects", "stamp", "rollout", "verify-live")
    prerequisite = node(None, "apply-prerequisite")
    # b waits for a's verify-live and for the prerequisite: edges between services close nothing
    plan = SimpleNamespace(nodes=[*a, *b, prerequisite],
                           edges=[*a_edges, *b_edges, ("a/verify-live", "b/import-image"),
                                  (prerequisite.id, "b/apply-objects")])
    assert _closing_nodes(plan) == {"a/verify-live", "b/verify-live"}  # type: ignore[arg-type]


def test_a_node_whose_service_has_a_node_elsewhere_in_the_graph_does_not_close_it() -> None:
    # two branches of one service: neither end has the other upstream, so neither closes it
    x, y, z = node("s", "import-image"), node("s", "stamp"), node("s", "rollout")
    plan = SimpleNamespace(nodes=[x, y, z], edges=[(x.id, y.id), (x.id, z.id)])
    assert _closing_nodes(plan) == set()  # type: ignore[arg-type]


def test_closing_untouched_and_reported_steps_read_nothing() -> None:
    stamp, live = node("a", "stamp"), node("a", "verify-live")
    ok = StepResult(True, "done")
    state = SimpleNamespace(services=())
    assert _fingerprint_after(NoReads(), state, live, ok, {live.id}) is None  # type: ignore[arg-type]
    untouched = StepResult(True, "tagged", runtime_untouched=True)
    assert _fingerprint_after(NoReads(), state, stamp, untouched, set()) is None  # type: ignore[arg-type]
    seen = RuntimeState(target="h:p/a", presence=Presence.RUNNING, image="img", identity="c1")
    reported = StepResult(True, "recreated", runtime=seen)
    assert _fingerprint_after(NoReads(), state, stamp, reported, set()) == seen.fingerprint  # type: ignore[arg-type]
