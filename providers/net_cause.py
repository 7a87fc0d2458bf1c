"""Why a network call got no answer, in words a user can act on, naming the timeout that expired,
and the one shape of error every provider gives for it (docs/reliability.md).

Client libraries wrap the real cause (the docker SDK's "Error while fetching server API version:
...", urllib3's "Max retries exceeded ... Caused by ReadTimeoutError(...)"); the chain of causes
is walked for the first one that says what happened on the wire.
"""

from __future__ import annotations

import http.client
import time
from collections.abc import Iterator

import requests
import urllib3

from udeploy.engine.load.timeouts import Timeout
from udeploy.engine.provider_api import ProviderUnreachable

CONNECT_TIMEOUTS = (requests.exceptions.ConnectTimeout, urllib3.exceptions.ConnectTimeoutError)
READ_TIMEOUTS = (requests.exceptions.ReadTimeout, urllib3.exceptions.ReadTimeoutError, TimeoutError)
CLOSED = (http.client.RemoteDisconnected, ConnectionResetError, ConnectionAbortedError, BrokenPipeError, EOFError)


def causes(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what it wraps (`__cause__`, `__context__`, urllib3's `reason`), outermost first."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError keeps it here
        if isinstance(reason, BaseException):
            yield from causes(reason)
        current = current.__cause__ or current.__context__


def network_cause(exc: BaseException, connect: float, read: float) -> str:
    """The first cause in the chain that says what happened on the wire, else the innermost error's
    text ("Name or service not known", not the wrappers' "Max retries exceeded with url: ...")."""
    chain = list(causes(exc))
    for e in chain:
        # before the timeouts: urllib3's NewConnectionError is a ConnectTimeoutError too
        if isinstance(e, ConnectionRefusedError) or (isinstance(e, urllib3.exceptions.NewConnectionError)
                                                     and "refused" in str(e)):
            return "connection refused"
        if isinstance(e, CONNECT_TIMEOUTS):
            return f"no connection within {connect:g} s (connect timeout)"
        if isinstance(e, READ_TIMEOUTS):
            return f"connected, but no answer within {read:g} s (read timeout)"
        if isinstance(e, FileNotFoundError):
            return f"no such socket ({e.filename or e})"
        if isinstance(e, CLOSED) or (isinstance(e, OSError) and "closed" in str(e).lower()):
            return "the connection closed without an answer"
    innermost = chain[-1]
    return innermost.strerror if isinstance(innermost, OSError) and innermost.strerror else str(innermost)


def unreachable(what: str, kind: str, host_id: str, endpoint: str, cause: str, began: float,
                timeout: Timeout, doing: str = "") -> ProviderUnreachable:
    """`provider-unreachable` for `what` ("the Docker engine of D601") that did not answer while
    `doing` ("list containers of p/s"): the message and `details` name the component (the timeout
    kind), host, endpoint, cause, the seconds spent and the timeout that applied."""
    elapsed = time.monotonic() - began
    return ProviderUnreachable(
        f"{doing + ': ' if doing else ''}{what} ({endpoint}) did not answer: {cause} (after {elapsed:.1f} s; "
        f"{kind} timeout: {timeout.describe()})", path=host_id,
        details=_details(kind, host_id, endpoint, cause, elapsed, timeout))


def ssh_unreachable(host_id: str, endpoint: str, cause: str, began: float, timeout: Timeout) -> ProviderUnreachable:
    """The same error for a host udeploy could not get into over SSH (no connection, no banner, a
    failed authentication): "cannot reach", since not every cause is a silence."""
    elapsed = time.monotonic() - began
    return ProviderUnreachable(
        f"cannot reach {host_id} ({endpoint}) over SSH: {cause} (after {elapsed:.1f} s; ssh timeout: "
        f"{timeout.describe()})", path=host_id, details=_details("ssh", host_id, endpoint, cause, elapsed, timeout))


def _details(kind: str, host_id: str, endpoint: str, cause: str, elapsed: float, timeout: Timeout) -> dict[str, object]:
    return {"component": kind, "host": host_id, "endpoint": endpoint, "cause": cause,
            "elapsedSeconds": round(elapsed, 1), "timeoutSeconds": {"connect": timeout.connect, "read": timeout.read}}


def docker_unreachable(host_id: str, endpoint: str, exc: BaseException, began: float,
                       timeout: Timeout, doing: str = "") -> ProviderUnreachable:
    return unreachable(f"the Docker engine of {host_id}", "docker", host_id, endpoint,
                       network_cause(exc, timeout.connect, timeout.read), began, timeout, doing)
