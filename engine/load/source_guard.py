"""G1: the Code Queue hostPath source guard.

Production Code Queue Pods run Bun on the hostPath repo (/home/ubuntu/cq-deploy mounted at /app),
so a partly synced tree (index.ts importing ./runtime-preflight with runtime-preflight.ts absent)
crashes the scheduler on restart. `check_code_queue_source(root)` scans every relative import
under `<root>/src/components/microservices/code-queue/src/**/*.ts` and resolves it the way
TypeScript/Bun do; any apply path touching that source runs it before rollout and stops on failure.

The tree is untrusted pull-request content (issue 9), so the guard fails closed:

- What is read: directories under the source dir (`node_modules` skipped), and each `*.ts` there
  that is a regular file, up to `MAX_FILE_BYTES`. Symlinks are followed only while they stay
  inside the root; each real directory is walked once, so a symlink to a parent cannot loop. A
  directory named `x.ts` is walked as a directory. Nothing outside the root is opened, and no
  FIFO, socket or device is ever opened (files are opened non-blocking and checked with fstat).
- What is degraded: `source-root-missing` (no source dir, or no `.ts` in it and nothing unread);
  `unreadable-path` when any path could not or would not be read, each listed with its cause
  (permission-denied, symlink-loop, name-too-long, io-error, dangling-symlink,
  symlink-outside-root, not-a-regular-file, file-too-large, not-utf-8 - the last is still
  scanned, with U+FFFD for the bad bytes); `missing-relative-import-target` when an import names
  no file. An import resolves only to a regular file whose real path is inside the root.
  Unreadable paths come first: a scan that skipped something cannot vouch for the tree.

Scanning is tokenizer-light: comments are skipped, strings, template literals and (heuristically)
regex literals are single tokens, so `import` inside them is never mistaken for a statement. The
tokenizer is iterative and linear in the file size, whatever the nesting.
"""

from __future__ import annotations

import enum
import errno
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs

CODE_QUEUE_SOURCE = Path("src/components/microservices/code-queue/src")
MAX_FILE_BYTES = 1024 * 1024  # a source file larger than this is not read (real ones are a few KiB)

# How a relative specifier maps to files, in the order TypeScript/Bun try them.
JS_TO_TS = {".js": (".ts", ".tsx", ".js"), ".jsx": (".tsx", ".jsx"), ".mjs": (".mts", ".mjs"), ".cjs": (".cts", ".cjs")}
AS_IS = (".ts", ".tsx", ".mts", ".cts", ".json")
EXTENSIONLESS = (".ts", ".tsx", "/index.ts", "/index.tsx")

# OS errors meaning "there is no such file here", not "the guard could not look".
ABSENT = (errno.ENOENT, errno.ENOTDIR, errno.ENAMETOOLONG, errno.ELOOP)
CAUSES = {errno.EACCES: "permission-denied", errno.EPERM: "permission-denied", errno.ELOOP: "symlink-loop",
          errno.ENAMETOOLONG: "name-too-long", errno.EIO: "io-error", errno.ENOENT: "dangling-symlink"}


class DegradedReason(enum.Enum):
    SOURCE_ROOT_MISSING = "source-root-missing"
    UNREADABLE_PATH = "unreadable-path"
    MISSING_RELATIVE_IMPORT_TARGET = "missing-relative-import-target"


@attrs.frozen
class MissingImport:
    importer: str  # the importing file, relative to the root
    specifier: str  # as written in the import
    target: str  # the first file tried, relative to the root
    tried: tuple[str, ...]  # every file tried, in order


@attrs.frozen
class UnreadablePath:
    path: str  # relative to the root
    cause: str  # permission-denied, symlink-loop, symlink-outside-root, file-too-large, ... (module docstring)


@attrs.frozen
class GuardResult:
    root: Path
    scanned: int  # .ts files read
    relative_imports: int  # relative specifiers resolved
    degraded_reason: DegradedReason | None
    missing: tuple[MissingImport, ...] = ()
    unreadable: tuple[UnreadablePath, ...] = ()

    @property
    def ok(self) -> bool:
        return self.degraded_reason is None


def check_code_queue_source(root: Path) -> GuardResult:
    if "\0" in str(root):  # from a plan file: no such directory can exist
        return GuardResult(root, 0, 0, DegradedReason.SOURCE_ROOT_MISSING)
    scan = _Scan(root)
    source = root / CODE_QUEUE_SOURCE
    if not scan.is_directory(source):
        return GuardResult(root, 0, 0, _reason([], [], scan.unreadable, present=False), (), tuple(scan.unreadable))
    files = scan.source_files(source)
    missing: list[MissingImport] = []
    checked = scanned = 0
    for file in files:
        text = scan.read(file)
        if text is None:
            continue
        scanned += 1
        for spec in relative_specifiers(text):
            checked += 1
            tried = candidates(file.parent, spec)
            if not any(scan.is_source_file(t) for t in tried):
                rel = tuple(_rel(t, root) for t in tried)
                missing.append(MissingImport(_rel(file, root), spec, rel[0], rel))
    reason = _reason(files, missing, scan.unreadable, present=True)
    return GuardResult(root, scanned, checked, reason, tuple(missing), tuple(scan.unreadable))


def _reason(files: list[Path], missing: list[MissingImport], unreadable: list[UnreadablePath], *,
            present: bool) -> DegradedReason | None:
    if unreadable:
        return DegradedReason.UNREADABLE_PATH
    if not present or not files:  # no root, no source dir, or an empty one: nothing Bun could start from
        return DegradedReason.SOURCE_ROOT_MISSING
    return DegradedReason.MISSING_RELATIVE_IMPORT_TARGET if missing else None


class _Scan:
    """One guard run's file-system access: every look and read goes through here, and every path it
    could not (or would not) read is recorded in `unreadable` instead of being skipped silently."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.real_root = os.path.realpath(root)
        self.lexical_root = os.path.abspath(root)
        self._unreadable: dict[str, UnreadablePath] = {}  # by path: the first cause found
        self._seen: set[str] = set()

    @property
    def unreadable(self) -> list[UnreadablePath]:
        return sorted(self._unreadable.values(), key=lambda u: u.path)

    def note(self, path: Path | str, cause: str) -> None:
        rel = _rel(path, self.root)
        self._unreadable.setdefault(rel, UnreadablePath(rel, cause))

    def note_error(self, path: Path | str, exc: OSError) -> None:
        self.note(path, _cause(exc))

    def inside_root(self, real: str, root: str | None = None) -> bool:
        root = root or self.real_root
        return real == root or real.startswith(root.rstrip(os.sep) + os.sep)

    def real_inside(self, path: Path) -> str | None:
        """The real path when it exists inside the root; otherwise None, with the reason noted."""
        try:
            real = os.path.realpath(path, strict=True)
        except OSError as exc:
            self.note_error(path, exc)
            return None
        if not self.inside_root(real):
            self.note(path, "symlink-outside-root")
            return None
        return real

    def is_directory(self, path: Path) -> bool:
        """Whether `path` is a directory inside the root; a missing one is not noted, anything else is."""
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):
                self.note_error(path, exc)
            return False
        real = self.real_inside(path)
        return real is not None and os.path.isdir(real)

    def source_files(self, source: Path) -> list[Path]:
        """Every `*.ts` name under `source` (as reached from it), walking each real directory once."""
        files: list[Path] = []
        pending = [source]
        while pending:
            directory = pending.pop()
            real = self.real_inside(directory)
            if real is None or real in self._seen:  # a loop, or a directory already walked by another name
                continue
            self._seen.add(real)
            for entry in self._entries(directory):
                path = Path(entry.path)
                try:
                    if entry.is_symlink() and self.real_inside(path) is None:
                        continue  # dangling, looping or leaving the root: noted, never followed
                    if entry.is_dir():
                        pending.append(path)
                    elif entry.name.endswith(".ts"):
                        files.append(path)
                except OSError as exc:
                    self.note_error(path, exc)
        return sorted(files)

    def _entries(self, directory: Path) -> list[os.DirEntry[str]]:
        try:
            with os.scandir(directory) as listing:
                return [e for e in listing if e.name != "node_modules"]
        except OSError as exc:
            self.note_error(directory, exc)
            return []

    def read(self, file: Path) -> str | None:
        """The text of a regular file inside the root, at most MAX_FILE_BYTES; None (noted) otherwise."""
        real = self.real_inside(file)
        if real is None:
            return None
        try:  # non-blocking, so a FIFO swapped in after the walk cannot hang the open either
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            self.note_error(file, exc)
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                self.note(file, "not-a-regular-file")
                return None
            data = _read_at_most(fd, MAX_FILE_BYTES + 1)
        except OSError as exc:
            self.note_error(file, exc)
            return None
        finally:
            os.close(fd)
        if len(data) > MAX_FILE_BYTES:
            self.note(file, "file-too-large")
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self.note(file, "not-utf-8")
            return data.decode("utf-8", errors="replace")

    def is_source_file(self, candidate: Path) -> bool:
        """Whether an import candidate is a regular file whose real path is inside the root."""
        if not self.inside_root(os.path.abspath(candidate), self.lexical_root):
            return False  # "../" out of the root: not even looked at
        try:
            real = os.path.realpath(candidate, strict=True)
            return self.inside_root(real) and stat.S_ISREG(os.stat(real).st_mode)
        except ValueError:  # a NUL in the specifier: no such file
            return False
        except OSError as exc:
            if exc.errno not in ABSENT:
                self.note_error(candidate, exc)
            return False


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, size = [], 0
    while size < limit and (chunk := os.read(fd, min(65536, limit - size))):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _cause(exc: OSError) -> str:
    if exc.errno in CAUSES:
        return CAUSES[exc.errno]
    return f"os-error-{errno.errorcode.get(exc.errno or 0, 'unknown').lower()}"


def _rel(path: Path | str, root: Path) -> str:
    """`path` relative to the root, printable: undecodable bytes in a name appear as \\xNN."""
    return _printable(os.path.normpath(os.path.relpath(path, root)))


def _printable(name: str) -> str:
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


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
    found: dict[str, None] = {}  # an ordered set: a hostile file may hold thousands of imports
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
        if spec is not None and spec.startswith(("./", "../")):
            found.setdefault(spec)
    return list(found)


def _from_clause(toks: list[Token], j: int) -> str | None:
    """Skip an import/export clause (`type`, names, `* as x`, `{ … }`); the string after `from`.

    Only names, commas, `*` and (inside the braces) strings may come before `from`, and braces do
    not nest, so a scan stops at the first token that cannot be part of a clause: hostile input
    cannot make one clause scan run over the statements after it.
    """
    in_braces = False
    while j < len(toks):
        tok = toks[j]
        after = toks[j + 1] if j + 1 < len(toks) else None
        if tok.value == "{" and tok.kind == "punct":
            if in_braces:
                return None
            in_braces = True
        elif tok.value == "}" and tok.kind == "punct":
            if not in_braces or not (after and after.value == "from"):
                return None
            in_braces = False
        elif in_braces:
            if not (tok.kind in ("name", "string") or tok.value == ","):
                return None
        else:
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
    no_regex_before = 0  # after a "/" that opened no regex, the rest of its line is not tried again
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
        elif c == "/" and i >= no_regex_before and _regex_allowed(prev) and (end := _regex_end(text, i)) > i + 1:
            tok = Token("regex", text[i:end])  # one token, so nothing inside it is ever an import
        elif m := NAME.match(text, i):
            end, tok = m.end(), Token("name", m.group())
        elif text.startswith("?.", i):
            end, tok = i + 2, Token("punct", "?.")
        else:
            if c == "/" and i >= no_regex_before and _regex_allowed(prev):  # tried, and no regex ends on this line
                no_regex_before = n if (eol := text.find("\n", i)) < 0 else eol
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
    """Index just past the template literal starting at i, with its `${ … }` expressions and the
    strings and templates nested in them (an unterminated one ends at the end of the text).

    Iterative, with an explicit stack, so 600 nested templates cost no more than 600 flat ones.
    Each entry is 0 while inside a template's text, or the brace depth of an open `${` expression.
    """
    stack, j, n = [0], i + 1, len(text)
    while stack and j < n:
        c = text[j]
        if stack[-1] == 0:  # template text
            if c == "\\":
                j += 2
                continue
            if c == "`":
                stack.pop()
            elif text.startswith("${", j):
                stack.append(1)
                j += 1
        elif c in "'\"":
            j = _quoted_end(text, j)
            continue
        elif c == "`":
            stack.append(0)
        elif c in "{}":
            stack[-1] += 1 if c == "{" else -1
            if stack[-1] == 0:
                stack.pop()  # back in the enclosing template's text
        j += 1
    return min(j, n)


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
        "root": _printable(str(result.root)),
        "sourceDir": str(CODE_QUEUE_SOURCE),
        "scanned": result.scanned,
        "relativeImports": result.relative_imports,
        "degradedReason": result.degraded_reason.value if result.degraded_reason else None,
        "missing": [{"importer": m.importer, "specifier": m.specifier, "target": m.target, "tried": list(m.tried)}
                    for m in result.missing],
        "unreadable": [{"path": u.path, "cause": u.cause} for u in result.unreadable],
    }
