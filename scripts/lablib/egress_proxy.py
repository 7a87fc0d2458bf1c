"""The lab's node-local egress proxy: stands in for D601's provider-gateway WS egress (B3).

A small stdlib HTTP proxy: `CONNECT host:port` tunnels and absolute-form requests
(`GET http://host:port/path`, any method) are forwarded, but only to loopback destinations:
IPv4 literals in 127.0.0.0/8 and the name `localhost`. Anything else is refused with 403 and no
name is ever resolved, so nothing leaves this machine (not even a DNS query). Every request is
logged to stdout, one line each:

    egress_proxy method=GET target=http://127.0.0.1:5000/v2/ verdict=allowed status=200

`GET /healthz` (origin-form, addressed to the proxy itself) answers 200: the readiness probe.

    python3 scripts/lablib/egress_proxy.py [--listen 127.0.0.1] [--port 18789]

`--port 0` picks a free port; the first line printed is `egress_proxy listening=<host>:<port>`.
The proxy itself only listens on loopback.
"""

from __future__ import annotations

import argparse
import http.client
import ipaddress
import select
import signal
import socket
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType

LOOPBACK = ipaddress.ip_network("127.0.0.0/8")
# Headers that describe one hop, never forwarded (RFC 9110 7.6.1, plus the proxy's own).
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
              "te", "trailer", "transfer-encoding", "upgrade"}
TIMEOUT = 60.0
CHUNK = 64 * 1024
_print_lock = threading.Lock()


def log(line: str) -> None:
    with _print_lock:
        print(line, flush=True)


def loopback_address(host: str) -> str | None:
    """The IPv4 loopback address to connect to for `host`, or None when it is not one (no DNS)."""
    host = host.strip("[]").lower()
    if host == "localhost":
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None  # a name: refused without resolving it
    return str(address) if address.version == 4 and address in LOOPBACK else None


def split_host_port(authority: str, default_port: int) -> tuple[str, int] | None:
    parsed = urllib.parse.urlsplit(f"//{authority}")
    try:
        port = parsed.port or default_port
    except ValueError:
        return None
    return (parsed.hostname or "", port) if parsed.hostname else None


class ProxyHandler(BaseHTTPRequestHandler):
    server_version = "udeploy-lab-egress-proxy"
    protocol_version = "HTTP/1.0"  # one request per connection: bodies may be close-delimited
    timeout = TIMEOUT

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base class's name
        pass  # one line per request is written by `_log` instead

    def _log(self, target: str, verdict: str, status: int, note: str = "") -> None:
        log(f"egress_proxy method={self.command} target={target} verdict={verdict} status={status}"
            + (f" note={note}" if note else "") + f" client={self.client_address[0]}")

    def _refuse(self, target: str, status: int, why: str) -> None:
        self._log(target, "refused", status, why)
        body = f"egress proxy: {why}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- CONNECT host:port: a tunnel (HTTPS, git over https, docker pulls)

    def do_CONNECT(self) -> None:  # noqa: N802 - http.server's naming
        target = self.path
        found = split_host_port(target, 443)
        if found is None:
            return self._refuse(target, 400, "CONNECT needs host:port")
        address = loopback_address(found[0])
        if address is None:
            return self._refuse(target, 403, "only loopback destinations (127.0.0.0/8) are allowed")
        try:
            upstream = socket.create_connection((address, found[1]), timeout=TIMEOUT)
        except OSError as exc:
            return self._refuse(target, 502, f"cannot connect: {exc.strerror or exc}")
        self.send_response(200, "Connection established")
        self.end_headers()
        self._log(target, "allowed", 200, "tunnel")
        try:
            _relay(self.connection, upstream)
        finally:
            upstream.close()
        self.close_connection = True

    # -- absolute-form requests: forwarded with http.client

    def _forward(self) -> None:
        url = self.path
        parts = urllib.parse.urlsplit(url)
        if not parts.scheme:
            if self.command in ("GET", "HEAD") and parts.path == "/healthz":
                body = b"ok\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command == "GET":
                    self.wfile.write(body)
                return None
            return self._refuse(url, 400, "not a proxy request (absolute-form URL expected)")
        if parts.scheme != "http":
            return self._refuse(url, 400, f"{parts.scheme}:// is tunnelled with CONNECT, not forwarded")
        found = split_host_port(parts.netloc.rpartition("@")[2], 80)
        address = loopback_address(found[0]) if found else None
        if found is None or address is None:
            return self._refuse(url, 403, "only loopback destinations (127.0.0.0/8) are allowed")
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return self._refuse(url, 411, "chunked request bodies are not supported")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        headers["Connection"] = "close"
        path = urllib.parse.urlunsplit(("", "", parts.path or "/", parts.query, ""))
        upstream = http.client.HTTPConnection(address, found[1], timeout=TIMEOUT)
        try:
            upstream.request(self.command, path, body=body, headers=headers)
            response = upstream.getresponse()
        except OSError as exc:
            upstream.close()
            return self._refuse(url, 502, f"upstream failed: {exc.strerror or exc}")
        try:
            self.send_response_only(response.status, response.reason)  # the upstream's own Date/Server
            for key, value in response.getheaders():
                if key.lower() not in HOP_BY_HOP:
                    self.send_header(key, value)
            self.send_header("Connection", "close")
            self.end_headers()
            self._log(url, "allowed", response.status)
            while self.command != "HEAD":
                chunk = response.read(CHUNK)
                if not chunk:
                    break
                self.wfile.write(chunk)
        finally:
            upstream.close()
        self.close_connection = True
        return None

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = _forward  # noqa: N815


def _relay(a: socket.socket, b: socket.socket) -> None:
    """Copy bytes both ways until either side closes or both are idle for TIMEOUT."""
    sockets = [a, b]
    while True:
        readable, _, broken = select.select(sockets, [], sockets, TIMEOUT)
        if broken or not readable:
            return
        for s in readable:
            try:
                data = s.recv(CHUNK)
            except OSError:
                return
            if not data:
                return
            (b if s is a else a).sendall(data)


class ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listen", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--port", type=int, default=18789, help="port (0: a free one)")
    args = parser.parse_args(argv)
    if loopback_address(args.listen) is None:
        parser.error(f"--listen {args.listen}: the proxy only listens on loopback")
    server = ProxyServer((args.listen, args.port), ProxyHandler)

    def stop(signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    host, port = server.server_address[:2]
    log(f"egress_proxy listening={host}:{port} allow=127.0.0.0/8")
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    log("egress_proxy stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
