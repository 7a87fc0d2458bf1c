"""Issue 9: Kubernetes manifests and the config.json that names them are pull-request content.

Security item 2 (kind/apiVersion become a schema file path), the YAML parser limits, fields the
schemas don't pin (D1-D4, E2 rules over any JSON shape), hostile config.json for `validate --repo`,
and rule sets that follow the objects rather than the file name (D4). Real files, the real CLI.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.validate.support import FIXTURE, K3S, break_manifest, validate
from udeploy.engine.checks.manifest_rules import (
    CHECKS,
    KUBERNETES_VERSION,
    RULE_SETS,
    SCHEMA,
    _schema_problem,
    check_manifest,
    rule_sets_for,
)
from udeploy.engine.errors import ExitCode, InputTooLarge, ManifestInvalid
from udeploy.engine.load.k8s_manifest import MAX_DEPTH, MAX_DOCUMENTS, MAX_NODES, K8sObject, parse_manifest, select

ROOT = Path(__file__).resolve().parents[2]
CONFIGMAP = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: fine, namespace: unidesk-dev}\ndata: {a: b}\n"


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    return Path(shutil.copytree(FIXTURE, tmp_path / "repo"))


def _write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def _read_finding(doc: dict[str, Any]) -> str:
    [manifest] = doc["manifests"]
    [finding] = manifest["findings"]
    assert finding["rule"] == "MANIFEST-READ" and manifest["objects"] == [] and manifest["rules"] == []
    return str(finding["summary"])


# --- security item 2: kind/apiVersion never become a file path ----------------------------------

def test_issue_9_security_2_kind_traversal_to_a_planted_schema_is_refused(tmp_path: Path) -> None:
    """K8S-SCHEMA: `kind: ../../<dir>/evil` would make kubernetes-validate read a planted, permissive
    schema and pass a non-Kubernetes object; udeploy refuses the kind before any library sees it."""
    planted = tmp_path / "planted"
    assert str(planted) == str(planted).lower(), "kubernetes-validate lowercases the kind"
    _write(planted / "evil-v1.json", json.dumps({"$schema": "https://json-schema.org/draft/2020-12/schema",
                                                  "$id": "file:///evil"}))  # accepts anything
    kind = "../" * 40 + str(planted / "evil").lstrip("/")
    hostile = {"apiVersion": "v1", "kind": kind, "metadata": {"name": "x"}, "rm -rf": "/"}
    # The hole is real: the library itself follows the path and accepts the object.
    assert kubernetes_validate.validate(hostile, KUBERNETES_VERSION, strict=True)

    manifest = _write(tmp_path / "evil.yaml", yaml.safe_dump(hostile))
    code, doc = validate("--manifest", str(manifest))
    assert code == 1 and doc["ok"] is False
    assert "is not a Kubernetes kind" in _read_finding(doc)
    # The schema rule refuses it on its own too (defense in depth), without a lookup.
    assert "is not a Kubernetes kind" in str(_schema_problem(json.dumps(hostile)))


@pytest.mark.parametrize("api_version", ["a/b/c", "../v1", "apps/../v1", "apps/v1/", "v1 ", "", "V1", "v0",
                                         "apps/v1beta", "-bad.io/v1", "x" * 254 + "/v1", 5, ["v1"], None])
def test_issue_9_security_2_bad_api_version_is_refused_not_raised(tmp_path: Path, api_version: Any) -> None:
    body = {"apiVersion": api_version, "kind": "ConfigMap", "metadata": {"name": "x"}}
    manifest = _write(tmp_path / "m.yaml", CONFIGMAP + "---\n" + yaml.safe_dump(body))
    with pytest.raises(ManifestInvalid) as err:
        parse_manifest(manifest.read_bytes(), "m.yaml")
    assert err.value.path == "m.yaml[1]" and "apiVersion" in err.value.message
    assert "apiVersion" in str(_schema_problem(json.dumps(body)))
    code, doc = validate("--manifest", str(manifest))
    assert code == 1 and "apiVersion" in _read_finding(doc)


@pytest.mark.parametrize("api_version", ["v1", "apps/v1", "batch/v1", "networking.k8s.io/v1", "policy/v1beta1",
                                         "example.com/v2alpha3"])
def test_issue_9_security_2_kubernetes_api_versions_still_parse(api_version: str) -> None:
    text = f"apiVersion: {api_version}\nkind: ConfigMap\nmetadata: {{name: x}}\n"
    assert parse_manifest(text.encode(), "m.yaml")[0].body["apiVersion"] == api_version


# --- YAML parser limits -------------------------------------------------------------------------

def _billion_laughs() -> bytes:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{x}: &{x} [{','.join([f'*{p}'] * 9)}]" for p, x in zip("abcdefgh", "bcdefghi", strict=True)]
    return ("\n".join(lines) + "\n").encode()


LIMITS: dict[str, tuple[bytes, str]] = {
    "billion-laughs": (_billion_laughs(), f"more than {MAX_NODES} YAML nodes"),
    "10000-documents": (b"---\na: 1\n" * 10_000, f"more than {MAX_DOCUMENTS} YAML documents"),
    "100000-nested-lists": (b"[" * 100_000, f"deeper than {MAX_DEPTH} levels"),
    "deep-through-aliases": (b"a0: &a0 x\n" + b"".join(b"a%d: &a%d [*a%d]\n" % (i + 1, i + 1, i) for i in range(80)),
                             f"deeper than {MAX_DEPTH} levels (through aliases)"),
    "3-MiB-file": (CONFIGMAP.encode() + b"# " + b"x" * (3 << 20) + b"\n", "bytes; manifests are limited to"),
    "5000-digit-integer": (CONFIGMAP.encode() + b"---\nn: " + b"9" * 5000 + b"\n", "integer too long"),
}


@pytest.mark.parametrize("case", list(LIMITS))
def test_issue_9_yaml_limits_refuse_with_input_too_large(tmp_path: Path, case: str) -> None:
    data, message = LIMITS[case]
    with pytest.raises(InputTooLarge) as err:
        parse_manifest(data, "m.yaml")
    assert err.value.code == "input-too-large" and err.value.exit_code == ExitCode.ERROR
    assert message in err.value.message and str(err.value.path).startswith("m.yaml")
    manifest = _write(tmp_path / "m.yaml", data)
    code, doc = validate("--manifest", str(manifest))
    assert code == 1 and "(input-too-large)" in _read_finding(doc)
    assert message in _read_finding(doc) or "limit" in _read_finding(doc)  # the byte cap answers before parsing


def test_issue_9_yaml_deep_nesting_does_not_crash_the_process(tmp_path: Path) -> None:
    """libyaml's C composer segfaults on ~100,000 nested `[`: the depth limit stops it before composing."""
    manifest = _write(tmp_path / "deep.yaml", b"[" * 100_000)
    result = subprocess.run([sys.executable, "-m", "udeploy.engine.cli", "validate", "--manifest", str(manifest)],
                            capture_output=True, text=True, timeout=60, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 1, result.stderr
    assert "(input-too-large)" in _read_finding(json.loads(result.stdout))


NOT_JSON = {
    "binary": ("binaryData: {k: !!binary aGVsbG8=}", "binary"),
    "set": ("data: !!set {a, b}", "set"),
    "omap": ("data: !!omap [{a: 1}]", "omap"),
    "pairs": ("data: !!pairs [{a: 1}]", "pairs"),
    "python-tag": ("data: !!python/object/apply:os.system [id]", "python/object/apply:os.system"),
    "infinity": ("data: {a: .inf}", "not a JSON number"),
    "nan": ("data: {a: .nan}", "not a JSON number"),
    "recursive-alias": ("data: &d {a: *d}", "recursive alias"),
    "recursive-list-alias": ("spec: &s [1, [2, *s]]", "recursive alias"),
    "undefined-alias": ("data: {a: *nowhere}", "no anchor"),
}


@pytest.mark.parametrize("case", list(NOT_JSON))
def test_issue_9_yaml_values_without_json_form_are_refused_naming_the_document(tmp_path: Path, case: str) -> None:
    line, message = NOT_JSON[case]
    data = f"{CONFIGMAP}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: two}}\n{line}\n".encode()
    with pytest.raises(ManifestInvalid) as err:
        parse_manifest(data, "m.yaml")
    assert err.value.code == "manifest-invalid" and err.value.path == "m.yaml[1]" and message in err.value.message
    code, doc = validate("--manifest", str(_write(tmp_path / "m.yaml", data)))
    assert code == 1 and "m.yaml[1]" in _read_finding(doc)


def test_issue_9_yaml_timestamps_stay_strings_and_keys_become_json_strings() -> None:
    """What the API server receives: dates as text, `on:`/`80:` keys as strings; aliases and merges work."""
    data = (b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, annotations: &a {at: 2024-01-01}}\n"
            b"data: {when: 2001-12-14t21:59:43.10-05:00, on: yes, 80: http, <<: *a}\n")
    [obj] = parse_manifest(data, "m.yaml")
    assert obj.body["data"] == {"when": "2001-12-14t21:59:43.10-05:00", "true": True, "80": "http",
                                "at": "2024-01-01"}
    assert json.loads(json.dumps(obj.body, allow_nan=False)) == obj.body
    assert _schema_problem(json.dumps(obj.body)) is not None  # data values must be strings: a finding, no crash


# --- fields the schemas don't pin: every rule copes with any JSON shape ---------------------------

HOSTILE_VALUES: tuple[Any, ...] = (5, "x", None, [], {}, [[1]], [5], [{"a": [1]}], {"a": {"b": 1}}, True)
DEV = f"{K3S}/dev"
RULE_FILES = [f"{DEV}/unidesk-dev-foundation.k8s.yaml", f"{DEV}/unidesk-dev-core.k8s.yaml",
              f"{DEV}/unidesk-dev-code-queue.k8s.yaml", f"{K3S}/mdtodo.k8s.yaml"]


def _paths(body: Any, prefix: tuple[str | int, ...] = ()) -> Iterator[tuple[str | int, ...]]:
    items = body.items() if isinstance(body, dict) else enumerate(body) if isinstance(body, list) else ()
    for key, value in items:
        yield (*prefix, key)
        yield from _paths(value, (*prefix, key))


def _replaced(body: Any, path: tuple[str | int, ...], value: Any) -> Any:
    body = copy.deepcopy(body)
    parent = body
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return body


def _mutants(objects: tuple[K8sObject, ...]) -> Iterator[tuple[K8sObject, ...]]:
    """Every object, with every field (except kind and name) replaced by every hostile JSON value in turn."""
    for i, obj in enumerate(objects):
        for path in _paths(obj.body):
            if path in {("kind",), ("metadata",), ("metadata", "name"), ("metadata", "namespace")}:
                continue
            for value in HOSTILE_VALUES:
                hostile = _with_body(obj, _replaced(obj.body, path, value))
                yield (*objects[:i], hostile, *objects[i + 1:])


def _with_body(obj: K8sObject, body: Any) -> K8sObject:
    return K8sObject(kind=obj.kind, name=obj.name, namespace=obj.namespace, body=body)


@pytest.mark.parametrize("manifest", RULE_FILES)
def test_issue_9_D1_D2_D3_D4_E2_rules_cope_with_any_json_shape(manifest: str) -> None:
    """`ports: 5`, a list where a name belongs, a dict where a list belongs, at every field of every
    sample object: each pure rule returns findings, never a TypeError or AttributeError."""
    objects = parse_manifest((FIXTURE / manifest).read_bytes(), manifest)
    pure = [check for rule, check in CHECKS.items() if rule != SCHEMA]
    runs = 0
    for mutant in _mutants(objects):
        for check in pure:
            list(check(manifest, mutant))
        rule_sets_for(mutant)
        runs += 1
    assert runs > 500


@pytest.mark.parametrize(("field", "value"), [("spec/ports", 5), ("spec/ports/0", [1]), ("spec/type", ["x"]),
                                               ("spec", [1]), ("metadata/labels", "x"), ("spec/ports/0/port", {})])
def test_issue_9_D4_E2_hostile_service_shapes_are_findings_through_the_cli(repo: Path, field: str, value: Any) -> None:
    path = repo / DEV / "unidesk-dev-code-queue.k8s.yaml"
    break_manifest(path, [{"object": "Service/code-queue-write-dev", "set": field, "value": value}])
    code, doc = validate("--manifest", str(path))
    assert code == 1 and doc["manifests"][0]["findings"], json.dumps(doc)
    assert {f["object"] for f in doc["manifests"][0]["findings"]} == {"Service/code-queue-write-dev"}
    assert check_manifest(str(path), parse_manifest(path.read_bytes(), str(path)))  # the pure path agrees


@pytest.mark.parametrize(("meta", "message"), [("{name: 5}", "metadata.name"), ("{name: [a]}", "metadata.name"),
                                               ("{name: a, namespace: [x]}", "namespace"), ("[a]", "metadata.name")])
def test_issue_9_metadata_of_the_wrong_shape_is_manifest_invalid(meta: str, message: str) -> None:
    with pytest.raises(ManifestInvalid, match=message):
        parse_manifest(f"apiVersion: v1\nkind: ConfigMap\nmetadata: {meta}\n".encode(), "m.yaml")


def test_issue_9_kind_as_a_list_is_manifest_invalid() -> None:
    with pytest.raises(ManifestInvalid, match="kind must be a string, not a list") as err:
        parse_manifest(b"apiVersion: v1\nkind: [ConfigMap]\nmetadata: {name: x}\n", "m.yaml")
    assert err.value.path == "m.yaml[0]"


def test_issue_9_a_fifo_manifest_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    code, doc = validate("--manifest", str(fifo))  # a blocking open would hang here
    assert code == 1 and "not a regular file" in _read_finding(doc)


# --- hostile config.json for `validate --repo` ------------------------------------------------------

SERVICE = "$.microservices[0]"
HOSTILE_CONFIGS: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "config-is-a-list": (lambda c: (c.clear(), c.update({"__list__": True})), "$"),
    "environments-dev-is-a-string": (lambda c: c["environments"].update(dev="x"), "$.environments.dev"),
    "environments-is-a-list": (lambda c: c.update(environments=[]), "$.environments"),
    "prerequisites-is-a-string": (lambda c: c["environments"]["dev"].update(prerequisites="x"),
                                  "$.environments.dev.prerequisites"),
    "prerequisite-is-a-list": (lambda c: c["environments"]["dev"]["prerequisites"].update({"dev-foundation": [1]}),
                               "$.environments.dev.prerequisites['dev-foundation']"),
    "prerequisite-manifest-is-a-number": (
        lambda c: c["environments"]["dev"]["prerequisites"]["dev-foundation"].update(manifest=5),
        "$.environments.dev.prerequisites['dev-foundation'].manifest"),
    "microservices-is-a-dict": (lambda c: c.update(microservices={"a": 1}), "$.microservices"),
    "microservice-is-a-string": (lambda c: c["microservices"].__setitem__(0, "x"), SERVICE),
    "service-environments-is-a-list": (lambda c: c["microservices"][0].update(environments=[1]),
                                       f"{SERVICE}.environments"),
    "target-is-a-list": (lambda c: c["microservices"][0]["environments"]["dev"].update(target=[1]),
                         f"{SERVICE}.environments.dev.target"),
    "k3s-is-a-number": (lambda c: c["microservices"][0]["environments"]["dev"]["target"].update(k3s=5),
                        f"{SERVICE}.environments.dev.target.k3s"),
    "k3s-manifest-is-a-dict": (lambda c: c["microservices"][0]["environments"]["dev"]["target"]["k3s"].update(
        manifest={"a": 1}), f"{SERVICE}.environments.dev.target.k3s.manifest"),
}


def _edit_config(repo: Path, edit: Callable[[dict[str, Any]], None]) -> None:
    config = json.loads((repo / "config.json").read_text())
    edit(config)
    (repo / "config.json").write_text(json.dumps([] if config.get("__list__") else config))


@pytest.mark.parametrize("case", list(HOSTILE_CONFIGS))
def test_issue_9_hostile_config_json_is_manifest_invalid_naming_the_json_path(repo: Path, case: str) -> None:
    edit, json_path = HOSTILE_CONFIGS[case]
    _edit_config(repo, edit)
    code, doc = validate("--repo", str(repo))
    assert code == 1, doc
    assert doc["error"]["code"] == "manifest-invalid" and doc["error"]["path"] == f"config.json#{json_path}"


@pytest.mark.parametrize("hosts", [[], "x", {"h": "x"}, {"h": {"provider": "k3s-native", "kubeconfig": [1]}},
                                   {"h": {"provider": ["k3s-native"], "kubeconfig": "k"}}])
def test_issue_9_E2_hostile_hosts_give_no_kubeconfig(hosts: Any) -> None:
    from udeploy.engine.checks.validate import kubeconfig_for

    assert kubeconfig_for({"hosts": hosts}, None) == (None, "none")
    assert kubeconfig_for(["not", "an", "object"], None) == (None, "none")


def _point_core_at(repo: Path, manifest: str) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["microservices"][0]["environments"]["dev"]["target"]["k3s"]["manifest"] = manifest
    _edit_config(repo, edit)


@pytest.mark.parametrize(("manifest", "reason"), [("../../etc/passwd", "climbs out with '..'"),
                                                  ("/etc/passwd", "is absolute"),
                                                  ("src/../../outside.yaml", "climbs out with '..'"),
                                                  ("", "is empty"), ("a\\..\\..\\x", "backslash")])
def test_issue_9_config_json_manifest_paths_stay_inside_the_repo(repo: Path, manifest: str, reason: str) -> None:
    _point_core_at(repo, manifest)
    code, doc = validate("--repo", str(repo))
    assert code == 1 and doc["error"]["code"] == "manifest-invalid"
    assert reason in doc["error"]["message"] and repr(manifest) in doc["error"]["message"]
    assert doc["error"]["path"] == f"config.json#{SERVICE}.environments.dev.target.k3s.manifest"


def test_issue_9_config_json_manifest_symlinked_out_of_the_repo_is_refused(repo: Path, tmp_path: Path) -> None:
    outside = _write(tmp_path / "outside" / "secret.yaml", CONFIGMAP)
    (repo / "link.yaml").symlink_to(outside)
    _point_core_at(repo, "link.yaml")
    code, doc = validate("--repo", str(repo))
    assert code == 1 and doc["error"]["code"] == "manifest-invalid"
    assert "leaves the repository through a symlink" in doc["error"]["message"]


# --- rule sets follow the objects, not file names ------------------------------------------------

def test_issue_9_D4_code_queue_objects_in_a_renamed_file_still_get_D4(repo: Path) -> None:
    renamed = repo / DEV / "anything-else.yaml"
    (repo / DEV / "unidesk-dev-code-queue.k8s.yaml").rename(renamed)
    break_manifest(renamed, [{"object": "Deployment/code-queue-scheduler-dev", "set": "spec/strategy/type",
                              "value": "RollingUpdate"}])
    _edit_config(repo, lambda c: [e["dev"]["target"]["k3s"].update(manifest=f"{DEV}/anything-else.yaml")
                                  for m in c["microservices"] for e in [m.get("environments", {})]
                                  if "k3s" in e.get("dev", {}).get("target", {})
                                  and e["dev"]["target"]["k3s"]["manifest"].endswith("code-queue.k8s.yaml")])
    code, doc = validate("--repo", str(repo))
    assert code == 1
    [cq] = [m for m in doc["manifests"] if m["path"].endswith("anything-else.yaml")]
    assert cq["ruleSets"] == ["dev-code-queue"] and "D4" in cq["rules"]
    assert [(f["rule"], f["object"]) for f in cq["findings"]] == [("D4", "Deployment/code-queue-scheduler-dev")]


def test_issue_9_D4_a_renamed_code_queue_object_is_claimed_by_its_label(repo: Path) -> None:
    """Renaming every object cannot slip past D4: the service-id label in the dev namespace still claims it."""
    path = repo / "x.yaml"
    docs = [d for d in yaml.safe_load_all((repo / DEV / "unidesk-dev-code-queue.k8s.yaml").read_text()) if d]
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    deployment["metadata"]["name"] = "sneaky"
    path.write_text(yaml.safe_dump(deployment))
    code, doc = validate("--manifest", str(path))
    assert code == 1 and doc["manifests"][0]["ruleSets"] == ["dev-code-queue"]
    assert ("D4", "Deployment/sneaky") in [(f["rule"], f["object"]) for f in doc["manifests"][0]["findings"]]


def test_issue_9_D1_D3_a_file_with_two_rule_sets_gets_both(repo: Path) -> None:
    both = repo / "both.yaml"
    both.write_bytes((repo / DEV / "unidesk-dev-core.k8s.yaml").read_bytes() + b"\n---\n"
                     + (repo / DEV / "unidesk-dev-foundation.k8s.yaml").read_bytes())
    objects = parse_manifest(both.read_bytes(), "both.yaml")
    assert rule_sets_for(objects) == ("dev-foundation", "dev-core")
    # Each set's objects are allowed by the other: no "not one of the objects" findings, nothing missing.
    assert [d for d in check_manifest("both.yaml", objects) if d.code in {"D1", "D3"}] == []


def test_issue_9_a_file_no_rule_set_claims_says_so(tmp_path: Path) -> None:
    path = _write(tmp_path / "plain.yaml", CONFIGMAP)
    code, doc = validate("--manifest", str(path))
    assert code == 0 and doc["ok"] is True
    [m] = doc["manifests"]
    assert m["ruleSets"] == [] and m["findings"] == [] and m["rules"] == ["K8S-SCHEMA", "E2", "D2"]
    [note] = m["notes"]
    assert note["rule"] == "RULE-SETS" and note["severity"] == "warning"
    assert "only the generic rules (K8S-SCHEMA, E2, D2) ran" in note["summary"]
    assert all(name in note["summary"] for name in RULE_SETS)


@pytest.mark.parametrize("refs", [(["Deployment", "x"],), ({"a": 1},), (5,), (None,)])
def test_issue_9_k3s_objects_named_by_config_json_must_be_strings(refs: tuple[Any, ...]) -> None:
    """The k3s provider selects config.json's `objects` from the manifest during plan: a list there is refused."""
    objects = parse_manifest(CONFIGMAP.encode(), "m.yaml")
    with pytest.raises(ManifestInvalid, match='"Kind/name" strings'):
        select(objects, refs, "m.yaml")


def test_issue_9_one_long_string_aliased_many_times_is_input_too_large() -> None:
    """Few nodes, but gigabytes of JSON: the expansion is counted in characters too."""
    data = CONFIGMAP.encode() + b"---\nk: &s " + b"x" * 200_000 + b"\nl: [" + b"*s, " * 100 + b"*s]\n"
    with pytest.raises(InputTooLarge, match="characters"):
        parse_manifest(data, "m.yaml")


@pytest.mark.parametrize("number", [b"0x" + b"f" * 4000, b"0" + b"7" * 5000, b"0b" + b"1" * 70, b"9" * 20],
                         ids=["hex", "octal", "binary", "decimal"])
def test_issue_9_integers_beyond_int64_in_any_base_are_refused(number: bytes) -> None:
    with pytest.raises(ManifestInvalid, match="64 bits"):
        parse_manifest(CONFIGMAP.encode() + b"---\nn: " + number + b"\n", "m.yaml")


def test_issue_9_a_base_60_number_stays_text_as_the_api_server_reads_it() -> None:
    [_, doc] = parse_manifest(CONFIGMAP.encode() + b"---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: p}\n"
                              b"data: {ports: 8080:80, long: " + b"1:" * 50_000 + b"1}\n", "m.yaml")
    assert doc.body["data"]["ports"] == "8080:80" and doc.body["data"]["long"].startswith("1:1:")
