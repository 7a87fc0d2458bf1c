"""Opening an SSH connection with bounded waits, and saying why it failed.

paramiko's own `connect(timeout=...)` uses one number for the TCP connect and for the whole
negotiation; when that number runs out before the banner timeout, it returns as if connected and
the next call fails with the misleading "No existing session". Here the TCP connect has its own
timeout, the negotiation (banner, key exchange, authentication) waits at most `timeout.read`, and
every failure is one sentence that names the cause and the timeout that expired: "no SSH banner
within 10 s", "connection refused".
"""

from __future__ import annotations

import socket
from typing import Any

import paramiko

from udeploy.engine.load.timeouts import Timeout

# The negotiation's own deadline is a little later than the banner's and authentication's, so that
# their precise error arrives first.
_NEGOTIATION_SLACK = 2.0


class SshConnectFailed(Exception):
    """The connection could not be opened; `str()` is the cause, for a `ProviderUnreachable`."""


def open_socket(host: str, port: int, timeout: Timeout) -> socket.socket:
    """A TCP connection to the SSH server, within `timeout.connect` seconds."""
    try:
        return socket.create_connection((host, port), timeout=timeout.connect)
    except TimeoutError:
        raise SshConnectFailed(f"no TCP connection to {host}:{port} within {timeout.connect:g} s") from None
    except ConnectionRefusedError:
        raise SshConnectFailed(f"connection to {host}:{port} refused (is sshd running?)") from None
    except OSError as exc:
        raise SshConnectFailed(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from None


def connect_kwargs(sock: socket.socket, timeout: Timeout) -> dict[str, Any]:
    """`SSHClient.connect` keyword arguments over an open socket, every wait bounded by `timeout.read`."""
    return {"sock": sock, "timeout": timeout.read + _NEGOTIATION_SLACK, "banner_timeout": timeout.read,
            "auth_timeout": timeout.read, "channel_timeout": timeout.read}


def failure(exc: BaseException, timeout: Timeout) -> str:
    """The cause of a failed SSH negotiation, in words, naming the timeout that expired."""
    text = str(exc)
    if isinstance(exc, SshConnectFailed):
        return text
    if isinstance(exc, paramiko.AuthenticationException):
        return f"SSH authentication failed: {text}"
    if isinstance(exc, paramiko.BadHostKeyException | paramiko.ChannelException):
        return text
    if "Error reading SSH protocol banner" in text:
        return f"no SSH banner within {timeout.read:g} s (the server accepted the connection and said nothing)"
    if "No existing session" in text or "Negotiation failed" in text:
        return f"the SSH handshake did not complete within {timeout.read:g} s"
    if isinstance(exc, EOFError):
        return "the server closed the connection during the SSH handshake"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout.read:g} s"
    return text or type(exc).__name__


def connect_client(client: paramiko.SSHClient, host: str, port: int, timeout: Timeout, **params: Any) -> None:
    """`client.connect(...)` to host:port with bounded waits; raises `SshConnectFailed` with the cause."""
    sock = open_socket(host, port, timeout)
    try:
        client.connect(hostname=host, port=port, **params, **connect_kwargs(sock, timeout))
    except (OSError, EOFError, paramiko.SSHException) as exc:
        client.close()
        sock.close()
        raise SshConnectFailed(failure(exc, timeout)) from exc
