"""The plan file: the only module that knows the plan's wire format (STYLE 2, 3).

One cattrs converter (built by `make_converter()`, no module-level mutable state) turns the
frozen plan into camelCase JSON and back. The file carries a format version, the udeploy version
and a SHA-256 digest over its canonical content; `read_plan` refuses a file whose digest does not
match (tampered) or whose format it does not know, before trusting anything in it.

The plan schema is checked where a plan is trusted, in `read_plan`. Writing does not check it
again: the document comes from the typed plan through this converter (tests check every plan
they make against the schema), and at fleet scale the check cost more than planning itself.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, get_args, get_origin

import attrs
import cattrs
from cattrs.cols import homogenous_tuple_structure_factory
from cattrs.errors import ClassValidationError, IterableValidationError
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override
from cattrs.v import format_exception

from udeploy.engine.errors import Diagnostic, ExitCode, InputTooLarge, ManifestInvalid, UdeployError
from udeploy.engine.load.input_files import MAX_PLAN_BYTES, read_input, shown
from udeploy.engine.load.jsonschema_check import check, parse_json
from udeploy.engine.plan.indented_json import dumps_indented
from udeploy.engine.plan.model import FORMAT_VERSION, Blocked, GuardrailResult, Node, Plan, ServiceChange
from udeploy.engine.plan.plan_item import (
    ArtifactConsumer,
    BuildRecord,
    ComposeRecord,
    K3sRecord,
    LiveApplyRecord,
    PlanItem,
    RegistryRecord,
    SourceRecord,
    TargetRecord,
    UpstreamRecord,
    Validation,
)
from udeploy.engine.plan.records import (
    EnvironmentRecord,
    EnvManifest,
    FileManifest,
    LiveHealth,
    LiveSummary,
    ManifestRecord,
    PlanRequest,
)

SERVICE_KEYS = ("id", "action", "reason", "requestedCommit", "resolvedCommit", "live", "drift", "blockedReason")


class PlanRefused(UdeployError):
    """The plan file cannot be trusted: tampered, stale or of an unknown format."""

    code = "plan-refused"
    exit_code = ExitCode.STALE_PLAN


class PlanTampered(PlanRefused):
    code = "plan-tampered"


class PlanStale(PlanRefused):
    code = "plan-stale"


class PlanFormatUnknown(PlanRefused):
    code = "plan-format-unknown"


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


# The typed records of a plan; an attribute of theirs whose default is None is an optional key:
# left out of the file when None, so the file reads as the spec's items do.
RECORDS: tuple[type, ...] = (
    PlanRequest, EnvManifest, FileManifest, EnvironmentRecord, LiveHealth, LiveSummary, RegistryRecord,
    SourceRecord, BuildRecord, UpstreamRecord, ArtifactConsumer, ComposeRecord, K3sRecord, TargetRecord,
    Validation, LiveApplyRecord, PlanItem)
MANIFESTS: Mapping[str, type[EnvManifest] | type[FileManifest]] = {"env": EnvManifest, "file": FileManifest}


def _exactly(value: Any, cls: type) -> Any:
    """JSON scalars as they are: cattrs would turn 5 into "5" and "no" into True."""
    if type(value) is not cls:
        raise TypeError(f"expected {cls.__name__}, not {type(value).__name__}")
    return value


def _renamed(cls: type, *, omit_absent: bool = False, **extra: Any) -> dict[str, Any]:
    names: dict[str, Any] = {a.name: override(rename=_camel(a.name), omit_if_default=omit_absent and a.default is None)
                             for a in attrs.fields(cls)}
    return names | extra


def _in_attribute_order(fields: Callable[[Any], dict[str, Any]], keys: list[str]) -> Callable[[Any], dict[str, Any]]:
    """cattrs writes the keys it may omit after all the others; the file keeps the attributes' order."""
    def unstructure(value: Any) -> dict[str, Any]:
        doc = fields(value)
        return {k: doc[k] for k in keys if k in doc}
    return unstructure


def _is_array(cls: Any) -> bool:
    args = get_args(cls)
    return get_origin(cls) is tuple and len(args) == 2 and args[1] is Ellipsis


def _arrays_only(conv: cattrs.Converter) -> None:
    """A `tuple[X, ...]` comes from a JSON array only: cattrs would take "all" as ("a", "l", "l")."""
    def factory(cls: Any) -> Callable[[Any, Any], Any]:
        items = homogenous_tuple_structure_factory(cls, conv)

        def structure(value: Any, _: Any) -> Any:
            if not isinstance(value, list | tuple):
                raise TypeError(f"expected an array, not {type(value).__name__}")
            return items(value, cls)
        return structure

    conv.register_structure_hook_factory(_is_array, factory)


def make_converter() -> cattrs.Converter:
    conv = cattrs.Converter()
    for scalar in (str, int, bool):
        conv.register_structure_hook(scalar, _exactly)
    _arrays_only(conv)
    for cls in (Node, GuardrailResult, Diagnostic):
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv, **_renamed(cls)))
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, **_renamed(cls)))
    for record in RECORDS:
        names = _renamed(record, omit_absent=True)
        conv.register_unstructure_hook(record, _in_attribute_order(make_dict_unstructure_fn(record, conv, **names),
                                                                   [_camel(a.name) for a in attrs.fields(record)]))
        conv.register_structure_hook(record, make_dict_structure_fn(record, conv, **names))
    _manifest_union(conv)

    conv.register_unstructure_hook(Blocked, str)
    conv.register_structure_hook(Blocked, lambda text, _: Blocked.parse(_exactly(text, str)))
    service_names = _renamed(ServiceChange, blocked=override(rename="blockedReason"))
    service_in = make_dict_structure_fn(ServiceChange, conv, **service_names)

    def unstructure_service(s: ServiceChange) -> dict[str, Any]:
        # The O3 item fields sit beside id/action/reason, as the spec shows them; `blockedReason` among
        # them is the typed `blocked`, written as its text ("runtime-verification-blocked", "guardrail:E2").
        item = conv.unstructure(s.item, PlanItem)
        blocked = {"blockedReason": conv.unstructure(s.blocked)} if s.blocked is not None else {}
        return {"id": s.id, "action": s.action.value, "reason": s.reason, "requestedCommit": s.requested_commit,
                "resolvedCommit": s.resolved_commit, **item, **blocked,
                "live": conv.unstructure(s.live, LiveSummary | None), "drift": s.drift}

    def structure_service(doc: Mapping[str, Any], _: type) -> ServiceChange:
        item = {k: v for k, v in doc.items() if k not in SERVICE_KEYS}
        return service_in({**{k: v for k, v in doc.items() if k in SERVICE_KEYS}, "item": item}, ServiceChange)

    conv.register_unstructure_hook(ServiceChange, unstructure_service)
    conv.register_structure_hook(ServiceChange, structure_service)
    plan_names = _renamed(Plan, nodes=override(omit=True), edges=override(omit=True))  # they go under "graph"
    plan_out = make_dict_unstructure_fn(Plan, conv, **plan_names)
    plan_in = make_dict_structure_fn(Plan, conv, **_renamed(Plan))

    def unstructure_plan(plan: Plan) -> dict[str, Any]:
        doc = plan_out(plan)
        doc["graph"] = {"nodes": [conv.unstructure(n) for n in plan.nodes], "edges": [list(e) for e in plan.edges]}
        return doc

    def structure_plan(doc: Mapping[str, Any], _: type) -> Plan:
        graph = doc["graph"]
        return plan_in({**doc, "nodes": graph["nodes"], "edges": graph["edges"]}, Plan)

    conv.register_unstructure_hook(Plan, unstructure_plan)
    conv.register_structure_hook(Plan, structure_plan)
    return conv


def _manifest_union(conv: cattrs.Converter) -> None:
    """The manifest record, tagged by `mode`. Written by hand rather than with cattrs' tagged-union
    strategy because that strategy appends the tag, and the file has always begun with `mode`."""
    for mode, cls in MANIFESTS.items():
        fields = make_dict_unstructure_fn(cls, conv, **_renamed(cls, omit_absent=True))
        conv.register_unstructure_hook(cls, lambda m, fields=fields, mode=mode: {"mode": mode, **fields(m)})

    def structure_manifest(doc: Mapping[str, Any], _: type) -> ManifestRecord:
        cls = MANIFESTS.get(doc.get("mode"))  # type: ignore[arg-type]
        if cls is None:
            raise ValueError(f"manifest mode {doc.get('mode')!r} is neither env nor file")
        manifest: ManifestRecord = conv.structure(doc, cls)
        return manifest

    conv.register_structure_hook_func(lambda t: t == ManifestRecord, structure_manifest)


# Where an attribute sits in the file when not at its camelCase key: None for the item, whose keys
# sit beside the service's id.
FILE_KEY: Mapping[tuple[type, str], str | None] = {
    (Plan, "nodes"): "graph.nodes", (Plan, "edges"): "graph.edges",
    (ServiceChange, "item"): None, (ServiceChange, "blocked"): "blockedReason"}


def plan_errors(exc: BaseException, path: str = "$") -> list[str]:
    """Each value the plan's types reject, as `what @ $.path` in the file's own keys (cattrs'
    `transform_error`, with the paths of the renamed and nested keys)."""
    if isinstance(exc, IterableValidationError):
        with_notes, without = exc.group_exceptions()
        at: list[tuple[BaseException, str, Any]] = [(e, f"{path}[{n.index!r}]", n.type) for e, n in with_notes]
    elif isinstance(exc, ClassValidationError):
        by_attribute, without = exc.group_exceptions()
        at = []
        for e, n in by_attribute:
            key = FILE_KEY.get((exc.cl, n.name), _camel(n.name))
            at.append((e, path if key is None else f"{path}.{key}", n.type))
    else:
        return [f"{format_exception(exc, None)} @ {path}"]
    out: list[str] = []
    for inner, where, expected in at:
        nested = isinstance(inner, ClassValidationError | IterableValidationError)
        out += plan_errors(inner, where) if nested else [f"{format_exception(inner, expected)} @ {where}"]
    return out + [f"{format_exception(w, None)} @ {path}" for w in without]


def canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "digest"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def to_document(plan: Plan) -> dict[str, Any]:
    """The plan as the JSON document stdout and `-out` carry, digest included."""
    doc: dict[str, Any] = make_converter().unstructure(plan)
    doc["digest"] = "sha256:" + hashlib.sha256(canonical(doc)).hexdigest()
    return doc


def encode(doc: dict[str, Any]) -> str:
    """The plan file's text, which is also exactly what `udeploy plan` prints (one JSON document)."""
    return dumps_indented(doc) + "\n"  # json.dumps(doc, indent=2), faster


def save(text: str, path: Path) -> None:
    """Write an encoded plan to `path`, whole or not at all."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(text)
        tmp.replace(path)  # never leave a half-written plan behind
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UdeployError(f"cannot write the plan to {shown(path)}: {exc.strerror}", path=shown(path)) from None


def write_plan(plan: Plan, path: Path) -> dict[str, Any]:
    doc = to_document(plan)
    save(encode(doc), path)
    return doc


class PlanTooLarge(PlanRefused):
    """Over the input limits (size, nesting): no plan udeploy writes comes near them."""

    code = "input-too-large"


class PlanInvalid(PlanRefused):
    """The digest matches, but the plan schema or the plan's types reject the content: a crafted file."""

    code = "plan-invalid"


# What one plan may hold before reading it costs more than any fleet needs: a 1000-service plan has
# about 6,000 nodes; validating 100,000 takes tens of seconds (the schema check is linear but slow).
MAX_PLAN_NODES = 60_000
MAX_PLAN_SERVICES = 12_000


def _refuse_oversized(doc: Any, path: Path) -> None:
    """Count before any schema or digest work: a crafted plan must not make reading it the attack."""
    graph = doc.get("graph") if isinstance(doc, dict) else None
    counts = {"graph nodes": graph.get("nodes") if isinstance(graph, dict) else None,
              "graph edges": graph.get("edges") if isinstance(graph, dict) else None,
              "services": doc.get("services") if isinstance(doc, dict) else None}
    limits = {"graph nodes": MAX_PLAN_NODES, "graph edges": 4 * MAX_PLAN_NODES, "services": MAX_PLAN_SERVICES}
    for what, items in counts.items():
        if isinstance(items, list) and len(items) > limits[what]:
            raise PlanTooLarge(f"{shown(path)} has {len(items)} {what}; a plan holds at most {limits[what]}",
                               path=shown(path), details={"count": len(items), "limit": limits[what]})


def read_plan(path: Path) -> Plan:
    """A plan file back as a value, refused unless its digest and format check out.

    Anything that is not a plan udeploy wrote is refused with exit 4 before it is believed: bytes
    that are not UTF-8 JSON within the input limits or a digest that does not match (tampered), an
    unknown format, a document the plan schema or the plan's types reject (invalid).
    """
    try:
        data = read_input(path, label="plan", max_bytes=MAX_PLAN_BYTES)
        doc = parse_json(data, shown(path), error=PlanTampered, max_bytes=MAX_PLAN_BYTES)
    except InputTooLarge as exc:
        raise PlanTooLarge(exc.message, path=exc.path, details=exc.details) from None
    if data.startswith(codecs.BOM_UTF8):  # json.loads would skip it; udeploy never writes one
        raise PlanTampered(f"{shown(path)} starts with a byte order mark: not a plan udeploy wrote", path=shown(path))
    _refuse_oversized(doc, path)
    if not isinstance(doc, dict):
        raise PlanTampered(f"{shown(path)} is not a plan document", path=shown(path))
    digest = doc.get("digest")
    actual = "sha256:" + hashlib.sha256(canonical(doc)).hexdigest()
    if digest != actual:
        raise PlanTampered(f"{shown(path)} was modified after udeploy wrote it: digest {digest} does not match the "
                           f"content ({actual}); make a new plan", path=shown(path),
                           details={"recorded": digest, "actual": actual})
    if doc.get("formatVersion") != FORMAT_VERSION:
        raise PlanFormatUnknown(f"{shown(path)} has plan format {doc.get('formatVersion')!r}; this udeploy reads "
                                f"format {FORMAT_VERSION}", path=f"{shown(path)}#$.formatVersion")
    try:
        check(doc, "plan", shown(path))
        plan: Plan = make_converter().structure(doc, Plan)
    except ManifestInvalid as exc:
        raise PlanInvalid(exc.message, path=exc.path, details=exc.details) from None
    except (KeyError, TypeError, ValueError, cattrs.BaseValidationError) as exc:
        # The schema passed but the plan's own types did not: a crafted file, not one udeploy wrote.
        errors = plan_errors(exc)
        where = errors[0].rpartition(" @ ")[2]
        raise PlanInvalid(f"{shown(path)} does not hold a plan udeploy can read: {'; '.join(errors[:5])}",
                          path=f"{shown(path)}#{where}", details={"errors": errors[:20]}) from None
    return plan


SHA_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
