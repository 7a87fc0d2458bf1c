"""The input kinds of issue 9, each a hypothesis strategy of `Case`s and a `prepare` that writes
one case into its example directory and says what to run and what must not be believed.

Kinds: deploy.json, config.json, CI.json (the sample's documents with wrong types at every path
and raw damage), manifest (k8s YAML), ts-tree (`guard code-queue-source`), plan (tampered: no
recomputed digest) and plan+digest (recomputed, so the content reaches the renderers), state
(`UDEPLOY_STATE_DIR` files), cli (option values and paths).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import yaml
from hypothesis import strategies as st

from tests.fuzz import hostile as h
from tests.fuzz.harness import MARK, Prepared, Run, Workspace
from tests.sample_repo import FIXTURE

K3S = Path("src/components/microservices/k3sctl-adapter/k3s")
MANIFESTS = sorted(p.relative_to(FIXTURE) for p in (FIXTURE / K3S).rglob("*.yaml"))
FOUNDATION = K3S / "dev" / "unidesk-dev-foundation.k8s.yaml"
CODE_QUEUE_SRC = Path("src/components/microservices/code-queue/src")
# What Kubernetes accepts as a kind and an apiVersion; anything else must not pass validation.
SCRIPT_PAYLOADS = tuple(b for b in h.RENDER_BREAKERS if "<script" in b)  # hostile strings that carry a script
KIND_RE = re.compile(r"^[A-Z][A-Za-z0-9]{0,62}$")
API_VERSION_RE = re.compile(r"^([a-z0-9]([a-z0-9.-]*[a-z0-9])?/)?v[0-9]+((alpha|beta)[0-9]+)?$")


@attrs.frozen
class Case:
    kind: str
    command: str  # for the tally: "plan", "show --format text", ...
    spec: tuple[Any, ...]


Prepare = Callable[[Case, Workspace, Path], Prepared]


def _json_out(fmt: str, command: str = "show") -> bool:
    """Whether stdout must be JSON: `show --format markdown` is JSON when stdout is no terminal, as here."""
    return fmt not in ("text", "dot", "svg", "html") and not (command == "plan" and fmt == "markdown")


def _entry(path: Path, what: Any) -> None:
    """Write one file-system entry: bytes, or a hostile kind of entry."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_symlink() or path.exists():
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
    if isinstance(what, bytes):
        path.write_bytes(what)
    elif what == "dir":
        path.mkdir()
    elif what == "fifo":
        os.mkfifo(path)
    elif what == "loop":
        path.symlink_to(path.name)
    elif what == "dangling":
        path.symlink_to(f"missing-{path.name}")
    elif what == "missing":
        pass
    else:
        raise ValueError(what)


ENTRY_KINDS = st.sampled_from(["dir", "fifo", "loop", "dangling", "missing"])


# --- deploy.json, config.json, CI.json ---------------------------------------------------------------

def _document_case(kind: str) -> st.SearchStrategy[Case]:
    commands = ["plan"] + (["validate --repo"] if kind == "config.json" else [])
    return st.builds(
        lambda cmd, fmt, out, edits, dmg, entry: Case(kind, cmd if cmd != "plan" else f"plan --format {fmt}",
                                                      (cmd, fmt, out, edits, dmg, entry)),
        st.sampled_from(commands), st.sampled_from(["json", "json", "text", "markdown"]), st.booleans(),
        h.edit_lists, h.raw_damage, st.one_of(st.just("file"), st.just("file"), st.just("file"), ENTRY_KINDS))


def _base_repo_files(ws: Workspace, ex: Path) -> None:
    for name, doc in (("deploy.json", ws.deploy_doc), ("config.json", ws.config_doc), ("CI.json", ws.ci_doc)):
        (ex / name).write_text(json.dumps(doc, indent=2))


def prepare_document(case: Case, ws: Workspace, ex: Path) -> Prepared:
    cmd, fmt, out, edits, dmg, entry = case.spec
    base = {"deploy.json": ws.deploy_doc, "config.json": ws.config_doc, "CI.json": ws.ci_doc}[case.kind]
    _base_repo_files(ws, ex)
    if cmd == "validate --repo":
        shutil.copytree(FIXTURE / K3S, ex / K3S)
    doc = h.fill_doc(h.apply_edits(base, edits), str(ws.marker_abs), str(ex))
    _entry(ex / case.kind, h.damage(h.encode_json(doc), dmg) if entry == "file" else entry)
    describe = f"{case.kind} as {entry}, damage={dmg}: {_short(doc)}"
    if cmd == "validate --repo":
        return Prepared(("validate", "--repo", "."), True, describe=describe)
    argv = ["plan", "--file", "deploy.json", "--no-refresh", "--format", fmt] + (["-out", "out.json"] if out else [])
    return Prepared(tuple(argv), _json_out(fmt, "plan"), describe=describe)


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + f"…({len(text)} chars)"


# --- k8s manifests -------------------------------------------------------------------------------

# Inside a real object, so it gets past "is this a Kubernetes object" to the rules and the schema check.
BILLION_LAUGHS = ("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n"
                  "  a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n") + "".join(
    f"  {c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True))
WHOLE_YAML = {
    "billion-laughs": BILLION_LAUGHS,
    "many-documents": "".join(f"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x{i}}}\n"
                              for i in range(10_000)),
    "binary": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nbinaryData: {a: !!binary aGVsbG8=}\n"
              "data: {b: !!binary aGk=}\n",
    "timestamps": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: 2024-01-01, creationTimestamp: "
                  "2001-12-14t21:59:43.10-05:00}\ndata: {when: 2001-12-14}\n",
    "recursive-alias": "apiVersion: v1\nkind: ConfigMap\nmetadata: &m {name: x, labels: *m}\n",
    "recursive-list": "apiVersion: v1\nkind: &k [*k]\nmetadata: {name: x}\n",
    "self-alias": "&a {apiVersion: v1, kind: ConfigMap, metadata: {name: x}, data: *a}\n",
    "python-tag": "apiVersion: v1\nkind: !!python/object/apply:os.system ['touch %MARK%']\nmetadata: {name: x}\n",
    "deep": "[" * 100_000,
    "deep-map": "a: " * 5_000 + "1\n",
    "bigint": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\nspec: {replicas: " + "1" * 4301 + "}\n",
    "scalar": "42\n",
    "list": "- a\n- b\n",
    "null-docs": "---\n~\n---\n",
    "merge-keys": "apiVersion: v1\nkind: ConfigMap\n<<: {kind: [x]}\nmetadata: {name: x}\n",
    "duplicate-keys": "apiVersion: v1\nkind: ConfigMap\nkind: Secret\nmetadata: {name: x}\n",
    "tabs": "apiVersion: v1\n\tkind: ConfigMap\n",
}
# Targeted edits the generic ones rarely hit: kind/apiVersion traversal, kind as list, ports: 5, the D5 script.
TWEAKS = st.one_of(
    st.none(),
    st.tuples(st.just("kind"), st.sampled_from(["TRAVERSAL", ["Deployment"], "../../x", "Deployment/../../x",
                                                "", 5, None, "deployment", "a" * 300])),
    st.tuples(st.just("apiVersion"), st.sampled_from(["a/b/c", "../../x", "apps/v1/../../x", "", "v1/", 5,
                                                      ["v1"], "/v1"])),
    st.tuples(st.just("ports"), st.sampled_from([5, "5", [5], [{"port": "x"}], None, {"port": 80}])),
    st.tuples(st.just("db-guard"), st.sampled_from([
        "touch %MARK%\n", f"touch {MARK}-rel\nexit 0\n", "sleep 30\n", "id -un > %MARK%\n",
        "#!/bin/sh\ncase \"$DATABASE_URL\" in *unidesk_dev) exit 0;; *) exit 1;; esac\n",
        "yes > /dev/null\n"])),
)


def _manifest_case() -> st.SearchStrategy[Case]:
    return st.builds(
        lambda which, cmd, edits, tweak, whole, dmg, name_it: Case(
            "manifest", cmd, (which, cmd, edits, tweak, whole, dmg, name_it)),
        st.integers(0, len(MANIFESTS) - 1), st.sampled_from(["validate --manifest", "validate --repo"]),
        st.one_of(st.just([]), h.edit_lists), TWEAKS,
        st.one_of(st.none(), st.none(), st.none(), st.sampled_from(sorted(WHOLE_YAML))), h.raw_damage,
        st.sampled_from(["same", "same", "other-name.yaml"]))


def _tweak(docs: list[Any], tweak: Any, ex: Path) -> None:
    objects = [d for d in docs if isinstance(d, dict)]
    if tweak is None or not objects:
        return
    field, value = tweak
    if field == "kind" and value == "TRAVERSAL":
        # kubernetes-validate opens <schemas>/<dir>/<kind>-<apiVersion>.json: point it at a planted schema.
        (ex / "evil-v1.json").write_text(json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema",
                                                     "$id": "https://evil.invalid/evil-v1.json", "type": "object"}))
        value = "../" * 16 + str(ex).lstrip("/").lower() + "/evil"
        objects[0]["apiVersion"] = "v1"
    if field in ("kind", "apiVersion"):
        objects[0][field] = value
    elif field == "ports":
        target = next((o for o in objects if o.get("kind") == "Service"), objects[0])
        target.setdefault("spec", {})
        if isinstance(target["spec"], dict):
            target["spec"]["ports"] = value
    elif field == "db-guard":
        cm = next((o for o in objects if isinstance(o.get("metadata"), dict)
                   and o["metadata"].get("name") == "unidesk-dev-db-guard"), None)
        if cm is not None and isinstance(cm.get("data"), dict):
            cm["data"]["db-guard.sh"] = value


def _not_kubernetes(docs: list[Any]) -> bool:
    return any(isinstance(d, dict) and not (isinstance(d.get("kind"), str) and KIND_RE.match(d["kind"])
                                            and isinstance(d.get("apiVersion"), str)
                                            and API_VERSION_RE.match(d["apiVersion"])) for d in docs)


def prepare_manifest(case: Case, ws: Workspace, ex: Path) -> Prepared:
    which, cmd, edits, tweak, whole, dmg, name_it = case.spec
    if tweak is not None and tweak[0] == "db-guard":  # the D5 script lives in the foundation manifest
        which, name_it = MANIFESTS.index(FOUNDATION), "same"
    rel = MANIFESTS[which] if name_it == "same" else MANIFESTS[which].parent / name_it
    docs = [d for d in yaml.safe_load_all((FIXTURE / MANIFESTS[which]).read_text()) if d is not None]
    if edits:
        docs = h.apply_edits(docs, edits, keep_root=True)
        docs = docs if isinstance(docs, list) else [docs]
    _tweak(docs, tweak, ex)
    docs = h.fill_doc(docs, str(ws.marker_abs), str(ex))
    if whole is not None:
        data = h.fill(WHOLE_YAML[whole], str(ws.marker_abs), str(ex)).encode()
        docs = []
    else:
        data = h.damage(h.encode_yaml(docs), dmg)
    if cmd == "validate --repo":
        shutil.copytree(FIXTURE / K3S, ex / K3S)
        config = json.loads(json.dumps(ws.config_doc).replace(str(MANIFESTS[which]), str(rel)))
        (ex / "config.json").write_text(json.dumps(config))
        argv: tuple[str, ...] = ("validate", "--repo", ".")
    else:
        argv = ("validate", "--manifest", str(rel))
    _entry(ex / rel, data)
    hostile_kind = whole is None and dmg is None and _not_kubernetes(docs)

    def believe(run: Run) -> str | None:
        if hostile_kind and run.exit_code == 0:
            return "a kind/apiVersion outside the Kubernetes grammar passed validation (ok: true)"
        return None

    return Prepared(argv, True, believe=believe,
                    describe=f"{rel} whole={whole} tweak={tweak} edits={_short(edits)} damage={dmg}")


# --- the TypeScript tree -------------------------------------------------------------------------

TS_CONTENT = st.one_of(
    st.sampled_from([
        'import x from "./' + "a" * 300 + '";\n',
        'import x from "./' + "a/" * 2000 + 'b";\n',
        "const t = " + "`${" * 600 + "x" + "}`" * 600 + ";\n",
        "const t = " + "(" * 100_000 + ";\n",
        'import x from "../../../../../../../../etc/passwd";\n',
        f'import x from "./$(touch {MARK}-rel)";\n',
        'import x from "./`touch %MARK%`";\n',
        'export * from "./\x00x";\n',
        'import("./' + "\\u{1F600}" * 50 + '");\n',
        "/* unterminated comment\n", "`unterminated template ${\n", '"unterminated string\n',
        'import x from "./a";\n' * 20_000,
        "/[/ ; import x from './regex';\n",
    ]),
    st.text(max_size=200).map(lambda t: t + '\nimport y from "./' + t[:50] + '";\n'),
)
TS_BYTES = st.one_of(TS_CONTENT.map(lambda t: t.encode("utf-8", "surrogatepass")),
                     st.just(b'import x from "./\xff\xfe";\n'), st.binary(max_size=100))
TS_ENTRY = st.one_of(
    st.tuples(st.just("file"), st.sampled_from(["evil", "a" * 240, "-rf", " ", "évil", "x.d"]), TS_BYTES),
    st.tuples(st.sampled_from(["dir", "fifo", "loop", "dangling"]), st.sampled_from(["evil", "sub/deep", "ba d"])),
    st.tuples(st.just("dirloop"), st.sampled_from(["loop", "sub/loop"])),
)
UNREADABLE = {"fifo", "loop", "dangling"}  # a `.ts` the guard cannot read (a directory loop is skipped, fine)


def _ts_case() -> st.SearchStrategy[Case]:
    return st.builds(lambda entries, root: Case("ts-tree", "guard code-queue-source", (tuple(entries), root)),
                     st.lists(TS_ENTRY, min_size=1, max_size=4), st.sampled_from(["tree", "tree", "tree/"]))


def prepare_ts(case: Case, ws: Workspace, ex: Path) -> Prepared:
    entries, root = case.spec
    src = ex / "tree" / CODE_QUEUE_SRC
    shutil.copytree(FIXTURE / CODE_QUEUE_SRC, src)
    made = []  # the entries actually created: a later entry never replaces an earlier one's name
    for entry in entries:
        what, name = entry[0], entry[1]
        path = src / (name if what == "dirloop" else f"{name}.ts")
        if path.is_symlink() or path.exists() or (path.parent.exists() and not path.parent.is_dir()):
            continue  # an earlier entry took this name
        made.append(entry)
        if what == "file":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(entry[2].replace(b"%MARK%", str(ws.marker_abs).encode()))
        elif what == "dirloop":
            path.parent.mkdir(parents=True, exist_ok=True)
            path.symlink_to(".")
        else:
            _entry(path, what)
    unreadable = sorted({e[0] for e in made if e[0] in UNREADABLE})

    def believe(run: Run) -> str | None:
        if unreadable and run.exit_code == 0:
            return f"guard ok although {unreadable} entries are unreadable"
        return None

    return Prepared(("guard", "code-queue-source", "--root", root), True, believe=believe,
                    describe=f"entries={_short([(*e[:2], _short(e[2], 60) if len(e) > 2 else '') for e in entries])}")


# --- plan files ----------------------------------------------------------------------------------

PLAN_TWEAKS = st.one_of(
    st.tuples(st.just("rename-node"), st.integers(0, 2**16), st.sampled_from(h.RENDER_BREAKERS + h.ODD_STRINGS
                                                                             + h.INJECTIONS + h.TRAVERSALS)),
    st.tuples(st.just("service"), st.integers(0, 2**16), st.sampled_from(["id", "reason", "resolvedCommit",
                                                                          "action"]), h.strings),
    st.tuples(st.just("edge"), st.sampled_from(h.RENDER_BREAKERS), st.sampled_from(h.RENDER_BREAKERS)),
)
# Size: rare, since a 100,000-node plan costs seconds to write even before udeploy reads it.
PLAN_SIZE = st.sampled_from([None] * 12 + [("multiply-nodes", 2_000), ("multiply-nodes", 100_000),
                                           ("multiply-services", 20_000)])
PLAN_COMMANDS = st.sampled_from([("show", "json"), ("show", "text"), ("show", "markdown"), ("graph", "dot"),
                                 ("graph", "svg"), ("graph", "html"), ("apply", "--dry-run")])


def _plan_case(kind: str) -> st.SearchStrategy[Case]:
    return st.builds(
        lambda command, edits, tweaks, size, dmg, chars: Case(kind, " ".join(command),
                                                              (command, edits, (*tweaks, *([size] if size else [])),
                                                               dmg, chars)),
        PLAN_COMMANDS, st.one_of(st.just([]), h.edit_lists), st.lists(PLAN_TWEAKS, max_size=2), PLAN_SIZE,
        st.one_of(st.none(), st.none(), st.none(), h.raw_damage), st.sampled_from([None, 1000, 4000, 10**9]))


def _plan_tweak(doc: dict[str, Any], tweak: tuple[Any, ...]) -> None:
    graph = doc.get("graph") if isinstance(doc.get("graph"), dict) else None
    nodes = graph.get("nodes") if graph and isinstance(graph.get("nodes"), list) else None
    edges = graph.get("edges") if graph and isinstance(graph.get("edges"), list) else None
    services = doc.get("services") if isinstance(doc.get("services"), list) else None
    op = tweak[0]
    if op == "rename-node" and nodes and isinstance(nodes[tweak[1] % len(nodes)], dict):
        node = nodes[tweak[1] % len(nodes)]
        old, node["id"] = node.get("id"), tweak[2]
        for e in edges or []:
            if isinstance(e, list):
                e[:] = [tweak[2] if x == old else x for x in e]
    elif op == "service" and services and isinstance(services[tweak[1] % len(services)], dict):
        services[tweak[1] % len(services)][tweak[2]] = tweak[3]
    elif op == "edge" and nodes and edges is not None:
        template = nodes[0] if isinstance(nodes[0], dict) else {}
        nodes += [{**template, "id": tweak[1]}, {**template, "id": tweak[2]}]
        edges.append([tweak[1], tweak[2]])
    elif op == "multiply-nodes" and nodes and isinstance(nodes[0], dict) and edges is not None:
        extra = [{**nodes[0], "id": f"n{i}"} for i in range(tweak[1])]
        nodes += extra
        edges += [[f"n{i}", f"n{i + 1}"] for i in range(tweak[1] - 1)]
    elif op == "multiply-services" and services and isinstance(services[0], dict):
        services += [{**services[0], "id": f"s{i}"} for i in range(tweak[1])]


def plan_digest(doc: dict[str, Any]) -> str:
    """The digest `udeploy plan` would record, over the content as the engine canonicalizes it."""
    from udeploy.engine.plan.planfile import canonical
    try:
        body = canonical(doc)
    except UnicodeEncodeError:  # a lone surrogate: an attacker still hashes the bytes they write
        body = json.dumps({k: v for k, v in doc.items() if k != "digest"}, sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False).encode("utf-8", "surrogatepass")
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _dot_edges(dot: str) -> int:
    """How many `->` the DOT text has outside quoted strings (each is an edge statement)."""
    count, i, quoted = 0, 0, False
    while i < len(dot):
        c = dot[i]
        if quoted:
            if c == "\\":
                i += 1
            elif c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif dot.startswith("->", i):
            count += 1
            i += 1
        i += 1
    return count


def prepare_plan(case: Case, ws: Workspace, ex: Path) -> Prepared:
    (command, option), edits, tweaks, dmg, chars = case.spec
    doc = h.apply_edits(ws.plan_doc, edits) if edits else json.loads(json.dumps(ws.plan_doc))
    for tweak in tweaks:
        if isinstance(doc, dict):
            _plan_tweak(doc, tweak)
    doc = h.fill_doc(doc, str(ws.marker_abs), str(ex))
    redigest = case.kind == "plan+digest"
    if redigest and isinstance(doc, dict):
        doc["digest"] = plan_digest(doc)
    data = h.damage(h.encode_json(doc), dmg)
    (ex / "plan.json").write_bytes(data)
    argv = [command, "plan.json"]
    if command == "apply":
        argv += ["--dry-run", "--state-dir", "state"]
    else:
        argv += ["--format", option] + (["--max-comment-chars", str(chars)] if command == "show" and chars else [])
    changed = data != h.encode_json(ws.plan_doc)  # the same content, whatever its spelling, is the same plan
    edges = doc.get("graph", {}).get("edges") if isinstance(doc, dict) and isinstance(doc.get("graph"), dict) else None

    def believe(run: Run) -> str | None:
        if not redigest and changed and run.exit_code != 4:
            return f"a modified plan without a matching digest got exit {run.exit_code}, not 4"
        if command == "graph" and option == "dot" and run.exit_code == 0 and isinstance(edges, list):
            if _dot_edges(run.stdout) != len(edges):
                return f"dot has {_dot_edges(run.stdout)} edges, the plan {len(edges)}"
        if command == "graph" and option in ("svg", "html") and run.exit_code == 0:
            # svg has no script of its own; the html page has exactly one, its own (pinned by the CSP hash)
            own = 1 if option == "html" else 0
            if run.stdout.count("<script") != own or any(p in run.stdout for p in SCRIPT_PAYLOADS):
                return f"{option} output carries an unescaped <script> from the plan"
        return None

    return Prepared(tuple(argv), _json_out(option) if command != "apply" else True, believe=believe,
                    describe=f"edits={_short(edits)} tweaks={_short(tweaks)} damage={dmg}")


# --- state files ---------------------------------------------------------------------------------

JOB_ID = "20260101T000000Z-abcdef"
STATE_DOC = st.one_of(
    h.values,
    st.fixed_dictionaries({"jobId": st.sampled_from([JOB_ID, 5, None]), "state": st.sampled_from(
        ["running", "succeeded", None, 5, "x"]), "pid": st.sampled_from([1, 0, -1, "x", None, 2**70, 1.5, [1]]),
        "nodes": h.values}),
    st.fixed_dictionaries({"lockId": h.strings, "pid": st.sampled_from([1, 0, -1, "x", None, 2**70, [1], {}]),
                           "host": st.sampled_from(["localhost", os.uname().nodename, 5, None, ["h"]])}),
)
STATE_ENTRY = st.one_of(STATE_DOC.map(lambda d: ("doc", d)), h.raw_damage.filter(bool).map(lambda d: ("raw", d)),
                        ENTRY_KINDS.map(lambda e: ("entry", e)))
STATE_FILES = ["locks/env-dev.lock", "locks/local-manifest.lock", f"jobs/{JOB_ID}/status.json", f"jobs/{JOB_ID}/log",
               f"jobs/{JOB_ID}.launch.json", f"jobs/{JOB_ID}.out", "jobs", "locks"]
STATE_COMMANDS = st.one_of(
    st.tuples(st.just("lock status"), st.sampled_from(["dev", "local-manifest", "prod", "../../x", "", "a" * 300])),
    st.tuples(st.just("job status"), st.sampled_from([JOB_ID, "../../x", "", ".", "..", "a" * 300]),
              st.sampled_from([None, 0, 10, 2**63 - 1, 2**70])),
    st.tuples(st.just("job list")),
)


def _state_case() -> st.SearchStrategy[Case]:
    return st.builds(lambda files, cmd, via_env: Case("state", cmd[0], (tuple(files), cmd, via_env)),
                     st.dictionaries(st.sampled_from(STATE_FILES), STATE_ENTRY, min_size=1, max_size=4)
                     .map(lambda d: sorted(d.items(), key=lambda kv: kv[0].count("/"), reverse=True)),
                     STATE_COMMANDS, st.booleans())


def prepare_state(case: Case, ws: Workspace, ex: Path) -> Prepared:
    files, cmd, via_env = case.spec
    state = ex / "state"
    good = {"jobId": JOB_ID, "state": "succeeded", "pid": 1, "nodes": {}, "startedAt": "x", "finishedAt": "y"}
    (state / "jobs" / JOB_ID).mkdir(parents=True)
    (state / "locks").mkdir()
    (state / "jobs" / JOB_ID / "status.json").write_text(json.dumps(good))
    (state / "jobs" / JOB_ID / "log").write_text("a log line\n")
    for rel, (how, value) in files:
        data = (h.encode_json(h.fill_doc(value, str(ws.marker_abs), str(ex))) if how == "doc"
                else h.damage(json.dumps(good).encode(), value) if how == "raw" else value)
        _entry(state / rel, data)
    argv = case.command.split(" ")
    if cmd[0] == "lock status":
        argv += ["--env", cmd[1]]
    elif cmd[0] == "job status":
        argv += [cmd[1]] + (["--tail-bytes", str(cmd[2])] if cmd[2] is not None else [])
    env = {"UDEPLOY_STATE_DIR": str(state)} if via_env else {}
    if not via_env:
        argv += ["--state-dir", "state"]
    return Prepared(tuple(argv), True, env=env, describe=f"{_short(files, 300)} {cmd}")


# --- CLI arguments -------------------------------------------------------------------------------

PATHS = st.sampled_from(["", "missing/x.json", ".", "adir", "fifo", "NONUTF8", "loop", "dangling", "good",
                         "/dev/null", "-", "--help", "a" * 300, f"../{MARK}-esc"])
OUT_PATHS = st.sampled_from(["", "missing/p.json", ".", "adir", "fifo", "NONUTF8", "loop", "dangling", "/proc/p.json",
                             "a" * 300, "good.out"])
NUMBERS = st.sampled_from(["0", "-1", "1", "999", "1000", str(10**9), str(2**70), "x", "", "1e3", "NaN"])
FORMATS = st.one_of(st.sampled_from(["json", "text", "markdown", "dot", "svg", "html", ""]), h.strings)
CLI_COMMANDS = st.one_of(
    st.tuples(st.just("plan"), PATHS, st.one_of(st.none(), OUT_PATHS), FORMATS, st.lists(h.strings, max_size=2),
              st.one_of(st.none(), NUMBERS), st.one_of(st.none(), h.strings), st.booleans()),
    st.tuples(st.sampled_from(["show", "graph"]), PATHS, FORMATS, st.one_of(st.none(), NUMBERS)),
    st.tuples(st.just("validate"), st.lists(PATHS, max_size=2), st.one_of(st.none(), PATHS)),
    st.tuples(st.just("guard"), PATHS),
    st.tuples(st.just("job status"), h.strings, st.one_of(st.none(), NUMBERS)),
    st.tuples(st.just("lock status"), h.strings),
    # Reads the committed manifests through the file:// mirror and asks the lab registry: only the
    # ref and the checkout path are the caller's to vary (its files would need a commit per example).
    st.tuples(st.just("artifact status"), st.one_of(st.sampled_from(["origin/master", "--upload-pack=touch %MARK%",
                                                                     "-h", "origin/../../x", "HEAD@{1}"]), h.strings),
              st.one_of(st.none(), PATHS)),
)


def _cli_case() -> st.SearchStrategy[Case]:
    return st.builds(lambda cmd: Case("cli", cmd[0], cmd), CLI_COMMANDS)


def _cli_path(name: str, ex: Path, good: Path | None) -> str:
    """Make the named hostile path exist in the example dir; return it as an argument."""
    nonutf8 = os.fsdecode(b"plan-\xff\xfe.json")
    if name == "NONUTF8":
        if good is not None:
            shutil.copy(good, ex / nonutf8)
        return nonutf8
    if name == "good":
        return str(good.relative_to(ex)) if good is not None else "missing.json"
    if name == "adir":
        (ex / "adir").mkdir(exist_ok=True)
    elif name in ("fifo", "loop", "dangling") and not (ex / name).is_symlink() and not (ex / name).exists():
        _entry(ex / name, name)
    return name


def prepare_cli(case: Case, ws: Workspace, ex: Path) -> Prepared:
    spec = case.spec
    _base_repo_files(ws, ex)
    (ex / "plan.json").write_text(json.dumps(ws.plan_doc))
    shutil.copytree(FIXTURE / K3S, ex / K3S)
    mark = str(ws.marker_abs)
    fmt = "json"
    if spec[0] == "plan":
        _, file, out, fmt, services, par, ref, env_mode = spec
        argv = ["plan", "--no-refresh", "--format", h.fill(fmt, mark, str(ex))]
        argv += ["--env", "dev", "--repo", "."] if env_mode else ["--file", _cli_path(file, ex, ex / "deploy.json")]
        argv += ["-out", _cli_path(out, ex, None)] if out is not None else []
        for s in services:
            argv += ["--service", h.fill(s, mark, str(ex))]
        argv += ["--parallelism", par] if par is not None else []
        argv += ["--ref", h.fill(ref, mark, str(ex))] if ref is not None else []
    elif spec[0] in ("show", "graph"):
        _, path, fmt, chars = spec
        argv = [spec[0], _cli_path(path, ex, ex / "plan.json"), "--format", h.fill(fmt, mark, str(ex))]
        argv += ["--max-comment-chars", chars] if chars is not None and spec[0] == "show" else []
    elif spec[0] == "validate":
        _, manifests, repo = spec
        argv = ["validate"]
        for m in manifests:
            argv += ["--manifest", _cli_path(m, ex, ex / FOUNDATION)]
        argv += ["--repo", _cli_path(repo, ex, None) if repo != "good" else "."] if repo is not None else []
    elif spec[0] == "guard":
        argv = ["guard", "code-queue-source", "--root", _cli_path(spec[1], ex, None)]
    elif spec[0] == "job status":
        argv = ["job", "status", h.fill(spec[1], mark, str(ex)), "--state-dir", "state"]
        argv += ["--tail-bytes", spec[2]] if spec[2] is not None else []
    elif spec[0] == "lock status":
        argv = ["lock", "status", "--env", h.fill(spec[1], mark, str(ex)), "--state-dir", "state"]
    else:
        argv = ["artifact", "status", "--ref", h.fill(spec[1], mark, str(ex))]
        argv += ["--repo", _cli_path(spec[2], ex, None) if spec[2] != "good" else "."] if spec[2] is not None else []
    renders_json = not (spec[0] in ("plan", "show") and fmt in ("text",) or spec[0] == "graph" and fmt in
                        ("dot", "svg", "html", "text") or spec[0] == "plan" and fmt == "markdown")
    return Prepared(tuple(argv), renders_json, describe=_short(argv, 300))


# --- the registry ----------------------------------------------------------------------------------

KINDS: dict[str, tuple[st.SearchStrategy[Case], Prepare]] = {
    "deploy.json": (_document_case("deploy.json"), prepare_document),
    "config.json": (_document_case("config.json"), prepare_document),
    "CI.json": (_document_case("CI.json"), prepare_document),
    "manifest": (_manifest_case(), prepare_manifest),
    "ts-tree": (_ts_case(), prepare_ts),
    "plan": (_plan_case("plan"), prepare_plan),
    "plan+digest": (_plan_case("plan+digest"), prepare_plan),
    "state": (_state_case(), prepare_state),
    "cli": (_cli_case(), prepare_cli),
}


# --- explicit examples: every item issue 9 names runs in every session, whatever the example count ---

SVC0 = ("environments", "dev", "services", 0)


def _doc(kind: str, path: tuple[Any, ...], value: Any, cmd: str = "plan", entry: str = "file",
         dmg: Any = None) -> Case:
    edits = [("set", path, value, "")] if path is not None else []
    return Case(kind, cmd if cmd != "plan" else "plan --format json", (cmd, "json", False, edits, dmg, entry))


def _manifest(tweak: Any = None, whole: str | None = None, name: str = "other-name.yaml", which: int = 0) -> Case:
    return Case("manifest", "validate --manifest", (which, "validate --manifest", [], tweak, whole, None, name))


def _plan(kind: str, command: tuple[str, str], tweaks: tuple[Any, ...] = (), edits: Any = (), dmg: Any = None) -> Case:
    return Case(kind, " ".join(command), (command, list(edits), tweaks, dmg, None))


def _state(rel: str, how: str, value: Any, cmd: tuple[Any, ...]) -> Case:
    return Case("state", cmd[0], (((rel, (how, value)),), cmd, True))


def _cli_plan(file: str, out: str | None = None) -> Case:
    return Case("cli", "plan", ("plan", file, out, "json", [], None, None, False))


EXPLICIT: dict[str, list[Case]] = {
    "deploy.json": [_doc("deploy.json", (), "RAW:deep"), _doc("deploy.json", ("schemaVersion",), "RAW:bigint"),
                    _doc("deploy.json", (*SVC0, "id"), "\ud800"), _doc("deploy.json", (*SVC0, "id"), "RAW:badutf8"),
                    _doc("deploy.json", (*SVC0, "repo"), "ext::sh -c touch% %MARK%"),
                    _doc("deploy.json", (*SVC0, "commitId"), "$(touch %MARK%)"),
                    _doc("deploy.json", None, None, entry="fifo")],
    "config.json": [_doc("config.json", (), "RAW:deep"), _doc("config.json", None, None, entry="dir"),
                    _doc("config.json", None, None, entry="loop"),
                    _doc("config.json", ("environments", "dev"), "x", cmd="validate --repo")],
    "CI.json": [_doc("CI.json", ("artifacts", 0, "id"), ["backend-core"]),
                _doc("CI.json", ("artifacts", 15, "services"), None), _doc("CI.json", (), "RAW:bigint"),
                _doc("CI.json", None, None, entry="dir"), _doc("CI.json", None, None, entry="loop")],
    "manifest": [_manifest(("kind", "TRAVERSAL")), _manifest(("apiVersion", "a/b/c")),
                 _manifest(("kind", ["Deployment"])), _manifest(("ports", 5), which=MANIFESTS.index(
                     K3S / "claudeqq.k8s.yaml")),
                 _manifest(("db-guard", "touch %MARK%\n"), name="same"),
                 _manifest(("db-guard", "sleep 30\n"), name="same"),
                 *(_manifest(whole=w) for w in ("billion-laughs", "many-documents", "binary", "timestamps",
                                                "recursive-alias", "recursive-list", "python-tag", "deep", "bigint"))],
    "ts-tree": [Case("ts-tree", "guard code-queue-source", ((entry,), "tree")) for entry in (
        ("dir", "evil"), ("dangling", "evil"), ("loop", "evil"), ("fifo", "evil"),
        ("file", "evil", ('import x from "./' + "a" * 300 + '";\n').encode()),
        ("file", "evil", ("const t = " + "`${" * 600 + "x" + "}`" * 600 + ";\n").encode()))],
    "plan": [_plan("plan", c, edits=[("set", ("services", 0, "reason"), "\ud800", "")]) for c in
             (("show", "json"), ("graph", "dot"), ("apply", "--dry-run"))]
            + [_plan("plan", ("show", "text"), dmg=("latin1",)),
               _plan("plan", ("graph", "svg"), dmg=("replace", "deep"))],
    "plan+digest": [_plan("plan+digest", c, tweaks=(("rename-node", 0, 'a" -> "pwn'),)) for c in
                    (("graph", "dot"), ("graph", "svg"), ("graph", "html"), ("show", "text"), ("show", "markdown"))]
                   + [_plan("plan+digest", ("graph", "html"),
                            tweaks=(("rename-node", 1, "<script>alert(1)</script>"),)),
                      _plan("plan+digest", ("show", "json"), edits=[("set", ("services", 0, "reason"), "\ud800", "")]),
                      _plan("plan+digest", ("graph", "html"), tweaks=(("multiply-nodes", 100_000),)),
                      Case("plan+digest", "show markdown", (("show", "markdown"), [], (("multiply-services", 20_000),),
                                                             None, 1000)),
                      _plan("plan+digest", ("apply", "--dry-run"), tweaks=(("rename-node", 0, f"../../{MARK}-esc"),))],
    "state": [_state("locks/env-dev.lock", "doc", [1], ("lock status", "dev")),
              _state("locks/env-dev.lock", "doc", {"pid": "x", "host": os.uname().nodename}, ("lock status", "dev")),
              _state(f"jobs/{JOB_ID}/status.json", "doc", {"state": "running", "pid": "x"},
                     ("job status", JOB_ID, None)),
              _state(f"jobs/{JOB_ID}/status.json", "raw", ("replace", "badutf8"), ("job status", JOB_ID, None)),
              _state(f"jobs/{JOB_ID}/log", "entry", "missing", ("job status", JOB_ID, None)),
              _state(f"jobs/{JOB_ID}/status.json", "doc", [1], ("job list",))],
    "cli": [_cli_plan("fifo"), _cli_plan("NONUTF8"), _cli_plan("good", "missing/p.json"), _cli_plan("good", "adir"),
            _cli_plan("good", ""), _cli_plan("adir"), Case("cli", "show", ("show", "NONUTF8", "json", None)),
            Case("cli", "guard", ("guard", "missing/x.json")),
            Case("cli", "artifact status", ("artifact status", "--upload-pack=touch %MARK%", None))],
}
