"""Helpers for the validate tests: the sample copy, the CLI call, and the manifest breaker."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

import udeploy.engine.cli.validate  # noqa: F401  (registers `validate` on the app)
from udeploy.engine.cli import app

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "unidesk-sample"
K3S = "src/components/microservices/k3sctl-adapter/k3s"


def validate(*args: str) -> tuple[int, dict[str, Any]]:
    result = CliRunner().invoke(app, ["validate", *args], catch_exceptions=False)
    return result.exit_code, json.loads(result.stdout)


def _pointer(doc: Any, pointer: str) -> tuple[Any, str | int]:
    *parents, last = pointer.split("/")
    for key in parents:
        doc = doc[int(key)] if isinstance(doc, list) else doc.setdefault(key, {})
    return doc, int(last) if isinstance(doc, list) else last


def break_manifest(file: Path, edits: list[dict[str, Any]]) -> None:
    docs = [d for d in yaml.safe_load_all(file.read_text()) if d]
    by_ref = {f"{d['kind']}/{d['metadata']['name']}": d for d in docs}
    for edit in edits:
        if "add" in edit:
            docs.append(edit["add"])
        elif "remove" in edit:
            docs.remove(by_ref[edit["remove"]])
        elif "set" in edit:
            parent, key = _pointer(by_ref[edit["object"]], edit["set"])
            if isinstance(parent, list) and key == len(parent):
                parent.append(edit["value"])
            else:
                parent[key] = edit["value"]
        else:
            parent, key = _pointer(by_ref[edit["object"]], edit["delete"])
            del parent[key]
    file.write_text(yaml.safe_dump_all(docs, sort_keys=False))
