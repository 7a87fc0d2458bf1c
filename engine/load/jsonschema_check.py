"""Parse JSON input within limits, and validate a document against one of the shipped JSON Schemas,
naming the JSON path at fault."""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from udeploy.engine.errors import InputTooLarge, ManifestInvalid, UdeployError
from udeploy.engine.load.input_files import MAX_MANIFEST_BYTES

# Limits on any JSON udeploy reads (manifests, plan files, state records). The real documents nest
# fewer than 12 levels; deeper input would only exhaust the recursion of the validators after us.
MAX_JSON_DEPTH = 64

if TYPE_CHECKING:  # jsonschema is imported where a check runs: a remembered document needs none
    import jsonschema


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(_schema_text(name)))


@cache
def _schema_text(name: str) -> str:
    return resources.files("udeploy.schemas").joinpath(f"{name}.schema.json").read_text()


def parse_json(data: bytes | str, source: str, *, error: type[UdeployError] = ManifestInvalid,
               max_bytes: int = MAX_MANIFEST_BYTES) -> Any:
    """JSON text to a value of plain JSON types, or `error` naming the source and what is wrong.

    Refused: malformed JSON or UTF-8, NaN and Infinity (not JSON), integers beyond Python's digit
    limit, strings that cannot be UTF-8 (a lone surrogate escape such as "\\ud800"), and input
    deeper than `MAX_JSON_DEPTH` or larger than `max_bytes` (`input-too-large`).
    """
    if len(data) > max_bytes:
        raise InputTooLarge(f"{source} is larger than the {max_bytes}-byte limit", path=source)
    try:
        doc = json.loads(data, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise error(f"{source} is not valid JSON (line {exc.lineno} column {exc.colno}): {exc.msg}",
                    path=source) from None
    except UnicodeDecodeError as exc:
        raise error(f"{source} is not valid UTF-8 (byte {exc.start})", path=source) from None
    except RecursionError:
        raise InputTooLarge(f"{source} nests deeper than {MAX_JSON_DEPTH} levels", path=source) from None
    except ValueError as exc:  # an integer past the interpreter's digit limit, or NaN/Infinity
        raise error(f"{source} is not acceptable JSON: {exc}", path=source) from None
    _check_shape(doc, source, error)
    return doc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _check_shape(doc: Any, source: str, error: type[UdeployError]) -> None:
    """Depth and string encodability, walked iteratively (the input may be deep by design)."""
    stack: list[tuple[Any, int, str]] = [(doc, 1, "$")]
    while stack:
        value, depth, path = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise InputTooLarge(f"{source} nests deeper than {MAX_JSON_DEPTH} levels (at {path})",
                                path=f"{source}#{path}")
        if isinstance(value, dict):
            for key, item in value.items():
                _require_utf8(key, source, path, error)
                stack.append((item, depth + 1, f"{path}.{key}"))
        elif isinstance(value, list):
            stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(value))
        elif isinstance(value, str):
            _require_utf8(value, source, path, error)


def _require_utf8(text: str, source: str, path: str, error: type[UdeployError]) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise error(f"{source} holds a string that is not valid Unicode (a lone surrogate) at {path}",
                    path=f"{source}#{path.encode('utf-8', 'replace').decode()}") from None


def check_remembered(doc: Any, schema: str, source: str) -> None:
    """`check`, skipped for a document that passed before: same content, same schema text, same
    jsonschema. A fleet's config.json takes longer to check than to plan from, and it changes far
    less often than plans are made. Only passes are remembered (an empty file per document, in
    the per-user cache beside the git mirrors), so every failure is reported in full each time."""
    canonical = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    key = hashlib.sha256(b"\0".join([_validator_id(schema).encode(), canonical])).hexdigest()
    if passed_before(key):
        return
    check(doc, schema, source)
    remember_pass(key)


def passed_before(key: str) -> bool:
    """Whether a check remembered as `key` (a SHA-256 over the checker's identity and the input) passed."""
    return (_validated_dir() / key).exists()


def remember_pass(key: str) -> None:
    """Remember that the check `key` passed: an empty file in the per-user cache beside the git mirrors."""
    marker = _validated_dir() / key
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
    except OSError:  # an unwritable cache only costs the next run the check again
        pass


@cache
def _validator_id(schema: str) -> str:
    text = hashlib.sha256(_schema_text(schema).encode()).hexdigest()
    return f"{schema}:{text}:jsonschema-{metadata.version('jsonschema')}"


def _validated_dir() -> Path:
    """Next to the git mirrors: `$UDEPLOY_CACHE_DIR/validated`, else `~/.cache/udeploy/validated`."""
    if os.environ.get("UDEPLOY_CACHE_DIR"):
        return Path(os.environ["UDEPLOY_CACHE_DIR"]) / "validated"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "udeploy" / "validated"


def check(doc: Any, schema: str, source: str) -> None:
    """Raise `ManifestInvalid` listing every violation, the first one's path as the error path.

    A `oneOf`/`anyOf` violation is reported as its most relevant branch's when one stands out
    (jsonschema's `best_match`), so the path names the field at fault, not the union holding it."""
    from jsonschema.exceptions import best_match

    errors = sorted((best_match([e]) for e in validator(schema).iter_errors(doc)), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    details = [{"path": f"{source}#{e.json_path}", "message": e.message} for e in errors[:20]]
    first = errors[0]
    raise ManifestInvalid(f"{source} breaks the {schema} schema at {first.json_path}: {first.message}",
                          path=f"{source}#{first.json_path}", details=details)
