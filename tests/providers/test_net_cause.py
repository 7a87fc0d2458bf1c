"""Issue 12: every provider names an outage's cause the same way, whatever the client library
wrapped it in (providers/net_cause.py). Real exceptions of the real libraries, raised as they
raise them; the faults they stand for are exercised against the lab in tests/faults."""

from __future__ import annotations

import docker.errors
import requests
import urllib3

from udeploy.engine.load.timeouts import Timeout
from udeploy.providers.net_cause import docker_unreachable, network_cause


def raised(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except Exception as exc:
        return exc


def test_a_refused_connection_is_refused_not_a_connect_timeout() -> None:
    # urllib3's NewConnectionError is a ConnectTimeoutError subclass: order matters
    refused = urllib3.exceptions.NewConnectionError(None, "Failed to establish a new connection: [Errno 111] "
                                                           "Connection refused")
    wrapped = urllib3.exceptions.MaxRetryError(None, "/apis", reason=refused)  # type: ignore[arg-type]
    assert network_cause(wrapped, 3, 4) == "connection refused"


def test_the_docker_sdks_wrapped_read_timeout_names_the_read_timeout() -> None:
    timeout = raised(requests.exceptions.ReadTimeout("Read timed out. (read timeout=5.0)"),
                     TimeoutError("timed out"))
    sdk = raised(docker.errors.DockerException(f"Error while fetching server API version: {timeout}"), timeout)
    assert network_cause(sdk, 3, 5) == "connected, but no answer within 5 s (read timeout)"
    error = docker_unreachable("D601", "unix:///x.sock", sdk, 0.0, Timeout(3, 5), "list containers of p/s")
    assert error.message.startswith("list containers of p/s: the Docker engine of D601 (unix:///x.sock) did not "
                                    "answer: connected, but no answer within 5 s (read timeout)")
    assert error.path == "D601"
    assert {k: error.details[k] for k in ("component", "host", "endpoint", "timeoutSeconds")} == {
        "component": "docker", "host": "D601", "endpoint": "unix:///x.sock",
        "timeoutSeconds": {"connect": 3.0, "read": 5.0}}


def test_a_closed_connection_and_an_unknown_error() -> None:
    aborted = raised(requests.exceptions.ConnectionError("Connection aborted."), ConnectionResetError(104, "reset"))
    assert network_cause(aborted, 3, 5) == "the connection closed without an answer"
    assert network_cause(ValueError("odd"), 3, 5) == "odd"
