"""Hostile values and document mutations shared by every input kind.

Generated data stays plain (strings, numbers, lists, dicts) so hypothesis can shrink and print
it; what JSON/YAML cannot carry (a 4,301-digit integer, 100,000 `[`, invalid UTF-8) is a
*sentinel* string `RAW:<name>` that `encode_json` / `encode_yaml` replace with raw bytes after
serializing. `%MARK%` (the absolute marker path) and `%EX%` (the example directory) are
placeholders filled in per example, so a payload that runs leaves a file the harness finds.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import yaml
from hypothesis import strategies as st

from tests.fuzz.harness import MARK
from tests.manifest.test_fuzz_manifests import values as deploy_values  # issue 3's deploy.json shapes

INJECTIONS = [
    "; touch %MARK%", "$(touch %MARK%)", "`touch %MARK%`", "| touch %MARK%", "&& touch %MARK%", "\ntouch %MARK%\n",
    "'; touch %MARK%; '", '"; touch %MARK%; "', f"; touch {MARK}-rel", f"$(touch {MARK}-rel)", f"`touch {MARK}-rel`",
]
TRAVERSALS = [f"../../{MARK}-esc", f"../../../../../../../../tmp/{MARK}-esc", f"/tmp/{MARK}-esc", "..", "../",
              f"%EX%/../{MARK}-esc", f"..\\..\\{MARK}-esc", "/", "/etc/passwd"]
# Repo URLs: git's command transports and option smuggling; nothing here resolves to a network host.
REPO_URLS = ["ext::sh -c touch% %MARK%", "ext::sh -c 'touch %MARK%'", "--upload-pack=touch %MARK%",
             "-u touch %MARK%", "ssh://-oProxyCommand=touch%20%MARK%/x", "fd::3", "file:///etc",
             "http://127.0.0.1:1/x", "https://github.com/pikasTech/unidesk;touch %MARK%",
             "https://user:secret@github.com/pikasTech/unidesk", "/etc", "", "git://127.0.0.1:1/x"]
RENDER_BREAKERS = ['a" -> "pwn', '"]; pwn [label="x', 'x\\" -> \\"y', "<script>alert(1)</script>", "]]>",
                   "</svg><script>x</script>", "a|b", "`code`", "\n# heading\n", "\r", "{", "}", "a -> b", "--",
                   "<!--", "&amp;", "\\", "\\l"]
ODD_STRINGS = ["", " ", "\x00", "\ud800", "\udcff", "\u202e", "\ufeff", "a" * 300, "null", "-rf", "--help",
               "0" * 40, "origin/master", "HEAD~1", "@{-1}", "%s%n", "{commit}", "${IFS}", "\u0000RAW", "🚀"]
RAW = {
    "bigint": b"1" * 4301,
    "negbigint": b"-" + b"9" * 5000,
    "bigfloat": b"1e999999",
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "deepopen": b"[" * 100_000,
    "deepobj": b'{"a":' * 50_000 + b"1" + b"}" * 50_000,
    "badutf8": b'"\xff\xfe\xc3("',
    "surrogate": b'"\\ud800"',
    "hugestring": b'"' + b"A" * 2_000_000 + b'"',
}
HOSTILE_STRINGS = INJECTIONS + TRAVERSALS + REPO_URLS + RENDER_BREAKERS + ODD_STRINGS

strings = st.one_of(st.sampled_from(HOSTILE_STRINGS), st.text(max_size=12),
                    st.builds(lambda s, n: s * n, st.sampled_from(["x", "é", "../", "["]),
                              st.sampled_from([1000, 70_000])))
sentinels = st.sampled_from([f"RAW:{k}" for k in RAW])
scalars = st.one_of(st.none(), st.booleans(), st.sampled_from([0, -1, 1, 5, 2**31, 2**63, -(2**64), 10**300]),
                    st.floats(allow_nan=True, allow_infinity=True), strings, sentinels)
values = st.one_of(
    scalars,
    deploy_values,
    st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                  st.dictionaries(strings, inner, max_size=3)), max_leaves=6),
)
keys = st.one_of(st.sampled_from(["id", "kind", "apiVersion", "repo", "commitId", "services", "ports", "name",
                                  "namespace", "metadata", "spec", "image", "environments", "artifacts", "graph"]),
                 strings)
# One edit: ("set"|"del"|"add", which path (modulo the document's path count), value, key for "add").
edits = st.tuples(st.sampled_from(["set", "set", "del", "add"]), st.integers(0, 2**32), values, keys)
edit_lists = st.lists(edits, min_size=1, max_size=3)
# Whole-file damage after serializing: none, or one raw change to the bytes.
raw_damage = st.one_of(
    st.none(), st.none(),
    st.sampled_from([("replace", k) for k in RAW]),
    st.tuples(st.just("truncate"), st.floats(0, 1)),
    st.sampled_from([("bom",), ("empty",), ("nul",), ("latin1",)]),
    st.tuples(st.just("bytes"), st.binary(max_size=64)),
)


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every JSON path in the document, the root first."""
    found = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            found += paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found += paths(v, (*prefix, i))
    return found


def _at(doc: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def apply_edits(doc: Any, edit_list: list[tuple[str, int, Any, Any]], *, keep_root: bool = False) -> Any:
    """The document with each edit applied at the path its index selects (wrong types at every path)."""
    doc = copy.deepcopy(doc)
    for op, index, value, key in edit_list:
        if isinstance(index, tuple):  # an explicit example names its path
            path = index
        else:
            every = paths(doc)
            if keep_root and len(every) > 1:
                every = every[1:]
            path = every[index % len(every)]
        if not path:
            if op == "set":
                doc = copy.deepcopy(value)
            elif op == "add" and isinstance(doc, dict):
                doc[key if isinstance(key, str) else str(key)] = copy.deepcopy(value)
            continue
        parent, last = _at(doc, path[:-1]), path[-1]
        target = parent[last]
        if op == "set":
            parent[last] = copy.deepcopy(value)
        elif op == "del":
            del parent[last]
        elif isinstance(target, dict):
            target[key if isinstance(key, str) else str(key)] = copy.deepcopy(value)
        elif isinstance(target, list):
            target.append(copy.deepcopy(value))
        else:
            parent[last] = [target, copy.deepcopy(value)]
    return doc


def fill(text: str, marker: str, example: str) -> str:
    return text.replace("%MARK%", marker).replace("%EX%", example)


def fill_doc(doc: Any, marker: str, example: str) -> Any:
    if isinstance(doc, str):
        return fill(doc, marker, example)
    if isinstance(doc, list):
        return [fill_doc(v, marker, example) for v in doc]
    if isinstance(doc, dict):
        return {fill_doc(k, marker, example) if isinstance(k, str) else k: fill_doc(v, marker, example)
                for k, v in doc.items()}
    return doc


def encode_json(doc: Any) -> bytes:
    text = json.dumps(doc, ensure_ascii=True, indent=1).encode()
    for name, raw in RAW.items():
        text = text.replace(f'"RAW:{name}"'.encode(), raw)
    return text


def encode_yaml(docs: list[Any]) -> bytes:
    try:
        text = yaml.safe_dump_all(docs, allow_unicode=False, sort_keys=False).encode()
    except (yaml.YAMLError, UnicodeError, ValueError):  # floats/keys PyYAML will not dump: JSON is YAML too
        text = b"\n---\n".join(encode_json(d) for d in docs)
    for name, raw in RAW.items():
        for quoted in (f"RAW:{name}", f"'RAW:{name}'", f'"RAW:{name}"'):
            text = text.replace(quoted.encode(), raw)
    return text


def damage(data: bytes, how: Any) -> bytes:
    if how is None:
        return data
    op = how[0]
    if op == "replace":
        return RAW[how[1]]
    if op == "truncate":
        return data[: int(len(data) * how[1])]
    if op == "bom":
        return b"\xef\xbb\xbf" + data
    if op == "empty":
        return b""
    if op == "nul":
        return data[: len(data) // 2] + b"\x00" + data[len(data) // 2:]
    if op == "latin1":
        return data.decode("utf-8", "replace").encode("latin-1", "replace") + b"\xe9\xff"
    return bytes(how[1])
