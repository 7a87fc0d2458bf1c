"""G1: the Code Queue hostPath source guard.

Production Code Queue Pods run Bun on the hostPath repo (/home/ubuntu/cq-deploy mounted at /app),
so a partly synced tree (index.ts importing ./runtime-preflight with runtime-preflight.ts absent)
crashes the scheduler on restart. `check_code_queue_source(root)` scans every relative import
under `<root>/src/components/microservices/code-queue/src/**/*.ts` and resolves it the way
TypeScript/Bun do; any apply path touching that source runs it before rollout and stops on failure.

Scanning is tokenizer-light: comments are skipped, strings, template literals and (heuristically)
regex literals are single tokens, so `import` inside them is never mistaken for a statement.
"""

from __future__ import annotations

import enum
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

CODE_QUEUE_SOURCE = Path("src/components/microservices/code-queue/src")

# How a relative specifier maps to files, in the order TypeScript/Bun try them.
JS_TO_TS = {".js": (".ts", ".tsx", ".js"), ".jsx": (".tsx", ".jsx"), ".mjs": (".mts", ".mjs"), ".cjs": (".cts", ".cjs")}
AS_IS = (".ts", ".tsx", ".mts", ".cts", ".json")
EXTENSIONLESS = (".ts", ".tsx", "/index.ts", "/index.tsx")


class DegradedReason(enum.Enum):
    SOURCE_ROOT_MISSING = "source-root-missing"
    MISSING_RELATIVE_IMPORT_TARGET = "missing-relative-import-target"


@attrs.frozen
class MissingImport:
    importer: str  # the importing file, relative to the root
    specifier: str  # as written in the import
    target: str  # the first file tried, relative to the root
    tried: tuple[str, ...]  # every file tried, in order


@attrs.frozen
class GuardResult:
    root: Path
    scanned: int  # .ts files read
    relative_imports: int  # relative specifiers resolved
    degraded_reason: DegradedReason | None
    missing: tuple[MissingImport, ...] = ()

    @property
    def ok(self) -> bool:
        return self.degraded_reason is None


def check_code_queue_source(root: Path) -> GuardResult:
    source = root / CODE_QUEUE_SOURCE
    files = sorted(p for p in source.rglob("*.ts") if "node_modules" not in p.parts) if source.is_dir() else []
    if not files:  # no root, no source dir, or an empty one: nothing Bun could start from
        return GuardResult(root, 0, 0, DegradedReason.SOURCE_ROOT_MISSING)
    missing, checked = [], 0
    for file in files:
        for spec in relative_specifiers(file.read_text(encoding="utf-8", errors="replace")):
            checked += 1
            tried = candidates(file.parent, spec)
            if not any(t.is_file() for t in tried):
                rel = tuple(_rel(t, root) for t in tried)
                missing.append(MissingImport(_rel(file, root), spec, rel[0], rel))
    reason = DegradedReason.MISSING_RELATIVE_IMPORT_TARGET if missing else None
    return GuardResult(root, len(files), checked, reason, tuple(missing))


def _rel(path: Path, root: Path) -> str:
    return os.path.normpath(os.path.relpath(path, root))


def candidates(directory: Path, spec: str) -> tuple[Path, ...]:
    """The files a relative specifier may name, most likely first."""
    base = str(directory / spec)
    suffix = os.path.splitext(spec.rsplit("/", 1)[-1])[1]
    if suffix in JS_TO_TS:  # ESM style: "./x.js" names the source "./x.ts"
        stem = base[: -len(suffix)]
        return tuple(Path(stem + ext) for ext in JS_TO_TS[suffix])
    if suffix in AS_IS:
        return (Path(base),)
    tried = tuple(Path(base.rstrip("/") + ext) for ext in EXTENSIONLESS)
    return (*tried, Path(base)) if suffix else tried  # "./styles.css", "./x.local": maybe the file itself


def relative_specifiers(text: str) -> list[str]:
    """Relative targets of `import`, `import type`, `export … from`, `export * from` and `import()`."""
    toks = list(tokens(text))
    found: list[str] = []
    for k, tok in enumerate(toks):
        if tok.kind != "name" or tok.value not in ("import", "export") or (k and toks[k - 1].value in (".", "?.")):
            continue
        nxt = toks[k + 1] if k + 1 < len(toks) else None
        spec: str | None = None
        if tok.value == "import" and nxt and nxt.kind == "string":  # import "./side-effect"
            spec = nxt.value
        elif tok.value == "import" and nxt and nxt.value == "(":  # import("./x"), a template without ${}
            arg = toks[k + 2] if k + 2 < len(toks) else None
            if arg and (arg.kind == "string" or (arg.kind == "template" and "${" not in arg.value)):
                spec = arg.value
        elif nxt and (nxt.value in ("{", "*") or (tok.value == "import" and nxt.kind == "name")
                      or (nxt.value == "type" and k + 2 < len(toks) and toks[k + 2].value in ("{", "*"))):
            spec = _from_clause(toks, k + 1)
        if spec is not None and spec.startswith(("./", "../")) and spec not in found:
            found.append(spec)
    return found


def _from_clause(toks: list[Token], j: int) -> str | None:
    """Skip an import/export clause (`type`, names, `* as x`, `{ … }`); the string after `from`."""
    depth = 0
    while j < len(toks):
        tok = toks[j]
        after = toks[j + 1] if j + 1 < len(toks) else None
        if tok.value == "{":
            depth += 1
        elif tok.value == "}":
            depth -= 1
            if depth == 0 and not (after and after.value == "from"):
                return None
        elif depth == 0:
            if tok.kind == "name" and tok.value == "from" and after and after.kind == "string":
                return after.value
            if tok.value in ("import", "export") or not (tok.kind == "name" or tok.value in (",", "*")):
                return None  # not a clause: `import x = …`, `export const`, or the next statement
        j += 1
    return None


@attrs.frozen
class Token:
    kind: str  # "name", "string", "template", "regex" or "punct"
    value: str


NAME = re.compile(r"[A-Za-z_$][\w$]*")
# After these a "/" starts a regex literal, not a division.
REGEX_AFTER_NAMES = {"return", "typeof", "case", "do", "else", "in", "of", "new", "delete", "void", "throw",
                     "instanceof", "yield", "await"}


def tokens(text: str) -> Iterator[Token]:
    i, n, prev = 0, len(text), None
    while i < n:
        c = text[i]
        tok: Token | None = None
        if c.isspace():
            i += 1
            continue
        if text.startswith("//", i):
            i = n if (end := text.find("\n", i)) < 0 else end
            continue
        if text.startswith("/*", i):
            i = n if (end := text.find("*/", i + 2)) < 0 else end + 2
            continue
        if c in "'\"":
            end = _quoted_end(text, i)
            tok = Token("string", text[i + 1:end - 1])
        elif c == "`":
            end = _template_end(text, i)
            tok = Token("template", text[i + 1:end - 1])
        elif c == "/" and _regex_allowed(prev) and (end := _regex_end(text, i)) > i + 1:
            tok = Token("regex", text[i:end])  # one token, so nothing inside it is ever an import
        elif m := NAME.match(text, i):
            end, tok = m.end(), Token("name", m.group())
        elif text.startswith("?.", i):
            end, tok = i + 2, Token("punct", "?.")
        else:
            end, tok = i + 1, Token("punct", c)
        i, prev = end, tok
        yield tok


def _regex_allowed(prev: Token | None) -> bool:
    if prev is None:
        return True
    if prev.kind == "punct":
        return prev.value not in (")", "]", "}")
    return prev.kind == "name" and prev.value in REGEX_AFTER_NAMES


def _quoted_end(text: str, i: int) -> int:
    """Index just past the string literal starting at i (an unterminated one ends at the line)."""
    quote, j = text[i], i + 1
    while j < len(text) and text[j] not in (quote, "\n"):
        j += 2 if text[j] == "\\" else 1
    return min(j + 1, len(text))


def _template_end(text: str, i: int) -> int:
    j, n = i + 1, len(text)
    while j < n and text[j] != "`":
        if text[j] == "\\":
            j += 2
        elif text.startswith("${", j):
            j = _expression_end(text, j + 2)
        else:
            j += 1
    return min(j + 1, n)


def _expression_end(text: str, j: int) -> int:
    """Index just past the `}` closing a template's `${`, skipping nested strings and templates."""
    depth, n = 1, len(text)
    while j < n and depth:
        c = text[j]
        if c in "'\"":
            j = _quoted_end(text, j)
            continue
        if c == "`":
            j = _template_end(text, j)
            continue
        depth += {"{": 1, "}": -1}.get(c, 0)
        j += 1
    return j


def _regex_end(text: str, i: int) -> int:
    """Index past the regex literal at i, or i + 1 when there is none on this line."""
    j, in_class, n = i + 1, False, len(text)
    while j < n and text[j] != "\n":
        c = text[j]
        if c == "\\":
            j += 2
            continue
        if c == "[":
            in_class = True
        elif c == "]":
            in_class = False
        elif c == "/" and not in_class:
            j += 1
            while j < n and (text[j].isalpha()):
                j += 1
            return j
        j += 1
    return i + 1


def guard_json(result: GuardResult) -> dict[str, Any]:
    return {
        "ok": result.ok,
        "root": str(result.root),
        "sourceDir": str(CODE_QUEUE_SOURCE),
        "scanned": result.scanned,
        "relativeImports": result.relative_imports,
        "degradedReason": result.degraded_reason.value if result.degraded_reason else None,
        "missing": [{"importer": m.importer, "specifier": m.specifier, "target": m.target, "tried": list(m.tried)}
                    for m in result.missing],
    }
