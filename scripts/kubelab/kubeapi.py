"""The lab's Kubernetes API: kmock's KubernetesEmulator plus the apiserver behaviour clients rely on.

kmock stores objects as plain JSON and serves discovery only for resources it has seen. What this
adds (each found missing while driving it with the official client and kubectl):

- discovery for the built-in kinds below from the start (lists work before the first create;
  `/version/`, `/apis/` with the client's trailing slash resolve; kubectl finds `deploy`, `ns`,
  `all`), and just enough OpenAPI v3 for `kubectl apply`;
- `/api/v1/namespaces[/NAME]` (kmock's path parser crashes on it), namespaces that must exist
  before objects are created in them, and cascading namespace deletion;
- server-filled metadata: uid, creationTimestamp, resourceVersion, generation (bumped when
  `spec` changes), `generateName`; defaults for Deployments, Services, Secrets' `stringData`;
- PUT (`replace_*`), which kmock does not route at all, with resourceVersion conflicts (409);
- PATCH by content type: JSON patch, JSON merge patch, strategic merge (see patching.py), and
  server-side apply as create-or-merge;
- the `status` subresource: writes to it change only `.status`; writes to the object keep it;
- `?dryRun=All`; `labelSelector`, `fieldSelector` on lists and watches; watches as JSON that end
  after `timeoutSeconds`; `NotFound`/`AlreadyExists`/`Conflict` Status bodies as clients expect.

Not served: protobuf request bodies (kubectl's typed generators such as `kubectl create
namespace X` send them; `kubectl apply/create -f` send JSON), Table output (kubectl shows only
NAME and AGE), the `scale` subresource as a Scale object, resourceVersion-based watch resumption.

Every write replaces the stored object with a one-version history: kmock keeps every version and
every request for test assertions, which a long-running server cannot afford.
"""

import asyncio
import base64
import copy
import datetime
import ipaddress
import itertools
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import aiohttp.web
import attrs
import kmock
import patching
import yaml  # a kubernetes-client dependency
from kmock._internal import parsing  # for the /api/v1/namespaces fix below

VERBS = ["create", "delete", "get", "list", "patch", "update", "watch"]

# (group/version, plural, kind, namespaced, subresources, short names); the workloads are in "all".
RESOURCES = [
    ("v1", "namespaces", "Namespace", False, ["status"], ["ns"]),
    ("v1", "pods", "Pod", True, ["status", "log"], ["po"]),
    ("v1", "services", "Service", True, ["status", "proxy"], ["svc"]),
    ("v1", "endpoints", "Endpoints", True, [], ["ep"]),
    ("v1", "configmaps", "ConfigMap", True, [], ["cm"]),
    ("v1", "secrets", "Secret", True, [], []),
    ("v1", "serviceaccounts", "ServiceAccount", True, [], ["sa"]),
    ("v1", "persistentvolumeclaims", "PersistentVolumeClaim", True, ["status"], ["pvc"]),
    ("v1", "events", "Event", True, [], ["ev"]),
    ("apps/v1", "deployments", "Deployment", True, ["status", "scale"], ["deploy"]),
    ("apps/v1", "replicasets", "ReplicaSet", True, ["status", "scale"], ["rs"]),
    ("apps/v1", "statefulsets", "StatefulSet", True, ["status", "scale"], ["sts"]),
    ("apps/v1", "daemonsets", "DaemonSet", True, ["status"], ["ds"]),
    ("batch/v1", "jobs", "Job", True, ["status"], []),
]
ALL = {"pods", "services", "deployments", "replicasets", "statefulsets", "daemonsets", "jobs"}
INFO = {kmock.resource(f"{gv}/{plural}"): (gv, kind, namespaced) for gv, plural, kind, namespaced, *_ in RESOURCES}
NAMESPACES = kmock.resource("v1/namespaces")
# DELETE answers with the deleted object for these (the client's models expect it), else a Status.
RETURN_DELETED = {kmock.resource(f"v1/{p}") for p in ("pods", "services", "serviceaccounts", "persistentvolumeclaims")}
# The controller's own writes (pods, endpoints, events, statuses) must not wake it up again.
QUIET = {kmock.resource("v1/pods"), kmock.resource("v1/endpoints"), kmock.resource("v1/events")}

_NAMESPACE_PATH = re.compile(r"api/v1/namespaces(?:/(?P<name>[^/]+)(?:/(?P<sub>status|finalize))?)?")
_kmock_parse_path = parsing.parse_path


def _parse_path(path: str) -> parsing.ParsedPath:
    # kmock reads "/api/v1/namespaces/X" as "namespace X, no resource" and crashes on
    # "/api/v1/namespaces": the Namespace objects themselves are addressed here.
    if m := _NAMESPACE_PATH.fullmatch(path.strip("/")):
        return parsing.ParsedPath("", "v1", "namespaces", None, m["name"], m["sub"])
    return _kmock_parse_path(path)


parsing.parse_path = _parse_path  # kmock's Request._parse looks it up at call time


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def api_error(status: int, reason: str, message: str, **details: Any) -> kmock.KubernetesError:
    # kmock puts a server traceback into empty details.
    details = details or {"causes": [{"reason": reason, "message": message}]}
    return kmock.KubernetesError(status=status, reason=reason, message=message, details=details)


@attrs.define(kw_only=True)
class LabApiServer(kmock.KubernetesEmulator):
    on_change: Callable[[], None] = attrs.field(default=lambda: None)  # called after user writes
    _rv: int = attrs.field(default=0, init=False)  # the last resourceVersion handed out
    _ips: itertools.count = attrs.field(factory=lambda: itertools.count(10), init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        for gv, plural, *_ in RESOURCES:  # known from the start: lists work before any create
            self.resources[f"{gv}/{plural}"] = kmock.ResourceInfo()
        # kmock streams watches as application/octet-stream, which kubectl refuses.
        self[kmock.action.WATCH] << kmock.headers({"Content-Type": "application/json"}) << self._serve_watch
        self["get /openapi/v3"] << self._serve_openapi
        self["get", re.compile(r"/openapi/v3/(?P<gv>.+)")] << self._serve_openapi
        for name in ("default", "kube-system", "kube-public"):
            namespace = self._defaults(NAMESPACES, {"metadata": {"name": name}}, old=None)
            namespace["metadata"]["resourceVersion"] = self._next_rv()
            self.put(NAMESPACES, None, namespace)

    # --- plumbing -----------------------------------------------------------------------------

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        path = raw_request.path
        if len(path) > 1 and path.endswith("/") and "/proxy" not in path:  # the client asks "/apis/"
            raw_request = raw_request.clone(rel_url=raw_request.rel_url.with_path(path.rstrip("/")))
        try:
            return await super().__call__(raw_request)
        finally:  # kmock keeps every request and error for assertions: keep a short tail only
            del self._requests[:-50]
            for errors in self._errors:
                errors.clear()

    def get(self, resource: kmock.resource, namespace: str | None, name: str) -> dict[str, Any] | None:
        """The stored object, or None. Call from the server's event loop only."""
        key = (resource, namespace, name)
        if key not in self._objects or self._objects[key].deleted:
            return None
        return self._objects[key].raw

    def items(self, resource: kmock.resource, namespace: str | None = None) -> list[dict[str, Any]]:
        return [
            obj.raw
            for (res, ns, _), obj in self._objects.items()
            if res == resource and (namespace is None or ns == namespace) and not obj.deleted
        ]

    def put(self, resource: kmock.resource, namespace: str | None, obj: dict[str, Any]) -> None:
        self._objects[resource, namespace, obj["metadata"]["name"]] = copy.deepcopy(obj)

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def not_found(self, resource: kmock.resource, name: str) -> kmock.KubernetesError:
        qualified = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
        return api_error(404, "NotFound", f'{qualified} "{name}" not found',
                         name=name, group=resource.group, kind=resource.plural)

    async def _event(self, kind: str, resource: kmock.resource, obj: dict[str, Any]) -> None:
        await self._buses[resource].put({"type": kind, "object": obj})

    # --- routing ------------------------------------------------------------------------------

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        res = request.resource
        if res is None or res.plural is None or request.subresource not in (None, "status"):
            return await super()._handle(request)  # discovery, reactions (proxy, log), fallbacks
        method = request.method.value
        if method == "POST" and request.name is None:
            return await self._write(request, self._create)
        if method in ("PUT", "PATCH") and request.name is not None:
            return await self._write(request, self._update)
        if method == "DELETE" and request.name is not None:
            return await self._write(request, self._delete)
        return await super()._handle(request)  # get, list, watch

    async def _write(self, request: kmock.Request, op: Callable[..., Any]) -> aiohttp.web.StreamResponse:
        if "protobuf" in _content_type(request):
            raise api_error(415, "UnsupportedMediaType", "the lab API server speaks JSON only (`kubectl create -f`, "
                            "`kubectl apply -f` send JSON; `kubectl create namespace X` sends protobuf)")
        dry_run = request.params.get("dryRun") == "All"
        async with self._lock:
            status, body = await op(request, dry_run)
        if not dry_run and request.resource not in QUIET and request.subresource is None:
            self.on_change()
        return aiohttp.web.json_response(body, status=status)

    # --- writes (under the lock) --------------------------------------------------------------

    async def _create(self, request: kmock.Request, dry_run: bool) -> tuple[int, dict[str, Any]]:
        res, ns = request.resource, request.namespace
        obj = self._defaults(res, copy.deepcopy(_body(request)), old=None)
        meta = obj["metadata"]
        if ns is not None:
            meta["namespace"] = ns
            if self.get(NAMESPACES, None, ns) is None:
                raise self.not_found(NAMESPACES, ns)
        if self.get(res, ns, meta["name"]) is not None:
            qualified = f"{res.plural}.{res.group}" if res.group else res.plural
            raise api_error(409, "AlreadyExists", f'{qualified} "{meta["name"]}" already exists',
                            name=meta["name"], group=res.group, kind=res.plural)
        if not dry_run:
            meta["resourceVersion"] = self._next_rv()
            self.put(res, ns, obj)
            await self._event("ADDED", res, obj)
        return 201, obj

    async def _update(self, request: kmock.Request, dry_run: bool) -> tuple[int, dict[str, Any]]:
        res, ns, name = request.resource, request.namespace, request.name
        content_type = _content_type(request)
        old = self.get(res, ns, name)
        if old is None:
            if content_type == "application/apply-patch+yaml" and request.subresource is None:
                return await self._create(request, dry_run)  # server-side apply creates
            raise self.not_found(res, name)
        body = _body(request)
        if request.method.value == "PUT":
            sent_rv = (body.get("metadata") or {}).get("resourceVersion")
            if sent_rv and sent_rv != old["metadata"].get("resourceVersion"):
                raise api_error(409, "Conflict", f'Operation cannot be fulfilled on {res.plural} "{name}": '
                                "the object has been modified; please apply your changes to the latest "
                                "version and try again", name=name, group=res.group, kind=res.plural)
            new = copy.deepcopy(body)
        else:
            try:
                new = patching.apply(content_type, copy.deepcopy(old), body)
            except Exception as exc:  # a JSON patch whose path does not exist, a malformed body
                raise api_error(422, "Invalid", f"the patch could not be applied: {exc}") from exc

        # .status belongs to the status subresource, everything else to the object itself.
        if request.subresource == "status":
            new = {**old, "status": new.get("status") or {}}
        elif "status" in old:
            new["status"] = old["status"]
        # Identity stays with the server; generation follows the spec.
        new["metadata"] = {**(new.get("metadata") or {}), **{
            k: old["metadata"][k] for k in ("name", "namespace", "uid", "creationTimestamp", "generation")
            if k in old["metadata"]}}
        new = self._defaults(res, new, old=old)
        if "generation" in old["metadata"] and new.get("spec") != old.get("spec"):
            new["metadata"]["generation"] = old["metadata"]["generation"] + 1
        new["metadata"]["resourceVersion"] = old["metadata"].get("resourceVersion")
        if new == old or dry_run:  # a no-op write keeps the resourceVersion, as in Kubernetes
            return 200, new
        new["metadata"]["resourceVersion"] = self._next_rv()
        if new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            del self._objects[res, ns, name]  # the last finalizer is gone
            await self._event("DELETED", res, new)
            return 200, new
        self.put(res, ns, new)
        await self._event("MODIFIED", res, new)
        return 200, new

    async def _delete(self, request: kmock.Request, dry_run: bool) -> tuple[int, dict[str, Any]]:
        res, ns, name = request.resource, request.namespace, request.name
        obj = self.get(res, ns, name)
        if obj is None:
            raise self.not_found(res, name)
        if not dry_run:
            if obj["metadata"].get("finalizers"):  # kept until the finalizers are removed
                obj["metadata"].setdefault("deletionTimestamp", now())
                self.put(res, ns, obj)
                await self._event("MODIFIED", res, obj)
                return 200, obj
            del self._objects[res, ns, name]
            await self._event("DELETED", res, obj)
            if res == NAMESPACES:  # what the namespace controller does, at once
                for key in [k for k in self._objects.keys() if k[1] == name and not self._objects[k].deleted]:
                    gone = self._objects[key].raw
                    del self._objects[key]
                    await self._event("DELETED", key[0], gone)
        if res in RETURN_DELETED:
            return 200, obj
        return 200, {"apiVersion": "v1", "kind": "Status", "metadata": {}, "status": "Success",
                     "details": {"name": name, "group": res.group, "kind": res.plural,
                                 "uid": obj["metadata"].get("uid")}}

    def _defaults(self, res: kmock.resource, obj: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
        """What the apiserver fills in on writes: identity on create (`old` is None), kind defaults."""
        creating = old is None
        gv, kind, _ = INFO.get(res, (f"{res.group}/{res.version}".lstrip("/"), None, None))
        obj.setdefault("apiVersion", gv)
        if kind:
            obj.setdefault("kind", kind)
        meta = obj.setdefault("metadata", {})
        if creating:
            if not meta.get("name") and meta.get("generateName"):
                meta["name"] = meta["generateName"] + secrets.token_hex(3)[:5]
            if not meta.get("name"):
                raise api_error(422, "Invalid", "metadata.name: Required value: name or generateName is required")
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now())
            if res.group and "spec" in obj:  # apps, batch, custom resources: not core v1 kinds
                meta["generation"] = 1
        if kind == "Deployment":
            _validate_deployment(obj)
            spec = obj.setdefault("spec", {})
            spec.setdefault("replicas", 1)
            spec.setdefault("strategy", {"type": "RollingUpdate",
                                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
            if creating:
                obj["status"] = {}
        elif kind == "Service":
            spec = obj.setdefault("spec", {})
            spec.setdefault("type", "ClusterIP")
            for key in ("clusterIP", "clusterIPs"):  # immutable: an update that omits them keeps them
                if old and key in old.get("spec", {}):
                    spec.setdefault(key, old["spec"][key])
            if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
                spec["clusterIP"] = str(ipaddress.IPv4Address("10.43.0.0") + next(self._ips))  # k3s range
                spec["clusterIPs"] = [spec["clusterIP"]]
            for port in spec.get("ports") or []:
                port.setdefault("protocol", "TCP")
                port.setdefault("targetPort", port.get("port"))
        elif kind == "Namespace":
            obj.setdefault("status", {"phase": "Active"})
        elif kind == "Secret" and obj.get("stringData"):
            data = obj.setdefault("data", {})
            for key, value in obj.pop("stringData").items():
                data[key] = base64.b64encode(value.encode()).decode()
        return obj

    # --- discovery: kmock derives it from the objects it has seen (and calls the core group
    # "/v1"); kubectl resolves `ns`, `deploy`, `all` through it, so it comes from the table -----

    async def _serve_api(self, request: kmock.Request) -> dict[str, Any]:
        return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{request.url.host}:{request.url.port}"}]}

    async def _serve_apis(self, request: kmock.Request) -> dict[str, Any]:
        groups = sorted({gv.split("/")[0] for gv, *_ in RESOURCES if "/" in gv})
        return {"apiVersion": "v1", "kind": "APIGroupList", "groups": [_group(g) for g in groups]}

    async def _serve_group(self, request: kmock.Request) -> dict[str, Any]:
        if not any(gv.startswith(f"{request.resource.group}/") for gv, *_ in RESOURCES):
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        return {"apiVersion": "v1", "kind": "APIGroup", **_group(request.resource.group)}

    async def _serve_version(self, request: kmock.Request) -> dict[str, Any]:
        res = request.resource
        gv = f"{res.group}/{res.version}" if res.group else res.version
        resources = []
        for _, plural, kind, namespaced, subresources, short_names in [r for r in RESOURCES if r[0] == gv]:
            resources.append({"name": plural, "singularName": kind.lower(), "namespaced": namespaced, "kind": kind,
                              "verbs": VERBS, "shortNames": short_names,
                              "categories": ["all"] if plural in ALL else []})
            resources += [{"name": f"{plural}/{sub}", "singularName": "", "namespaced": namespaced,
                           "kind": {"scale": "Scale", "proxy": "ServiceProxyOptions"}.get(sub, kind),
                           "verbs": {"log": ["get"], "proxy": ["create", "delete", "get", "patch", "update"]}.get(
                               sub, ["get", "patch", "update"])} for sub in subresources]
        if not resources:
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        return {"apiVersion": "v1", "kind": "APIResourceList", "groupVersion": gv, "resources": resources}

    async def _serve_openapi(self, request: kmock.Request) -> dict[str, Any]:
        """Just enough OpenAPI v3 for `kubectl apply`: PATCH takes `?fieldValidation`, so kubectl
        leaves validation to the server (which here accepts any field) instead of failing."""
        paths = {(f"apis/{gv}" if "/" in gv else f"api/{gv}"): gv for gv, *_ in RESOURCES}
        wanted = request.url.path.removeprefix("/openapi/v3").strip("/")
        if not wanted:
            return {"paths": {path: {"serverRelativeURL": f"/openapi/v3/{path}"} for path in paths}}
        if wanted not in paths:
            raise api_error(404, "NotFound", "the server could not find the requested resource")
        doc: dict[str, Any] = {}
        for gv, plural, kind, namespaced, *_ in [r for r in RESOURCES if r[0] == paths[wanted]]:
            group, _, version = gv.rpartition("/")
            scope = "/namespaces/{namespace}" if namespaced else ""
            doc[f"/{wanted}{scope}/{plural}/{{name}}"] = {"patch": {
                "x-kubernetes-group-version-kind": {"group": group, "version": version, "kind": kind},
                "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}}],
                "responses": {"200": {"description": "OK"}},
            }}
        return {"openapi": "3.0.0", "info": {"title": "udeploy-lab", "version": "v1"}, "paths": doc}

    # --- reads --------------------------------------------------------------------------------

    async def _serve_fetch(self, request: kmock.Request) -> dict[str, Any]:
        obj = self.get(request.resource, request.namespace, request.name)
        if obj is None:
            raise self.not_found(request.resource, request.name)
        return obj

    async def _serve_list(self, request: kmock.Request) -> dict[str, Any]:
        if request.resource not in self._get_resources():
            raise kmock.KubernetesResourceNotFoundError()
        gv, kind, _ = INFO.get(request.resource, ("", "", None))
        selected = _selection(request.params)
        items = [obj for obj in self.items(request.resource, request.namespace) if selected(obj)]
        return {"apiVersion": gv, "kind": f"{kind}List", "items": items,
                "metadata": {"resourceVersion": str(self._rv)}}

    async def _serve_watch(self, request: kmock.Request) -> AsyncIterator[Any]:
        """kmock's watch, plus selectors and `timeoutSeconds` (after which clients re-watch)."""
        selected = _selection(request.params)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(request.params.get("timeoutSeconds") or 1800)
        events = aiter(super()._serve_watch(request))
        while (remaining := deadline - loop.time()) > 0:
            try:
                event = await asyncio.wait_for(anext(events), remaining)
            except (TimeoutError, StopAsyncIteration):
                return
            if not isinstance(event, dict) or selected(event["object"]):
                yield event


def _group(name: str) -> dict[str, Any]:
    versions = [{"groupVersion": gv, "version": gv.split("/")[1]}
                for gv in dict.fromkeys(gv for gv, *_ in RESOURCES if gv.startswith(f"{name}/"))]
    return {"name": name, "versions": versions, "preferredVersion": versions[0]}


def _validate_deployment(obj: dict[str, Any]) -> None:
    """The checks of the real apiserver that the controller depends on."""
    spec = obj.get("spec") or {}
    selector = (spec.get("selector") or {}).get("matchLabels") or {}
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
    problems = [
        *(["spec.selector: Required value"] if not spec.get("selector") else []),
        *(["spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`"]
          if any(labels.get(k) != v for k, v in selector.items()) else []),
        *(["spec.template.spec.containers: Required value"] if not containers else []),
        *[f"spec.template.spec.containers[{i}].{key}: Required value"
          for i, c in enumerate(containers) for key in ("name", "image") if not c.get(key)],
    ]
    if problems:
        name = obj.get("metadata", {}).get("name")
        raise api_error(422, "Invalid", f'Deployment.apps "{name}" is invalid: {"; ".join(problems)}',
                        name=name, group="apps", kind="Deployment")


def _content_type(request: kmock.Request) -> str:
    value = next((v for k, v in request.headers.items() if k.lower() == "content-type"), "")
    return value.split(";")[0].strip()


def _body(request: kmock.Request) -> Any:
    if request.data is not None:
        return request.data
    return yaml.safe_load(request.text) if request.text else {}  # apply-patch+yaml may be YAML


def _selection(params: Mapping[str, str]) -> Callable[[dict[str, Any]], bool]:
    """The labelSelector and fieldSelector of a list or watch, as a predicate on objects."""
    labels = _selector(params.get("labelSelector", ""))
    fields = _selector(params.get("fieldSelector", ""))
    return lambda obj: bool(labels(((obj.get("metadata") or {}).get("labels") or {}).get)
                            and fields(lambda path: _field(obj, path)))


def _field(obj: dict[str, Any], path: str) -> str | None:
    """A dotted field path (`metadata.name`, `status.phase`) as fieldSelectors see it."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return None if value is None else str(value)


_REQUIREMENT = re.compile(r"\s*(!?)([\w./-]+)\s*(?:(==|=|!=)\s*([\w./-]*)|\s+(in|notin)\s*\(([^)]*)\))?\s*")


def _selector(text: str) -> Callable[[Callable[[str], str | None]], bool]:
    """Compile a label/field selector (`a=b,c!=d,e in (f,g),h,!i`) to a predicate on a lookup."""
    checks: list[Callable[[Any], bool]] = []
    for req in re.split(r",(?![^(]*\))", text):
        if not req.strip():
            continue
        m = _REQUIREMENT.fullmatch(req)
        if m is None:
            raise api_error(400, "BadRequest", f"unable to parse requirement: {req!r}")
        neg, key, op, value, set_op, values = m.groups()
        if op in ("=", "=="):
            checks.append(lambda get, k=key, v=value: get(k) == v)
        elif op == "!=":
            checks.append(lambda get, k=key, v=value: get(k) != v)
        elif set_op:
            options = {v.strip() for v in values.split(",")}
            checks.append(lambda get, k=key, o=options, out=set_op == "notin": (get(k) in o) != out)
        else:
            checks.append(lambda get, k=key, n=bool(neg): (get(k) is not None) != n)
    return lambda get: all(check(get) for check in checks)
