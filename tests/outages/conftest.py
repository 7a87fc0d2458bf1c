"""Outage fixtures: real peers that fail the way real components do.

A *stalled* endpoint is a listening socket whose connections are accepted and never answered (a
stopped registry or sshd looks like this from outside); a *closed* endpoint is a port nobody
listens on.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.conftest import require_lab
from tests.outages.support import LAB_COMPONENTS, Endpoint


@pytest.fixture
def stalled() -> Iterator[Endpoint]:
    """Accepts every connection and never sends a byte (until the test ends)."""
    server = socket.create_server(("127.0.0.1", 0), backlog=128)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield Endpoint("127.0.0.1", server.getsockname()[1])
    stop.set()
    thread.join(5)
    for conn in held:
        conn.close()
    server.close()


@pytest.fixture
def closed() -> Endpoint:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return Endpoint("127.0.0.1", s.getsockname()[1])


@pytest.fixture
def lab_up() -> None:
    require_lab(*LAB_COMPONENTS)
