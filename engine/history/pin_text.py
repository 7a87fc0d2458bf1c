"""Change one string in a JSON text without re-serializing it: a reviewer's diff of a rollback is
exactly one `commitId`, and the file keeps its indentation, key order, spacing and newline.

`value_span` walks the text once, as a JSON parser does, and returns where the value at a path
starts and ends; `replace_string` puts a new string there and checks that the result parses to the
old document with that one value changed. A key that appears twice in one object resolves to the
last occurrence, as Python's `json` (and the rest of udeploy) reads it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from udeploy.engine.errors import ManifestInvalid

Path = Sequence[str | int]  # object keys and array indices, from the root
WHITESPACE = re.compile(r"[ \t\n\r]*")


class _Scanner:
    def __init__(self, text: str, source: str) -> None:
        self.text, self.source = text, source
        self.decoder = json.JSONDecoder()
        self.found: dict[tuple[str | int, ...], tuple[int, int]] = {}  # every value's span, by path

    def fail(self, at: int, what: str) -> ManifestInvalid:
        line = self.text.count("\n", 0, at) + 1
        return ManifestInvalid(f"{self.source}: {what} at line {line}", path=self.source)

    def skip(self, at: int) -> int:
        match = WHITESPACE.match(self.text, at)
        assert match is not None  # the pattern matches the empty string
        return match.end()

    def value(self, at: int, path: tuple[str | int, ...]) -> int:
        at = self.skip(at)
        start = at
        char = self.text[at:at + 1]
        if char == "{":
            at = self.members(at + 1, path)
        elif char == "[":
            at = self.elements(at + 1, path)
        else:  # a string, number, true, false or null: json reads it and says where it ends
            at = self.decoder.raw_decode(self.text, at)[1]
        self.found[path] = (start, at)
        return at

    def members(self, at: int, path: tuple[str | int, ...]) -> int:
        at = self.skip(at)
        if self.text[at:at + 1] == "}":
            return at + 1
        while True:
            at = self.skip(at)
            if self.text[at:at + 1] != '"':
                raise self.fail(at, "expected an object key")
            key, at = self.decoder.raw_decode(self.text, at)
            at = self.skip(at)
            if self.text[at:at + 1] != ":":
                raise self.fail(at, "expected ':'")
            at = self.skip(self.value(at + 1, (*path, key)))
            if self.text[at:at + 1] == "}":
                return at + 1
            if self.text[at:at + 1] != ",":
                raise self.fail(at, "expected ',' or '}'")
            at += 1

    def elements(self, at: int, path: tuple[str | int, ...]) -> int:
        at = self.skip(at)
        if self.text[at:at + 1] == "]":
            return at + 1
        index = 0
        while True:
            at = self.skip(self.value(at, (*path, index)))
            index += 1
            if self.text[at:at + 1] == "]":
                return at + 1
            if self.text[at:at + 1] != ",":
                raise self.fail(at, "expected ',' or ']'")
            at += 1


def value_span(text: str, path: Path, source: str = "deploy.json") -> tuple[int, int]:
    """Where the value at `path` starts and ends in `text` (`ManifestInvalid` if there is none)."""
    scanner = _Scanner(text, source)
    try:
        end = scanner.skip(scanner.value(0, ()))
    except json.JSONDecodeError as exc:
        raise scanner.fail(exc.pos, exc.msg) from None
    if end != len(text):
        raise scanner.fail(end, "extra data after the JSON document")
    span = scanner.found.get(tuple(path))
    if span is None:
        raise ManifestInvalid(f"{source} has no value at {_shown(path)}", path=f"{source}#{_shown(path)}")
    return span


def replace_string(text: str, path: Path, new: str, source: str = "deploy.json") -> str:
    """`text` with the string at `path` replaced by `new`, every other byte kept."""
    start, end = value_span(text, path, source)
    if text[start] != '"':
        raise ManifestInvalid(f"{source}: {_shown(path)} is not a string", path=f"{source}#{_shown(path)}")
    changed = text[:start] + json.dumps(new) + text[end:]
    expected = json.loads(text)
    _set(expected, path, new)
    if json.loads(changed) != expected:  # the scanner and json disagree: never write a surprise
        raise ManifestInvalid(f"{source}: could not change {_shown(path)} alone", path=source)
    return changed


def _set(doc: Any, path: Path, value: str) -> None:
    for step in path[:-1]:
        doc = doc[step]
    doc[path[-1]] = value


def _shown(path: Path) -> str:
    return "$" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
