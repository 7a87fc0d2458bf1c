"""The three PATCH flavours of the Kubernetes API, on plain JSON dicts.

kmock merges every dict patch as plain JSON, so patching one container's env would drop the
container's image. Real apiservers default to strategic merge for built-in kinds (and the official
Python client sends dict bodies as `application/strategic-merge-patch+json`), so lists of named
things (containers, env, ports, volumes, conditions) merge by their key.
"""

import copy
from typing import Any

import jsonpatch  # a kmock dependency

# List field -> the key its items merge on (the `patchMergeKey`s of the core API types we meet).
MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "conditions": "type",
    "ports": "containerPort",  # Service ports merge on "port": see _merge_key()
}


def apply(content_type: str, old: dict[str, Any], patch: Any) -> dict[str, Any]:
    """Return `old` patched according to the PATCH request's content type."""
    if content_type == "application/json-patch+json":
        return jsonpatch.apply_patch(old, patch, in_place=False)
    if content_type == "application/merge-patch+json":
        return merge_patch(old, patch)
    # strategic-merge-patch and server-side apply (apply-patch+yaml): both merge by key here
    return strategic_merge(old, patch)


def merge_patch(old: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: dicts merge, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(old) if isinstance(old, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def strategic_merge(old: Any, patch: Any) -> Any:
    """A strategic merge patch: like merge_patch, but keyed lists merge item by item.

    Supports the `$patch: replace|delete` directives; other `$` directives (element order,
    retainKeys) only tune ordering and pruning, and are dropped.
    """
    if not isinstance(old, dict) or not isinstance(patch, dict) or patch.get("$patch") == "replace":
        return _clean(patch)
    out = dict(old)
    for key, value in patch.items():
        if key.startswith("$"):
            continue
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict):
            out[key] = strategic_merge(old.get(key), value)
        elif isinstance(value, list) and isinstance(old.get(key), list) and _merge_key(key, value):
            out[key] = _merge_list(old[key], value, _merge_key(key, value))
        else:
            out[key] = _clean(value)
    return out


def _merge_key(field: str, items: list[Any]) -> str | None:
    key = MERGE_KEYS.get(field)
    if field == "ports" and any(isinstance(i, dict) and "containerPort" not in i for i in items):
        key = "port"  # Service ports
    return key


def _merge_list(old: list[Any], patch: list[Any], key: str) -> list[Any]:
    out = copy.deepcopy(old)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            continue
        index = next((i for i, o in enumerate(out) if isinstance(o, dict) and o.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if index is not None:
                del out[index]
        elif index is None:
            out.append(_clean(item))
        else:
            out[index] = strategic_merge(out[index], item)
    return out


def _clean(value: Any) -> Any:
    """Drop `$` directives and nulls from a value that is stored as is."""
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items() if not k.startswith("$") and v is not None}
    if isinstance(value, list):
        return [_clean(v) for v in value]
    return value
