"""What an apply tells its watcher while it runs (O1): typed progress events, never preformatted text.

The walk reports each node's state change (`pending`, `running`, `succeeded`, `failed`, `skipped`) and
the job-level phases before it ("planning", "re-reading desired and live state"); `job status --follow`
rebuilds the same events from a job record. How they look (a live table on a terminal, timestamped
lines otherwise) is the command line's business (`engine/cli/progress_view.py`).
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable

import attrs


class NodeState(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"  # an upstream node did not succeed

    @property
    def final(self) -> bool:
        return self in (NodeState.SUCCEEDED, NodeState.FAILED, NodeState.SKIPPED)


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@attrs.frozen
class ProgressEvent:
    """One thing that happened. `node` and `state` are None for a job-level phase ("planning");
    `where` is the node's provider@host; `message` is the provider's or the walk's own words."""

    message: str = ""
    node: str | None = None
    state: NodeState | None = None
    where: str = ""
    at: dt.datetime = attrs.field(factory=utc_now)


Progress = Callable[[ProgressEvent], None]


def phase(message: str) -> ProgressEvent:
    """A job-level step, not tied to one node."""
    return ProgressEvent(message=message)


def silent(event: ProgressEvent) -> None:
    """The default watcher: nobody."""
