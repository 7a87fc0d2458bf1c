"""Validate a document against one of the shipped JSON Schemas, naming the JSON path at fault."""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

from engine.errors import ManifestInvalid


@cache
def validator(name: str) -> jsonschema.Draft202012Validator:
    text = resources.files("schemas").joinpath(f"{name}.schema.json").read_text()
    return jsonschema.Draft202012Validator(json.loads(text))


def parse_json(data: bytes | str, source: str) -> Any:
    """JSON text to a value; malformed JSON is a `ManifestInvalid` naming the line and column."""
    try:
        return json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        where = f"line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else "encoding"
        raise ManifestInvalid(f"{source} is not valid JSON ({where}): {exc}", path=source) from exc


def check(doc: Any, schema: str, source: str) -> None:
    """Raise `ManifestInvalid` listing every violation, the first one's path as the error path."""
    errors = sorted(validator(schema).iter_errors(doc), key=lambda e: list(e.absolute_path))
    if not errors:
        return
    details = [{"path": f"{source}#{e.json_path}", "message": e.message} for e in errors[:20]]
    first = errors[0]
    raise ManifestInvalid(f"{source} breaks the {schema} schema at {first.json_path}: {first.message}",
                          path=f"{source}#{first.json_path}", details=details)
