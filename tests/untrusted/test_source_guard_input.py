"""Issue 9, security item 4 and the TypeScript-tree crashes: G1 `udeploy guard code-queue-source`
on a hostile tree fails closed and never crashes or hangs.

Each case builds a real tree under a temporary root and runs the real CLI in a subprocess (with a
timeout, so a hang fails the test), then checks: one JSON document on stdout, no traceback on
stderr, and the exact verdict. The unreadable-directory cases drop the DAC capabilities of root
(`setpriv --bounding-set=-dac_override,-dac_read_search`), since root ignores `chmod 000`
otherwise (`nobody` cannot run this interpreter, which lives under /root); the tmp dirs stay
traversable because root still owns them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from udeploy.engine.load.source_guard import (
    CODE_QUEUE_SOURCE,
    MAX_FILE_BYTES,
    DegradedReason,
    UnreadablePath,
    check_code_queue_source,
    relative_specifiers,
)

REPO = Path(__file__).resolve().parents[2]
SRC = str(CODE_QUEUE_SOURCE)
WITHOUT_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]


def run_guard(root: Path, *, prefix: tuple[str, ...] = (), timeout: float = 60) -> tuple[int, dict[str, Any]]:
    """The CLI as a bot runs it; a hang is a TimeoutExpired, a traceback fails the assertion."""
    proc = subprocess.run([*prefix, sys.executable, "-m", "udeploy.engine.cli", "guard", "code-queue-source", "--root",
                           str(root)], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert "Traceback" not in proc.stderr, proc.stderr
    doc = json.loads(proc.stdout)
    assert "error" not in doc, doc  # every hostile tree gets a verdict, not an error
    return proc.returncode, doc


def source_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    """`files` (paths relative to the Code Queue source dir) written under root; the source dir."""
    source = root / CODE_QUEUE_SOURCE
    source.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        path = source / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
    return source


def unreadable(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(u["path"], u["cause"]) for u in doc["unreadable"]]


def missing(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["importer"], m["specifier"]) for m in doc["missing"]]


def test_issue9_G1_unreadable_directory_and_file_are_degraded_not_ok(tmp_path: Path) -> None:
    """Security item 4: the reported bug. Before, rglob skipped `locked/` and the result was ok: true."""
    source = source_tree(tmp_path, {
        "index.ts": 'import { a } from "./a";\n', "a.ts": "export const a = 1;\n",
        "locked/hidden.ts": 'import "./not-there";\n', "sealed.ts": 'import "./also-not-there";\n'})
    (source / "locked").chmod(0o000)
    (source / "sealed.ts").chmod(0o000)
    try:
        code, doc = run_guard(tmp_path, prefix=tuple(WITHOUT_DAC))
    finally:
        (source / "locked").chmod(0o755)
    assert code == 1 and doc["ok"] is False
    assert doc["degradedReason"] == "unreadable-path"
    assert unreadable(doc) == [(f"{SRC}/locked", "permission-denied"), (f"{SRC}/sealed.ts", "permission-denied")]
    assert (doc["scanned"], doc["missing"]) == (2, [])  # what could be read was read, and it resolves


def test_issue9_G1_unreadable_source_directory_is_degraded_not_missing(tmp_path: Path) -> None:
    """A source dir the guard cannot list is not "no source": it names the directory it could not read."""
    source = source_tree(tmp_path, {"index.ts": "export {};\n"})
    source.chmod(0o000)
    try:
        code, doc = run_guard(tmp_path, prefix=tuple(WITHOUT_DAC))
    finally:
        source.chmod(0o755)
    assert (code, doc["degradedReason"], doc["scanned"]) == (1, "unreadable-path", 0)
    assert unreadable(doc) == [(SRC, "permission-denied")]


def test_issue9_G1_ts_path_that_is_a_directory_is_walked_not_read(tmp_path: Path) -> None:
    source_tree(tmp_path, {"index.ts": 'import "./weird.ts";\n', "weird.ts/inner.ts": 'import "./sibling";\n',
                           "weird.ts/sibling.ts": "export {};\n"})
    code, doc = run_guard(tmp_path)
    assert (code, doc["degradedReason"], doc["scanned"], doc["unreadable"]) == (
        1, "missing-relative-import-target", 3, [])
    assert missing(doc) == [(f"{SRC}/index.ts", "./weird.ts")]  # a directory is not the file Bun needs


def test_issue9_G1_dangling_and_looping_symlinks_are_named(tmp_path: Path) -> None:
    source = source_tree(tmp_path, {"index.ts": 'import "./gone";\n'})
    (source / "gone.ts").symlink_to("nowhere.ts")
    (source / "self.ts").symlink_to("self.ts")  # ELOOP, which root gets too
    (source / "ping").symlink_to("pong")
    (source / "pong").symlink_to("ping")
    code, doc = run_guard(tmp_path)
    assert (code, doc["degradedReason"]) == (1, "unreadable-path")
    assert unreadable(doc) == [(f"{SRC}/gone.ts", "dangling-symlink"), (f"{SRC}/ping", "symlink-loop"),
                               (f"{SRC}/pong", "symlink-loop"), (f"{SRC}/self.ts", "symlink-loop")]
    assert missing(doc) == [(f"{SRC}/index.ts", "./gone")]


def test_issue9_G1_directory_symlink_to_its_parent_is_walked_once(tmp_path: Path) -> None:
    """A cycle inside the root is not an error: every real directory is scanned once, and it ends."""
    source = source_tree(tmp_path, {"index.ts": 'import "./routes/http";\n', "routes/http.ts": 'import "../x";\n',
                                    "x.ts": "export {};\n"})
    (source / "routes" / "up").symlink_to("..")
    (source / "routes" / "here").symlink_to(".")
    code, doc = run_guard(tmp_path)
    assert (code, doc["ok"], doc["scanned"], doc["relativeImports"], doc["unreadable"]) == (0, True, 3, 2, [])


def test_issue9_G1_symlinks_leaving_the_root_are_never_followed(tmp_path: Path) -> None:
    """Nothing outside the root is read: the outside file's own missing import is never reported,
    and an import that reaches outside through a symlink does not count as resolved."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "secret.ts").write_text('import "./outside-only";\n')
    (outside / "dir" / "a.ts").write_text('import "./outside-too";\n')
    root = tmp_path / "root"
    source = source_tree(root, {"index.ts": 'import "./secret";\n'})
    (source / "secret.ts").symlink_to(outside / "secret.ts")
    (source / "ext").symlink_to(outside / "dir")
    (source / "abs.ts").symlink_to("/etc/hostname")
    code, doc = run_guard(root)
    assert (code, doc["degradedReason"], doc["scanned"]) == (1, "unreadable-path", 1)
    assert unreadable(doc) == [(f"{SRC}/abs.ts", "symlink-outside-root"), (f"{SRC}/ext", "symlink-outside-root"),
                               (f"{SRC}/secret.ts", "symlink-outside-root")]
    assert missing(doc) == [(f"{SRC}/index.ts", "./secret")]


def test_issue9_G1_source_dir_symlinked_out_of_the_root_is_degraded(tmp_path: Path) -> None:
    elsewhere = source_tree(tmp_path / "elsewhere", {"index.ts": "export {};\n"})
    root = tmp_path / "root"
    (root / CODE_QUEUE_SOURCE).parent.mkdir(parents=True)
    (root / CODE_QUEUE_SOURCE).symlink_to(elsewhere)
    code, doc = run_guard(root)
    assert (code, doc["degradedReason"], doc["scanned"]) == (1, "unreadable-path", 0)
    assert unreadable(doc) == [(SRC, "symlink-outside-root")]


@pytest.mark.parametrize("specifier", [
    pytest.param("./" + "a" * 300, id="300-char-name"),  # ENAMETOOLONG: one component over NAME_MAX
    pytest.param("./" + ("b" * 200 + "/") * 25 + "c", id="5000-char-path"),  # ENAMETOOLONG: over PATH_MAX
    pytest.param("./nul\\0byte", id="nul-in-specifier"),
])
def test_issue9_G1_impossible_specifier_is_a_missing_import(tmp_path: Path, specifier: str) -> None:
    source_tree(tmp_path, {"index.ts": f'import {{ x }} from "{specifier}";\n'})
    code, doc = run_guard(tmp_path)
    assert (code, doc["degradedReason"], doc["unreadable"]) == (1, "missing-relative-import-target", [])
    assert [m["importer"] for m in doc["missing"]] == [f"{SRC}/index.ts"]


def test_issue9_G1_600_nested_template_literals(tmp_path: Path) -> None:
    """Was RecursionError in _template_end/_expression_end; the import after the nesting is still found,
    and an import written inside the templates is still not one."""
    nested = "`${" * 600 + "`import './inside'`" + "}`" * 600
    source_tree(tmp_path, {"index.ts": f"const t = {nested};\nimport './after';\n"})
    code, doc = run_guard(tmp_path)
    assert (code, doc["degradedReason"], doc["scanned"]) == (1, "missing-relative-import-target", 1)
    assert missing(doc) == [(f"{SRC}/index.ts", "./after")]
    assert relative_specifiers("`${" * 100_000) == []  # unterminated and deep: ends at the end of the text


def test_issue9_G1_non_utf8_content_is_degraded_and_still_scanned(tmp_path: Path) -> None:
    source = source_tree(tmp_path, {"index.ts": b'import "./a";\n// caf\xe9 \xff\xfe\nimport "./b";\n',
                                    "a.ts": "export {};\n"})
    (Path(os.fsdecode(os.fsencode(source) + b"/\xff.ts"))).write_text('import "./c";\n')  # a non-UTF-8 name
    code, doc = run_guard(tmp_path)
    assert (code, doc["degradedReason"], doc["scanned"]) == (1, "unreadable-path", 3)
    assert unreadable(doc) == [(f"{SRC}/index.ts", "not-utf-8")]
    assert missing(doc) == [(f"{SRC}/index.ts", "./b"), (f"{SRC}/\\xff.ts", "./c")]


def test_issue9_G1_fifo_named_ts_is_never_opened(tmp_path: Path) -> None:
    """Opening a FIFO for reading blocks until a writer comes; the guard must not open it at all."""
    source = source_tree(tmp_path, {"index.ts": "export {};\n"})
    os.mkfifo(source / "x.ts")
    code, doc = run_guard(tmp_path, timeout=30)
    assert (code, doc["degradedReason"], doc["scanned"]) == (1, "unreadable-path", 1)
    assert unreadable(doc) == [(f"{SRC}/x.ts", "not-a-regular-file")]


def test_issue9_G1_huge_file_is_not_read_past_the_cap(tmp_path: Path) -> None:
    source = source_tree(tmp_path, {"index.ts": "export {};\n", "at-cap.ts": "/" * 2 + " " * (MAX_FILE_BYTES - 2)})
    with (source / "huge.ts").open("wb") as huge:
        huge.truncate(64 * 1024 * 1024)  # sparse: 64 MiB to the reader, nothing on disk
    code, doc = run_guard(tmp_path)
    assert (code, doc["degradedReason"], doc["scanned"]) == (1, "unreadable-path", 2)
    assert unreadable(doc) == [(f"{SRC}/huge.ts", "file-too-large")]


@pytest.mark.parametrize("unit", [
    pytest.param("(/[", id="unclosed-regex-classes"),
    pytest.param("import { a, ", id="unclosed-import-clauses"),
    pytest.param("export { ", id="nested-export-braces"),
    pytest.param("'", id="unterminated-strings"),
    pytest.param("/*", id="unclosed-comment"),
])
def test_issue9_G1_adversarial_file_at_the_cap_scans_in_linear_time(unit: str) -> None:
    """A file of one repeated fragment, just under the cap, must not take quadratic time."""
    text = unit * (MAX_FILE_BYTES // len(unit) - 1)
    started = time.monotonic()
    relative_specifiers(text)
    assert time.monotonic() - started < 15


def test_issue9_G1_typed_result_for_the_apply_path(tmp_path: Path) -> None:
    """The apply path's caller (providers.k3s_native) reads GuardResult: it sees the new reason too."""
    source = source_tree(tmp_path, {"index.ts": "export {};\n"})
    (source / "loop.ts").symlink_to("loop.ts")
    result = check_code_queue_source(tmp_path)
    assert not result.ok and result.degraded_reason is DegradedReason.UNREADABLE_PATH
    assert result.unreadable == (UnreadablePath(f"{SRC}/loop.ts", "symlink-loop"),)
    assert result.scanned == 1 and result.missing == ()


def test_issue9_G1_import_climbing_out_of_the_root_is_missing(tmp_path: Path) -> None:
    """`../` past the root names a file the Pod's /app mount does not hold, even when it exists here."""
    (tmp_path / "beside.ts").write_text("export {};\n")
    root = tmp_path / "root"
    depth = len(CODE_QUEUE_SOURCE.parts) + 1
    source_tree(root, {"index.ts": f'import "./{"../" * depth}beside";\n'})
    code, doc = run_guard(root)
    assert (code, doc["degradedReason"], doc["unreadable"]) == (1, "missing-relative-import-target", [])
    assert [m["target"] for m in doc["missing"]] == ["../beside.ts"]


def test_issue9_G1_root_with_a_nul_byte_is_source_root_missing() -> None:
    """The apply path takes the root from a plan file, which may hold any string."""
    result = check_code_queue_source(Path("/tmp/a\0b"))
    assert result.degraded_reason is DegradedReason.SOURCE_ROOT_MISSING
