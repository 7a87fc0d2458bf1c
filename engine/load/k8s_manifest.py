"""Kubernetes manifests referenced by config.json, read as data (never applied from here).

A manifest comes from a pull request, so it is hostile input: the YAML reader is bounded before
anything is built from it, and it builds JSON values only (what the API server would receive).

Limits (a manifest above one is refused, never partly read):

- `MAX_YAML_BYTES`, `MAX_DOCUMENTS`: checked on the raw bytes and on the event stream.
- `MAX_DEPTH`: collection nesting, counted through aliases (libyaml's C composer recurses per
  level and crashes the process on ~100,000 nested `[`, so depth is checked on events first).
- `MAX_NODES`, `MAX_EXPANDED_CHARS`: nodes and text after alias expansion ("billion laughs", or
  one long string aliased many times), counted per anchor once (memoized), so the count is linear
  in the text. An alias to an anchor still open (a recursive alias) is refused: JSON has no cycles.
- The limits are checked on the event stream, a second parse; a file whose exact bytes passed them
  before is not walked again (remembered as the schema checks are, `jsonschema_check.remember_pass`:
  a 1000-service fleet's 333 manifests cost ~0.06 s to walk). Failures are never remembered.
- Integers are int64, as in Kubernetes: a longer one (in any base) is refused. YAML 1.1's base-60
  form (`8080:80`) stays a string, as the API server reads it (PyYAML would convert it in
  quadratic time).

Only JSON-compatible values are constructed: timestamps stay strings (as the API server sees
them), non-finite floats and `!!binary`, `!!set`, `!!omap`, `!!pairs` and any other tag are
refused, naming the document index. Object identity (`kind`, `apiVersion`) must follow the
Kubernetes grammar, because schema libraries and API clients turn it into file and URL paths.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import yaml
from yaml.constructor import ConstructorError
from yaml.events import AliasEvent, CollectionEndEvent, CollectionStartEvent, DocumentStartEvent, Event, ScalarEvent
from yaml.nodes import MappingNode, ScalarNode

from udeploy.engine.errors import InputTooLarge, ManifestInvalid
from udeploy.engine.load.jsonschema_check import passed_before, remember_pass

try:  # libyaml when PyYAML was built with it: the same safe subset, many times faster
    from yaml import CSafeLoader as _BaseLoader
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml import SafeLoader as _BaseLoader  # type: ignore[assignment]

MAX_YAML_BYTES = 2 * 1024 * 1024  # the API server stores at most ~1.5 MiB per object; a file holds a few
MAX_DOCUMENTS = 256  # a multi-document manifest holds tens of objects; each is schema-checked (~10 ms)
MAX_DEPTH = 64  # Kubernetes objects nest ~15 levels; through aliases too
MAX_EXPANDED_CHARS = 16 * 1024 * 1024  # after alias expansion: 8x the file limit
MAX_NODES = 200_000  # after alias expansion, the whole file: ~100x the largest sample manifest

# apiVersion: an optional DNS-subdomain API group, then a Kubernetes version (v1, v1beta1, v2alpha3).
_DNS_LABEL = r"[a-z0-9](?:[-a-z0-9]{0,61}[a-z0-9])?"
API_VERSION = re.compile(r"(?:([^/]{1,253})/)?v[1-9][0-9]*(?:(?:alpha|beta)[1-9][0-9]*)?")
_API_GROUP = re.compile(rf"{_DNS_LABEL}(?:\.{_DNS_LABEL})*")
KIND = re.compile(r"[A-Z][A-Za-z0-9]{0,62}")  # an UpperCamel identifier: letters and digits only


@attrs.frozen
class K8sObject:
    kind: str
    name: str
    namespace: str | None
    body: Mapping[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


def api_version_problem(value: Any) -> str | None:
    """Why `value` is not a Kubernetes apiVersion ("group/version" or "version"), or None."""
    if not isinstance(value, str):
        return f"apiVersion must be a string, not {_json_type(value)}"
    match = API_VERSION.fullmatch(value)
    if not match or (match.group(1) is not None and not _API_GROUP.fullmatch(match.group(1))):
        return f"apiVersion {value[:80]!r} is not [group/]version (e.g. v1, apps/v1, batch/v1beta1)"
    return None


def kind_problem(value: Any) -> str | None:
    """Why `value` is not a Kubernetes kind (UpperCamel letters and digits), or None."""
    if not isinstance(value, str):
        return f"kind must be a string, not {_json_type(value)}"
    if not KIND.fullmatch(value):
        return f"kind {value[:80]!r} is not a Kubernetes kind (UpperCamel letters and digits)"
    return None


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


# --- bounded, JSON-only YAML -----------------------------------------------------------------------

class _ManifestLoader(_BaseLoader):
    """The safe loader, building only values JSON (and so the API server) can hold."""

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        # YAML 1.1 makes `on:` a boolean key and `80:` an int; JSON (and the API server) has string keys.
        return {k if isinstance(k, str) else json.dumps(k): v for k, v in mapping.items()}

    def construct_timestamp_as_text(self, node: ScalarNode) -> str:
        return str(self.construct_scalar(node))  # the API server decodes YAML to JSON: dates stay text

    def construct_finite_float(self, node: ScalarNode) -> float:
        value = self.construct_yaml_float(node)
        if not math.isfinite(value):
            raise ConstructorError(None, None, f"{node.value!r} is not a JSON number", node.start_mark)
        return value

    def construct_int64(self, node: ScalarNode) -> int | str:
        text = str(self.construct_scalar(node))
        if ":" in text:  # YAML 1.1 base 60 (`8080:80`): the API server reads a string; PyYAML's is quadratic
            return text
        value = int(self.construct_yaml_int(node))
        if value.bit_length() > 63:
            raise ConstructorError(None, None, f"integer {text[:40]!r}… does not fit 64 bits", node.start_mark)
        return value

    def refuse_tag(self, node: yaml.Node) -> None:
        raise ConstructorError(None, None, f"tag {node.tag} has no JSON value (refused)", node.start_mark)


_ManifestLoader.add_constructor("tag:yaml.org,2002:timestamp", _ManifestLoader.construct_timestamp_as_text)
_ManifestLoader.add_constructor("tag:yaml.org,2002:float", _ManifestLoader.construct_finite_float)
_ManifestLoader.add_constructor("tag:yaml.org,2002:int", _ManifestLoader.construct_int64)
for _tag in ("binary", "set", "omap", "pairs"):
    _ManifestLoader.add_constructor(f"tag:yaml.org,2002:{_tag}", _ManifestLoader.refuse_tag)


@attrs.define
class _Open:
    """A collection whose end event has not come yet: its expanded size and height so far."""

    anchor: str | None
    nodes: int = 1
    height: int = 1
    chars: int = 2  # the text it expands to, roughly: brackets and every scalar's characters


@attrs.define
class _Budget:
    """Walks the event stream once, before any node is composed, and refuses what is too big."""

    source: str
    documents: int = 0
    nodes: int = 0  # expanded, the whole stream
    chars: int = 0  # expanded text, the whole stream: one long string aliased many times is caught here
    stack: list[_Open] = attrs.Factory(list)
    anchors: dict[str, tuple[int, int, int]] = attrs.Factory(dict)  # anchor -> (nodes, height, chars), memoized

    def where(self) -> str:
        return f"{self.source}[{max(self.documents - 1, 0)}]"

    def too_large(self, what: str) -> InputTooLarge:
        return InputTooLarge(f"{self.where()} {what}", path=self.where())

    def see(self, event: Event) -> None:
        if isinstance(event, DocumentStartEvent):
            self.documents += 1
            self.anchors.clear()  # anchors are scoped to their document
            if self.documents > MAX_DOCUMENTS:
                raise InputTooLarge(f"{self.source} has more than {MAX_DOCUMENTS} YAML documents", path=self.source)
        elif isinstance(event, CollectionStartEvent):
            if len(self.stack) >= MAX_DEPTH:
                raise self.too_large(f"nests deeper than {MAX_DEPTH} levels")
            self.stack.append(_Open(event.anchor))
            self._count(1, 2)
        elif isinstance(event, CollectionEndEvent):
            done = self.stack.pop()
            self._finish(done.nodes, done.height, done.chars, done.anchor)
        elif isinstance(event, ScalarEvent):
            chars = len(event.value) + 1
            self._finish(1, 0, chars, event.anchor)
            self._count(1, chars)
        elif isinstance(event, AliasEvent):
            nodes, height, chars = self._alias(event.anchor)
            self._finish(nodes, height, chars, None)
            self._count(nodes, chars)

    def _alias(self, anchor: str | None) -> tuple[int, int, int]:
        if any(o.anchor == anchor for o in self.stack):
            raise ManifestInvalid(f"{self.where()}: alias *{anchor} is inside its own anchor "
                                  "(a recursive alias has no JSON value)", path=self.where())
        if anchor not in self.anchors:
            raise ManifestInvalid(f"{self.where()}: alias *{anchor} has no anchor before it", path=self.where())
        return self.anchors[anchor]

    def _finish(self, nodes: int, height: int, chars: int, anchor: str | None) -> None:
        """A node is complete: remember its anchor, and add it to the collection holding it."""
        if anchor is not None:
            self.anchors[anchor] = (nodes, height, chars)
        if self.stack:
            if len(self.stack) + height > MAX_DEPTH:
                raise self.too_large(f"nests deeper than {MAX_DEPTH} levels (through aliases)")
            parent = self.stack[-1]
            parent.nodes += nodes
            parent.height = max(parent.height, height + 1)
            parent.chars += chars

    def _count(self, nodes: int, chars: int) -> None:
        self.nodes += nodes
        self.chars += chars
        if self.nodes > MAX_NODES:
            raise self.too_large(f"expands to more than {MAX_NODES} YAML nodes (aliases counted expanded)")
        if self.chars > MAX_EXPANDED_CHARS:
            raise self.too_large(f"expands to more than {MAX_EXPANDED_CHARS} characters (aliases counted expanded)")


# What a remembered pass was checked against: the limits and the parser.
_BUDGET_ID = (f"yaml-budget:v1:{MAX_DOCUMENTS}:{MAX_DEPTH}:{MAX_EXPANDED_CHARS}:{MAX_NODES}:"
              f"pyyaml-{yaml.__version__}:{_BaseLoader.__name__}").encode()


def _check_budget(data: bytes, source: str) -> None:
    key = hashlib.sha256(_BUDGET_ID + b"\0" + data).hexdigest()
    if passed_before(key):
        return
    budget = _Budget(source)
    for event in yaml.parse(data, Loader=_BaseLoader):
        budget.see(event)
    remember_pass(key)


def load_documents(data: bytes, source: str) -> Iterator[tuple[int, Any]]:
    """(index, JSON value) for every non-empty YAML document, within the limits above."""
    if len(data) > MAX_YAML_BYTES:
        raise InputTooLarge(f"{source} is {len(data)} bytes; manifests are limited to {MAX_YAML_BYTES}",
                            path=source)
    try:
        _check_budget(data, source)
    except yaml.YAMLError as exc:
        if "nesting depth" in str(getattr(exc, "problem", "")):  # libyaml's own depth limit (newer builds)
            raise InputTooLarge(f"{source} nests deeper than {MAX_DEPTH} levels", path=source) from exc
        raise ManifestInvalid(f"{source} is not valid YAML: {exc}", path=source) from exc
    loader = _ManifestLoader(data)
    try:
        index = 0
        while loader.check_node():
            try:
                doc = loader.construct_document(loader.get_node())
            except yaml.YAMLError as exc:
                where = f"{source}[{index}]"
                raise ManifestInvalid(f"{where} has no JSON value: {exc}", path=where) from exc
            except ValueError as exc:  # int() refuses more digits than sys.get_int_max_str_digits()
                where = f"{source}[{index}]"
                raise InputTooLarge(f"{where} has an integer too long to read", path=where) from exc
            if doc is not None:
                yield index, doc
            index += 1
    except yaml.YAMLError as exc:
        raise ManifestInvalid(f"{source} is not valid YAML: {exc}", path=source) from exc
    finally:
        loader.dispose()


def _object(doc: Any, where: str) -> K8sObject:
    meta = doc.get("metadata") if isinstance(doc, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ManifestInvalid(f"{where} is not a Kubernetes object with kind and a string metadata.name", path=where)
    namespace = meta.get("namespace")
    problem = (kind_problem(doc.get("kind")) or api_version_problem(doc.get("apiVersion"))
               or (None if namespace is None or isinstance(namespace, str) else "metadata.namespace must be a string"))
    if problem:
        raise ManifestInvalid(f"{where}: {problem}", path=where)
    return K8sObject(kind=doc["kind"], name=meta["name"], namespace=namespace, body=doc)


def parse_manifest(data: bytes, source: str) -> tuple[K8sObject, ...]:
    """Every object in a multi-document manifest; `ManifestInvalid` or `InputTooLarge` names the document."""
    return tuple(_object(doc, f"{source}[{i}]") for i, doc in load_documents(data, source))


def select(objects: tuple[K8sObject, ...], refs: tuple[str, ...], source: str) -> tuple[K8sObject, ...]:
    """The objects named "Kind/name" in `refs`; a name the manifest lacks is a config error."""
    if not all(isinstance(r, str) for r in refs):
        raise ManifestInvalid(f"the objects config.json names from {source} must be \"Kind/name\" strings",
                              path=source)
    by_ref = {o.ref: o for o in objects}
    missing = [r for r in refs if r not in by_ref]
    if missing:
        raise ManifestInvalid(f"{source} has no {', '.join(missing)} (named by config.json)", path=source,
                              details={"missing": missing})
    return tuple(by_ref[r] for r in refs)
