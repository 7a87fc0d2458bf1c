"""The plan file: the only module that knows the plan's wire format (STYLE 2, 3).

One cattrs converter (built by `make_converter()`, no module-level mutable state) turns the
frozen plan into camelCase JSON and back. The file carries a format version, the udeploy version
and a SHA-256 digest over its canonical content; `read_plan` refuses a file whose digest does not
match (tampered) or whose format it does not know, before trusting anything in it.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import re
from pathlib import Path
from typing import Any

import cattrs
from cattrs.gen import make_dict_structure_fn, make_dict_unstructure_fn, override

from udeploy.engine.errors import Diagnostic, ExitCode, InputTooLarge, ManifestInvalid, UdeployError
from udeploy.engine.load.input_files import MAX_PLAN_BYTES, read_input, shown
from udeploy.engine.load.jsonschema_check import check, parse_json
from udeploy.engine.plan.model import FORMAT_VERSION, Action, Blocked, GuardrailResult, Node, Plan, ServiceChange

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


def make_converter() -> cattrs.Converter:
    conv = cattrs.Converter()
    for cls in (Node, GuardrailResult, Diagnostic):
        names: dict[str, Any] = {a.name: override(rename=_camel(a.name)) for a in cls.__attrs_attrs__}
        conv.register_unstructure_hook(cls, make_dict_unstructure_fn(cls, conv, **names))
        conv.register_structure_hook(cls, make_dict_structure_fn(cls, conv, **names))

    conv.register_unstructure_hook(Blocked, str)
    conv.register_structure_hook(Blocked, lambda text, _: Blocked.parse(text))

    def unstructure_service(s: ServiceChange) -> dict[str, Any]:
        # The O3 item fields sit beside id/action/reason, as the spec shows them; `blockedReason` among
        # them is the typed `blocked`, written as its text ("runtime-verification-blocked", "guardrail:E2").
        item = {k: v for k, v in s.item.items() if k not in SERVICE_KEYS}
        blocked = {"blockedReason": conv.unstructure(s.blocked)} if s.blocked is not None else {}
        return {"id": s.id, "action": s.action.value, "reason": s.reason, "requestedCommit": s.requested_commit,
                "resolvedCommit": s.resolved_commit, **item, **blocked, "live": s.live, "drift": s.drift}

    def structure_service(doc: dict[str, Any], _: type) -> ServiceChange:
        return ServiceChange(id=doc["id"], action=Action(doc["action"]), reason=doc["reason"],
                             requested_commit=doc["requestedCommit"], resolved_commit=doc["resolvedCommit"],
                             item={k: v for k, v in doc.items() if k not in SERVICE_KEYS},
                             live=doc.get("live"), drift=doc.get("drift"),
                             blocked=conv.structure(doc["blockedReason"], Blocked) if "blockedReason" in doc else None)

    conv.register_unstructure_hook(ServiceChange, unstructure_service)
    conv.register_structure_hook(ServiceChange, structure_service)
    plan_names: dict[str, Any] = {a.name: override(rename=_camel(a.name)) for a in Plan.__attrs_attrs__}
    plan_names |= {"nodes": override(omit=True), "edges": override(omit=True)}  # they go under "graph"
    plan_out = make_dict_unstructure_fn(Plan, conv, **plan_names)

    def unstructure_plan(plan: Plan) -> dict[str, Any]:
        doc = plan_out(plan)
        doc["graph"] = {"nodes": [conv.unstructure(n) for n in plan.nodes], "edges": [list(e) for e in plan.edges]}
        return doc

    def structure_plan(doc: dict[str, Any], _: type) -> Plan:
        fields = {a.name: doc[_camel(a.name)] for a in Plan.__attrs_attrs__
                  if a.name not in ("nodes", "edges") and _camel(a.name) in doc}
        return Plan(
            **{**fields,
               "selection": tuple(fields.get("selection", ())),
               "services": tuple(conv.structure(s, ServiceChange) for s in doc["services"]),
               "guardrails": tuple(conv.structure(g, GuardrailResult) for g in doc["guardrails"]),
               "diagnostics": tuple(conv.structure(g, Diagnostic) for g in doc.get("diagnostics", ()))},
            nodes=tuple(conv.structure(n, Node) for n in doc["graph"]["nodes"]),
            edges=tuple((a, b) for a, b in doc["graph"]["edges"]))

    conv.register_unstructure_hook(Plan, unstructure_plan)
    conv.register_structure_hook(Plan, structure_plan)
    return conv


def canonical(doc: dict[str, Any]) -> bytes:
    body = {k: v for k, v in doc.items() if k != "digest"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def to_document(plan: Plan) -> dict[str, Any]:
    """The plan as the JSON document stdout and `-out` carry, digest included, schema-checked."""
    doc: dict[str, Any] = make_converter().unstructure(plan)
    doc["digest"] = "sha256:" + hashlib.sha256(canonical(doc)).hexdigest()
    check(doc, "plan", "plan")
    return doc


def write_plan(plan: Plan, path: Path) -> dict[str, Any]:
    doc = to_document(plan)
    tmp = path.with_name(path.name + ".tmp")
    try:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
        tmp.replace(path)  # never leave a half-written plan behind
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise UdeployError(f"cannot write the plan to {shown(path)}: {exc.strerror}", path=shown(path)) from None
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
        raise PlanInvalid(f"{shown(path)} does not hold a plan udeploy can read: {type(exc).__name__}: {exc}",
                             path=shown(path)) from None
    return plan


SHA_RE = re.compile(r"^sha256:[0-9a-f]{64}$")
