"""How an apply's progress events look on stderr (O1): a live per-node table when stderr is a
terminal, one timestamped line per event otherwise (a CI log, a detached job's output file).

The engine hands over typed `ProgressEvent`s; only this module knows about rich, and it is imported
by the commands that watch an apply (`apply`, `job status --follow`), never by `plan`. stdout is
left alone: it carries the command's one JSON document.
"""

from __future__ import annotations

import datetime as dt
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import attrs
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from udeploy.engine.apply.progress import NodeState, Progress, ProgressEvent

STATE_STYLES = {NodeState.PENDING: "dim", NodeState.RUNNING: "bold cyan", NodeState.SUCCEEDED: "green",
                NodeState.FAILED: "bold red", NodeState.SKIPPED: "yellow"}
MESSAGE_WIDTH = 70  # a provider's message can be long; the whole of it is in the job log


def timestamp(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plain_line(event: ProgressEvent) -> str:
    """`2026-11-30T23:59:01Z backend-core/recreate: running (compose-host@main-server)`: where a node
    runs while it is pending or running, the message once it has an outcome."""
    line = f"{timestamp(event.at)} "
    if event.node is None or event.state is None:
        return line + event.message
    line += f"{event.node}: {event.state.value}"
    if event.state in (NodeState.PENDING, NodeState.RUNNING):
        return line + (f" ({event.where})" if event.where else "")
    return line + (f": {event.message}" if event.message else "")


class PlainView:
    """One line per event, written at once (a detached job's output file is read while it grows)."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self._lock = threading.Lock()  # events come from the walk's threads

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            self.stream.write(plain_line(event) + "\n")
            self.stream.flush()


@attrs.define
class NodeRow:
    state: NodeState
    where: str = ""
    message: str = ""
    started: dt.datetime | None = None
    ended: dt.datetime | None = None

    def elapsed(self, now: dt.datetime) -> str:
        if self.started is None:
            return ""
        seconds = ((self.ended or now) - self.started).total_seconds()
        return f"{seconds:.1f}s" if seconds < 60 else f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


class LiveView:
    """A table of every node (state, where, elapsed time, last message), redrawn in place; job-level
    phases are printed above it as they come."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.rows: dict[str, NodeRow] = {}
        self._lock = threading.Lock()  # the walk's threads write, rich's refresh thread reads
        self.live = Live(console=console, get_renderable=self.render, refresh_per_second=4, transient=False)

    def __call__(self, event: ProgressEvent) -> None:
        if event.node is None or event.state is None:
            self.live.console.print(Text(f"{timestamp(event.at)} {event.message}", style="dim"))
            return
        with self._lock:
            row = self.rows.setdefault(event.node, NodeRow(state=event.state))
            row.state, row.where = event.state, event.where or row.where
            row.message = event.message if event.state is not NodeState.RUNNING else ""
            if event.state is NodeState.RUNNING:
                row.started, row.ended = event.at, None
            elif event.state.final and row.started is not None:
                row.ended = event.at
        self.live.refresh()

    def render(self) -> RenderableType:
        now = dt.datetime.now(dt.UTC)
        table = Table(box=None, pad_edge=False, show_edge=False, header_style="bold")
        for column in ("node", "where", "state", "elapsed", "message"):
            table.add_column(column, no_wrap=column != "message", overflow="ellipsis")
        with self._lock:
            rows = list(self.rows.items())
        counts: dict[NodeState, int] = {}
        for node, row in rows:
            counts[row.state] = counts.get(row.state, 0) + 1
            message = row.message if len(row.message) <= MESSAGE_WIDTH else row.message[:MESSAGE_WIDTH - 1] + "…"
            table.add_row(node, row.where, Text(row.state.value, style=STATE_STYLES[row.state]), row.elapsed(now),
                          message)
        summary = ", ".join(f"{counts[s]} {s.value}" for s in NodeState if s in counts)
        return Group(table, Text(f"{len(rows)} nodes: {summary}" if rows else "", style="bold"))

    def start(self) -> None:
        self.live.start()

    def stop(self) -> None:
        self.live.stop()


@contextmanager
def watching(stream: IO[str] | None = None, *, console: Console | None = None) -> Iterator[Progress]:
    """The progress callback for one command: live on a terminal, plain lines otherwise. `console`
    forces a rich console (tests give one with `force_terminal=True`)."""
    console = console or Console(file=stream or sys.stderr)
    if not console.is_terminal or console.is_dumb_terminal:
        yield PlainView(stream or sys.stderr)
        return
    view = LiveView(console)
    view.start()
    try:
        yield view
    finally:
        view.stop()
