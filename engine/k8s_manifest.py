"""Kubernetes manifests referenced by config.json, read as data (never applied from here)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import yaml

from engine.errors import ManifestInvalid

# libyaml's loader when PyYAML was built with it: the same safe subset, many times faster.
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@attrs.frozen
class K8sObject:
    kind: str
    name: str
    namespace: str | None
    body: Mapping[str, Any]

    @property
    def ref(self) -> str:
        return f"{self.kind}/{self.name}"


def parse_manifest(data: bytes, source: str) -> tuple[K8sObject, ...]:
    try:
        docs = [d for d in yaml.load_all(data, Loader=SAFE_LOADER) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestInvalid(f"{source} is not valid YAML: {exc}", path=source) from exc
    objects = []
    for i, doc in enumerate(docs):
        meta = doc.get("metadata") if isinstance(doc, dict) else None
        if not isinstance(meta, dict) or "kind" not in doc or "name" not in meta:
            raise ManifestInvalid(f"{source}: document {i} is not a Kubernetes object with kind and "
                                  "metadata.name", path=f"{source}[{i}]")
        objects.append(K8sObject(kind=doc["kind"], name=meta["name"], namespace=meta.get("namespace"), body=doc))
    return tuple(objects)


def select(objects: tuple[K8sObject, ...], refs: tuple[str, ...], source: str) -> tuple[K8sObject, ...]:
    """The objects named "Kind/name" in `refs`; a name the manifest lacks is a config error."""
    by_ref = {o.ref: o for o in objects}
    missing = [r for r in refs if r not in by_ref]
    if missing:
        raise ManifestInvalid(f"{source} has no {', '.join(missing)} (named by config.json)", path=source,
                              details={"missing": missing})
    return tuple(by_ref[r] for r in refs)
