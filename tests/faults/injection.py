"""Faults of the lab's real components, by their pidfiles (issue 12).

`stop` freezes a component (SIGSTOP): its sockets still accept connections, and nothing answers,
as a hung process or a dropped network looks from outside. `kill` ends it (SIGKILL): connections
are refused or reset. A fault is prepared first (the pidfile read, the lab checked) so that firing
it is one signal, as fast as the walk it interrupts; it is always undone, whatever happened: a
stopped component gets SIGCONT, a killed one is started again by `scripts/lab up` and waited for.
sshd's fault includes the session processes it forked, so a connection udeploy already holds fails
too (a host that went away), not only the next one.
"""

from __future__ import annotations

import enum
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs

from tests.conftest import LAB_SCRIPT, require_lab

# Lab component -> its section of `scripts/lab env` (the pidfile is there)
SECTIONS = {"registry": "registry", "upstream-registry": "upstream_registry", "sshd": "ssh",
            "main-docker": "main", "d601-docker": "d601", "k3s-containerd": "k3s", "kubelab": "kube"}


class Fault(enum.Enum):
    STOP = "stop"
    KILL = "kill"


def children(pid: int) -> list[int]:
    found = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True, check=False).stdout
    return [int(p) for p in found.split()]


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _signal(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


@attrs.define
class Injection:
    component: str
    fault: Fault
    pid: int
    hit: list[int] = attrs.field(factory=list)  # what `fire` signalled, then what those had started

    @classmethod
    def prepare(cls, component: str, fault: Fault) -> Injection:
        require_lab(component)
        layout = json.loads(subprocess.run([str(LAB_SCRIPT), "env"], capture_output=True, text=True,
                                           check=True).stdout)
        pid = int(Path(layout[SECTIONS[component]]["pidfile"]).read_text().split()[0])
        return cls(component, fault, pid)

    @property
    def fired(self) -> bool:
        return bool(self.hit)

    def fire(self) -> None:
        targets = [self.pid, *children(self.pid)] if self.component == "sshd" else [self.pid]
        _signal(targets, signal.SIGSTOP if self.fault is Fault.STOP else signal.SIGKILL)
        self.hit = targets + [c for p in targets for c in children(p) if c not in targets]

    def undo(self) -> None:
        """Resume a stopped component, or start a killed one again; waits until the lab says it is up.

        A killed dockerd leaves its managed containerd to exit on its own: a new dockerd cannot
        start one while the old holds the socket, so the orphans are waited for (and ended) first."""
        if not self.fired:
            return
        if self.fault is Fault.STOP:
            _signal(self.hit, signal.SIGCONT)
        else:
            deadline = time.monotonic() + 15
            while any(alive(p) for p in self.hit) and time.monotonic() < deadline:
                time.sleep(0.2)
            _signal([p for p in self.hit if alive(p)], signal.SIGKILL)
            for _ in range(3):
                up = subprocess.run([str(LAB_SCRIPT), "up"], capture_output=True, text=True, timeout=300,
                                    check=False)
                if up.returncode == 0:
                    break
                time.sleep(2)
            assert up.returncode == 0, f"scripts/lab up could not restart {self.component}:\n{up.stderr[-3000:]}"
        self.hit = []
        require_lab(self.component)


@contextmanager
def faulted(component: str, fault: Fault) -> Iterator[Injection]:
    injection = Injection.prepare(component, fault)
    injection.fire()
    try:
        yield injection
    finally:
        injection.undo()
