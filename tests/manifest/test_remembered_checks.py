"""config.json, CI.json and deploy.json pass their schema check once per content: a document that
passed is remembered in the cache directory and not checked again; a failure is never remembered."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from udeploy.engine.errors import ManifestInvalid
from udeploy.engine.load import jsonschema_check
from udeploy.engine.load.jsonschema_check import check_remembered

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "unidesk-sample"


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("UDEPLOY_CACHE_DIR", str(tmp_path))
    return tmp_path / "validated"


@pytest.fixture
def checks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources the full schema check ran on."""
    ran: list[str] = []
    real = jsonschema_check.check

    def counting(doc: Any, schema: str, source: str) -> None:
        ran.append(source)
        real(doc, schema, source)

    monkeypatch.setattr(jsonschema_check, "check", counting)
    return ran


def test_a_passing_document_is_checked_once(cache: Path, checks: list[str]) -> None:
    config = json.loads((SAMPLE / "config.json").read_text())
    check_remembered(config, "config", "first")
    check_remembered(copy.deepcopy(config), "config", "again")
    assert checks == ["first"] and len(list(cache.iterdir())) == 1
    config["project"] = "other"  # still valid, but another document
    check_remembered(config, "config", "changed")
    assert checks == ["first", "changed"] and len(list(cache.iterdir())) == 2


def test_the_same_document_against_another_schema_is_checked(cache: Path, checks: list[str]) -> None:
    ci = json.loads((SAMPLE / "CI.json").read_text())
    check_remembered(ci, "ci", "ci")
    with pytest.raises(ManifestInvalid):
        check_remembered(ci, "config", "ci as config")
    assert checks == ["ci", "ci as config"]


def test_a_failure_is_reported_in_full_every_time(cache: Path, checks: list[str]) -> None:
    config = json.loads((SAMPLE / "config.json").read_text())
    config["registry"] = 5
    for _ in range(2):
        with pytest.raises(ManifestInvalid, match=r"\$\.registry"):
            check_remembered(config, "config", "config.json")
    assert checks == ["config.json", "config.json"]
    assert not cache.exists() or not list(cache.iterdir())



MANIFEST = b"""apiVersion: v1
kind: Service
metadata: {name: web, namespace: dev}
spec: {ports: [{port: 80}]}
"""


@pytest.fixture
def budget_walks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The sources whose YAML event stream the size/depth/alias walk read."""
    from udeploy.engine.load import k8s_manifest

    walked: list[str] = []
    seen: list[object] = []  # the walks (one _Budget each) already counted
    real = k8s_manifest._Budget.see

    def counting(self: Any, event: Any) -> None:
        if not any(b is self for b in seen):
            seen.append(self)
            walked.append(self.source)
        real(self, event)

    monkeypatch.setattr(k8s_manifest._Budget, "see", counting)
    return walked


def test_a_k3s_manifest_that_passed_its_limits_is_not_walked_again(cache: Path, budget_walks: list[str]) -> None:
    from udeploy.engine.load.k8s_manifest import parse_manifest

    first = parse_manifest(MANIFEST, "a.yaml")
    assert parse_manifest(MANIFEST, "b.yaml") == first and budget_walks == ["a.yaml"]
    parse_manifest(MANIFEST + b"# changed\n", "c.yaml")
    assert budget_walks == ["a.yaml", "c.yaml"]


def test_a_k3s_manifest_over_its_limits_is_refused_every_time(cache: Path, budget_walks: list[str]) -> None:
    from udeploy.engine.errors import InputTooLarge
    from udeploy.engine.load.k8s_manifest import MAX_DEPTH, parse_manifest

    deep = b"a: " + b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1) + b"\n"
    for _ in range(2):
        with pytest.raises(InputTooLarge):
            parse_manifest(deep, "deep.yaml")
    assert budget_walks == ["deep.yaml", "deep.yaml"]
