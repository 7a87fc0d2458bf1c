"""The apply's hold on its environment: a heartbeat that renews the lease, and the fence before each step.

The heartbeat renews every third of the lease, so two missed beats still leave time. A renewal
that finds the lease gone (`LeaseLost`) marks it lost; one that cannot reach the backend
(`StateUnavailable`) is retried at the next beat. `fence()` is the check the walk runs before
every mutating step: it asks the backend, by token, whether the lease still holds, so a holder
that was paused past its expiry (and taken over) stops instead of acting on stale authority.
"""

from __future__ import annotations

import threading

from udeploy.engine.state_api import LeaseLost, LockGrant, StateBackend, StateUnavailable


class Lease:
    def __init__(self, backend: StateBackend, grant: LockGrant, lease_seconds: float) -> None:
        self.backend = backend
        self.grant = grant
        self.lease_seconds = lease_seconds
        self.lost: LeaseLost | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lease-{grant.scope}", daemon=True)

    def __enter__(self) -> Lease:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=self.lease_seconds)

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_seconds / 3):
            try:
                self.backend.renew_lock(self.grant, self.lease_seconds)
            except LeaseLost as exc:
                self.lost = exc
                return
            except StateUnavailable:
                continue  # the fence will say so before the next step; the next beat may reach it

    def fence(self) -> None:
        """`LeaseLost` or `StateUnavailable` unless this apply still holds its lease."""
        if self.lost is not None:
            raise self.lost
        self.backend.check_lock(self.grant)
