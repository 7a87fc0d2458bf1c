"""Waiting for a live state to settle: read, judge, sleep, until settled or out of time.

Both runtime providers verify a rollout this way (the service answers its health with the
requested commit, or something static says it never will), so the loop is written once here.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
INTERVAL = 0.3  # seconds between reads: a health GET and a list call, well under the API's pace


def poll(read: Callable[[], T], settled: Callable[[T], bool], timeout: float, interval: float = INTERVAL) -> T:
    """The first value `settled` accepts, else the last one read when `timeout` seconds have passed
    (one read at least, so a zero timeout is a single look)."""
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if settled(value) or time.monotonic() >= deadline:
            return value
        time.sleep(interval)
