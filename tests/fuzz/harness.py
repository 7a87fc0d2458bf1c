"""The fuzz harness's engine: one hostile example -> one CLI run in a forked child -> the invariants.

Why a forked child per example, not in-process with `signal.alarm`:

- a hang must be *detected and survived*: a FIFO opened as `--file` blocks in `open()`, a guard
  script may `sleep`; SIGALRM cannot interrupt every blocking C call, and after it fires the
  process may hold half-updated global state. The parent kills the child's whole process group
  (the child's `sh`, `git`, `dot` included) at the deadline and records a hang with the input;
- global state cannot leak between examples (cwd, environment, caches, `sys.setrecursionlimit`,
  a `RecursionError` that left the interpreter short of stack, a `MemoryError`);
- `os.fork()` after every import is cheap (~6 ms per example here, fork to result): the child
  inherits the imported engine, typer and the session's workspace, so nothing is re-imported and
  no interpreter starts (a `udeploy job list` example takes ~25 ms in all).

Inside the child the CLI runs in-process through the console script's own entry point,
`udeploy.engine.cli.main()` with `sys.argv` set, writing to real file descriptors (files beside the
example). Not typer's `CliRunner` on `udeploy.engine.cli.app`: that bypasses `main()`, where click's usage
errors become the JSON usage error with exit 1, so every usage error would show as exit 2 with an
empty stdout (a failure the shipped `udeploy` does not have), and its in-memory stdout accepts
what a real UTF-8 stdout refuses (a lone surrogate). An exception escaping `main()` is caught in
the child and reported as "uncaught" (the `catch_exceptions=False` of tests/conftest.py). The
child writes its exit code to a file and `_exit`s; the parent reads stdout/stderr, checks the
invariants (`check`) and tallies them (`Tally`).

Invariants for every example (issue 9, "Done when"):
- exit code in 0..4;
- stdout is exactly one JSON document when the command was asked for JSON or exited non-zero
  (a text/markdown/dot/svg/html rendering with exit 0 is that rendering);
- no `Traceback` on stderr, no `internal-error` code, no exception escaping the CLI;
- no hang (a per-example time limit);
- no injection reaching a shell or leaving its directory: no file whose name carries the
  harness's marker token anywhere it could land (the example dir, the session root, /tmp, the
  absolute marker path the payloads name), and nothing new in the directories around the
  example (the session root, the sample clone);
- what an example says it must not be believed (a tampered plan accepted, a traversal `kind`
  passing validation, an edge in the DOT that the plan does not have, a guard that is `ok`
  although it could not read a `.ts` file) is counted as "believed".
"""

from __future__ import annotations

import faulthandler
import io
import json
import os
import resource
import select
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs

MARK = "UDFUZZ"  # every injection payload creates a file whose name contains this token
TIME_LIMIT = float(os.environ.get("UDEPLOY_FUZZ_TIME_LIMIT", "20"))
# Address-space cap per example: a billion-laughs expansion fails fast with MemoryError instead of
# eating the shared machine's memory until the time limit.
MEMORY_LIMIT = int(os.environ.get("UDEPLOY_FUZZ_MEMORY_MB", "4096")) * 2**20
# Most severe first: a failure is listed once, under the first category it broke (all are counted).
CATEGORIES = ("injection", "escape", "believed", "hang", "uncaught", "bad-exit", "non-json", "internal-error",
              "traceback")


@attrs.frozen
class Run:
    """What one example produced: the CLI's answer, or a hang."""

    exit_code: int | None
    stdout: str
    stderr: str
    uncaught: str | None = None  # a traceback that escaped `udeploy.engine.cli.main()`, or how the process died
    hung: bool = False
    seconds: float = 0.0
    stdout_utf8: bool = True


@attrs.frozen
class Prepared:
    """An example made concrete in its own directory: what to run and what it must not do."""

    argv: tuple[str, ...]
    renders_json: bool  # asked for JSON (or a command that only speaks JSON)
    env: dict[str, str] = attrs.field(factory=dict)
    believe: Callable[[Run], str | None] | None = None  # returns a reason when the answer believed hostile input
    describe: str = ""  # the hostile input, short, for the report


@attrs.define
class Workspace:
    """One per session: the sample checkout (real git, file:// origin), its mirror cache, a real plan."""

    root: Path
    clone: Path
    gitdir: Path
    env: dict[str, str]
    plan_doc: dict[str, Any]
    deploy_doc: dict[str, Any]
    config_doc: dict[str, Any]
    ci_doc: dict[str, Any]
    examples: Path
    counter: int = 0

    @property
    def marker_abs(self) -> Path:
        return self.root / f"{MARK}-ABS"

    def new_example_dir(self) -> Path:
        self.counter += 1
        path = self.examples / f"ex{self.counter}"
        path.mkdir()
        # A `.git` file makes the example dir a work tree of the sample's repository (read-only use):
        # `--file` mode finds its checkout (origin URL, config.json, CI.json) here without a copy of git.
        (path / ".git").write_text(f"gitdir: {self.gitdir}\n")
        return path


def make_workspace(root: Path) -> Workspace:
    """Materialize the sample once, warm its mirror cache, and write a real plan with `plan -out`."""
    from typer.testing import CliRunner

    from tests.sample_repo import materialize
    from udeploy.engine.cli import app

    root = root.resolve()
    sample = materialize(root / "sample")
    env = {**sample.env, "UDEPLOY_CACHE_DIR": str(root / "cache")}
    deploy = sample.deploy_json()
    deploy["environments"] = {"dev": deploy["environments"]["dev"]}  # local mode needs one environment
    base = root / "base"
    base.mkdir()
    (base / "deploy.json").write_text(json.dumps(deploy, indent=2))
    old, saved = Path.cwd(), dict(os.environ)
    os.chdir(sample.clone)
    os.environ.update(env)
    try:
        result = CliRunner().invoke(app, ["plan", "--file", str(base / "deploy.json"), "--no-refresh",
                                          "-out", str(base / "plan.json")], catch_exceptions=False)
    finally:
        os.chdir(old)
        os.environ.clear()
        os.environ.update(saved)
    if result.exit_code != 0:
        raise RuntimeError(f"the sample plan failed: {result.stdout}{result.stderr}")
    examples = root / "examples"
    examples.mkdir()
    return Workspace(root=root, clone=sample.clone, gitdir=sample.clone / ".git", env=env,
                     plan_doc=json.loads((base / "plan.json").read_text()), deploy_doc=deploy,
                     config_doc=json.loads((sample.clone / "config.json").read_text()),
                     ci_doc=json.loads((sample.clone / "CI.json").read_text()), examples=examples)


# --- running one example ---------------------------------------------------------------------------

Invoke = Callable[[tuple[str, ...]], int]
SIDE_FILES = (".result.json", ".stdout", ".stderr")  # beside each example dir, written by its child


def invoke_console_script(argv: tuple[str, ...]) -> int:
    """`udeploy ARGV` as the console script runs it; an exception escaping `main()` propagates."""
    from udeploy.engine.cli import main
    sys.argv = ["udeploy", *argv]
    try:
        main()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
    return 0


def run_forked(argv: tuple[str, ...], cwd: Path, env: dict[str, str], limit: float = TIME_LIMIT,
               invoke: Invoke = invoke_console_script) -> Run:
    side = {s: cwd.parent / f"{cwd.name}{s}" for s in SIDE_FILES}
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:  # the child: never returns
        _child(invoke, argv, cwd, env, side)
    status = _wait(pid, limit)
    seconds = time.monotonic() - started
    try:
        raw_out = side[".stdout"].read_bytes() if side[".stdout"].exists() else b""
        stderr = side[".stderr"].read_bytes().decode("utf-8", "replace") if side[".stderr"].exists() else ""
        doc = json.loads(side[".result.json"].read_text()) if status is not None else None
    except (OSError, ValueError):
        doc = None
    finally:
        for path in side.values():
            path.unlink(missing_ok=True)
    if status is None:
        return Run(None, "", "", hung=True, seconds=seconds)
    try:
        stdout, utf8 = raw_out.decode("utf-8"), True
    except UnicodeDecodeError:
        stdout, utf8 = raw_out.decode("utf-8", "replace"), False
    if doc is None:
        how = (f"killed by {signal.Signals(os.WTERMSIG(status)).name}" if os.WIFSIGNALED(status)
               else f"exit status {os.waitstatus_to_exitcode(status)}")
        frames = [line.strip() for line in stderr.splitlines() if line.strip().startswith("File ")]
        frame = next((f for f in frames if "/engine/" in f or "/providers/" in f), frames[0] if frames else "")
        return Run(None, stdout, stderr, uncaught=f"the process died without an answer: {how} {frame}".strip(),
                   seconds=seconds)
    return Run(doc["exit_code"], stdout, stderr, doc["uncaught"], seconds=seconds, stdout_utf8=utf8)


def _wait(pid: int, limit: float) -> int | None:
    """The child's wait status within `limit` seconds; else kill its process group and return None."""
    fd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([fd], [], [], limit)
    finally:
        os.close(fd)
    if not ready:
        for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
            try:
                target()
            except ProcessLookupError:
                pass
        os.waitpid(pid, 0)
        return None
    return os.waitpid(pid, 0)[1]


def _child(invoke: Invoke, argv: tuple[str, ...], cwd: Path, env: dict[str, str], side: dict[str, Path]) -> None:
    code = 0
    try:
        os.setpgid(0, 0)  # the parent kills this group, with any sh/git/dot it started, on a hang
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        # Real descriptors 1 and 2 (so `git`/`sh`/`dot` children write there too), and sys.stdout /
        # sys.stderr as a UTF-8 console has them (pytest may have replaced the parent's).
        for fd, name, errors in ((1, ".stdout", "strict"), (2, ".stderr", "backslashreplace")):
            os.dup2(os.open(side[name], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), fd)
            stream = io.TextIOWrapper(io.FileIO(fd, "w", closefd=False), encoding="utf-8", errors=errors,
                                      write_through=True)
            setattr(sys, name[1:], stream)
        faulthandler.enable(sys.stderr)  # a segfault names its Python frame in the example's stderr, not pytest's
        os.chdir(cwd)
        os.environ.update(env)
        tempfile.tempdir = None
        uncaught = None
        try:
            exit_code = invoke(argv)
        except BaseException:  # noqa: BLE001 - exactly what the harness is looking for
            exit_code, uncaught = None, traceback.format_exc()
        side[".result.json"].write_text(json.dumps({"exit_code": exit_code, "uncaught": uncaught}))
    except BaseException:  # noqa: BLE001 - the harness itself failed in the child: report, never continue
        code = 70
    finally:
        os._exit(code)


# --- the invariants ----------------------------------------------------------------------------------

def check(run: Run, prepared: Prepared) -> list[tuple[str, str]]:
    """(category, detail) for every invariant the run broke."""
    if run.hung:
        return [("hang", f"no answer within {TIME_LIMIT:.0f}s")]
    if run.uncaught is not None:
        return [("uncaught", _last_frame(run.uncaught) if "Traceback" in run.uncaught else run.uncaught)]
    found: list[tuple[str, str]] = []
    if "Traceback" in run.stderr or "Traceback" in run.stdout:
        found.append(("traceback", _last_frame(run.stderr + run.stdout)))
    if run.exit_code not in range(5):
        found.append(("bad-exit", f"exit {run.exit_code}"))
    doc = _one_json(run.stdout)
    # `--help` is eager: click prints the help text and exits 0 whatever else the line says. That is
    # the contract (human text on request), so only a failing `--help` run must still answer in JSON.
    asked_help = "--help" in prepared.argv and run.exit_code == 0
    if (prepared.renders_json or run.exit_code != 0) and not asked_help:
        if doc is _NOT_JSON or not run.stdout_utf8:
            found.append(("non-json", f"exit {run.exit_code}, stdout starts {run.stdout[:80]!r}"))
    if isinstance(doc, dict) and isinstance(doc.get("error"), dict) and doc["error"].get("code") == "internal-error":
        found.append(("internal-error", str(doc["error"].get("message"))[:160]))
    if prepared.believe is not None and not found:
        reason = prepared.believe(run)
        if reason:
            found.append(("believed", reason))
    return found


_NOT_JSON = object()


def _one_json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return _NOT_JSON


def _last_frame(text: str) -> str:
    """The exception line and the innermost frame of a traceback: a failure's signature."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    frames = [line.strip() for line in lines if line.lstrip().startswith('File "')]
    exc = next((line for line in reversed(lines) if not line.startswith((" ", "udeploy:", "{", "}", '"'))), "")
    where = frames[-1].split(", in ")[0].replace('File "', "").replace('", line ', ":") if frames else "?"
    where = where.split("/wt/")[-1].split("site-packages/")[-1]
    return f"{exc[:140]} at {where}"


# --- escape / injection detection ---------------------------------------------------------------------

def surroundings(ws: Workspace) -> set[str]:
    """What exists around an example: the session root, the examples dir and the sample clone."""
    seen = {f"root/{p.name}" for p in ws.root.iterdir()}
    seen |= {f"examples/{p.name}" for p in ws.examples.iterdir() if not p.name.endswith(SIDE_FILES)}
    for dirpath, dirnames, filenames in os.walk(ws.clone):
        if ".git" in Path(dirpath).relative_to(ws.clone).parts[:1]:
            dirnames[:] = []
            continue
        rel = Path(dirpath).relative_to(ws.clone)
        seen |= {f"clone/{rel / n}" for n in dirnames + filenames}
    return seen


def markers(ws: Workspace, example: Path) -> list[str]:
    """Every file an injection payload created: named with MARK, in the places payloads aim at."""
    hits: list[str] = []
    for base in (Path(tempfile.gettempdir()), Path("/tmp"), ws.root, ws.examples, Path.cwd()):
        try:
            hits += [str(p) for p in base.iterdir() if MARK in p.name]
        except OSError:
            pass
    for dirpath, dirnames, filenames in os.walk(example):
        hits += [os.path.join(dirpath, n) for n in dirnames + filenames if MARK in n]
    return sorted(set(hits))


def clean_markers(paths: list[str]) -> None:
    for p in paths:
        path = Path(p)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


# --- the tally -----------------------------------------------------------------------------------

@attrs.define
class Failure:
    kind: str
    command: str
    category: str
    detail: str
    example: str
    count: int = 1


@attrs.define
class Tally:
    examples: Counter[str] = attrs.field(factory=Counter)
    violations: dict[str, Counter[str]] = attrs.field(factory=lambda: defaultdict(Counter))
    distinct: dict[tuple[str, str, str, str], Failure] = attrs.field(factory=dict)
    seconds: Counter[str] = attrs.field(factory=Counter)

    def record(self, kind: str, command: str, found: list[tuple[str, str]], describe: str, seconds: float) -> None:
        self.examples[kind] += 1
        self.seconds[kind] += seconds
        for category, _ in found:
            self.violations[kind][category] += 1
        if not found:
            return
        category, detail = min(found, key=lambda f: CATEGORIES.index(f[0]))
        key = (kind, command, category, _normalize(detail))
        if key in self.distinct:
            self.distinct[key].count += 1
        else:
            self.distinct[key] = Failure(kind, command, category, detail, describe[:300])

    def failures(self, kind: str | None = None) -> list[Failure]:
        return [f for f in self.distinct.values() if kind is None or f.kind == kind]

    def table(self) -> str:
        kinds = sorted(self.examples)
        width = {c: max(len(c), 4) + 1 for c in CATEGORIES}
        head = f"{'input kind':<13}{'examples':>9}{'ex/s':>6}" + "".join(f"{c:>{width[c]}}" for c in CATEGORIES)
        rows = [head, "-" * len(head)]
        for k in [*kinds, "TOTAL"]:
            n = sum(self.examples.values()) if k == "TOTAL" else self.examples[k]
            secs = sum(self.seconds.values()) if k == "TOTAL" else self.seconds[k]
            v = (sum((self.violations[x] for x in kinds), Counter()) if k == "TOTAL" else self.violations[k])
            rows.append(f"{k:<13}{n:>9}{n / secs if secs else 0:>6.1f}"
                        + "".join(f"{v[c]:>{width[c]}}" for c in CATEGORIES))
        total, secs = sum(self.examples.values()), sum(self.seconds.values())
        rows.append(f"{total} examples in {secs:.1f}s: {total / secs if secs else 0:.1f} examples/s "
                    f"(hangs cost the {TIME_LIMIT:.0f}s limit each)")
        rows.append(f"{len(self.distinct)} distinct failures" + (":" if self.distinct else ""))
        for f in sorted(self.distinct.values(), key=lambda f: (f.kind, f.command, f.category, f.detail)):
            rows.append(f"  [{f.kind}] {f.command}: {f.category} x{f.count}: {f.detail}")
            rows.append(f"      e.g. {f.example}")
        return "\n".join(rows)


def _normalize(detail: str) -> str:
    """Group failures that differ only in numbers, paths or quoted values."""
    import re
    detail = re.sub(r"'[^']*'|\"[^\"]*\"", "'…'", detail)
    detail = re.sub(r"/[^\s:]*", "/…", detail)
    return re.sub(r"\d+", "N", detail)[:120]


TALLY = Tally()
