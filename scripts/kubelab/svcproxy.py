"""kmock reactions for the API paths that reach into workloads: service proxy and pod logs.

`/api/v1/namespaces/NS/services/[SCHEME:]NAME[:PORT]/proxy/PATH` goes, like in a real apiserver,
to a ready address of the Service's Endpoints (the controller keeps them: 127.0.0.1 and the PORT
it gave the container), and returns the workload's own status and body. No ready address: 503.
"""

import functools
import re
from pathlib import Path

import aiohttp
import kmock
from kubeapi import LabApiServer, api_error

PROXY = re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/services/(?P<ref>[^/]+)/proxy(?P<path>/.*)?")
POD_LOG = re.compile(r"/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<pod>[^/]+)/log")
SERVICES, ENDPOINTS, PODS = kmock.resource("v1/services"), kmock.resource("v1/endpoints"), kmock.resource("v1/pods")
LOG_ANNOTATION = "lab.udeploy/log"  # set on Pods by the controller


def install(api: LabApiServer) -> None:
    api[PROXY] << functools.partial(proxy, api)
    api[kmock.method.GET, POD_LOG] << functools.partial(pod_log, api)


async def proxy(api: LabApiServer, request: kmock.Request) -> kmock.Response:
    m = PROXY.fullmatch(request.url.path)  # the decoded path: the client sends "svc%3A8080"
    parts = m["ref"].split(":")
    if parts[0] in ("http", "https") and len(parts) > 1:
        parts = parts[1:]
    name, port = parts[0], (parts[1] if len(parts) > 1 else "")
    service = api.get(SERVICES, m["ns"], name)
    if service is None:
        raise api.not_found(SERVICES, name)

    target = _ready_address(service, api.get(ENDPOINTS, m["ns"], name), port)
    if target is None:
        raise api_error(503, "ServiceUnavailable", f'no endpoints available for service "{m["ref"]}"')
    url = f"http://{target}{m['path'] or '/'}"
    if request.url.query_string:
        url += f"?{request.url.query_string}"
    try:
        async with aiohttp.ClientSession() as session, session.request(
            request.method.value, url, data=request.body or None, timeout=aiohttp.ClientTimeout(total=30)
        ) as response:
            body = await response.read()
    except (TimeoutError, aiohttp.ClientError) as exc:
        raise api_error(503, "ServiceUnavailable", f"error trying to reach service: {exc!r}") from exc
    content_type = response.headers.get("Content-Type") or _sniff(body)
    return kmock.Response(status=response.status, payload=body, headers={"Content-Type": content_type})


def _sniff(body: bytes) -> str:
    """What the apiserver (Go's net/http) sends when the workload names no Content-Type."""
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        return "application/octet-stream"
    return "text/html; charset=utf-8" if body.lstrip()[:1] == b"<" else "text/plain; charset=utf-8"


def _ready_address(service: dict, endpoints: dict | None, port: str) -> str | None:
    """`ip:port` of the first ready address serving the Service port named or numbered `port`."""
    ports = service.get("spec", {}).get("ports") or []
    wanted = next((p for p in ports if port in (str(p.get("port")), p.get("name"))), None)
    if port and wanted is None:
        return None
    for subset in (endpoints or {}).get("subsets") or []:
        if not subset.get("addresses"):
            continue
        ep_ports = subset.get("ports") or []
        ep_port = next((p for p in ep_ports if wanted and p.get("name") == wanted.get("name")), None)
        ep_port = ep_port or (ep_ports[0] if ep_ports else None)
        if ep_port:
            return f"{subset['addresses'][0]['ip']}:{ep_port['port']}"
    return None


async def pod_log(api: LabApiServer, request: kmock.Request) -> kmock.Response:
    m = POD_LOG.fullmatch(request.url.path)
    pod = api.get(PODS, m["ns"], m["pod"])
    if pod is None:
        raise api.not_found(PODS, m["pod"])
    path = (pod["metadata"].get("annotations") or {}).get(LOG_ANNOTATION)
    text = Path(path).read_text(errors="replace") if path and Path(path).exists() else ""
    if tail := request.params.get("tailLines"):
        text = "".join(text.splitlines(keepends=True)[-int(tail):])
    return kmock.Response(status=200, payload=text.encode(), headers={"Content-Type": "text/plain"})
