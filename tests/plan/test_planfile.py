"""The plan file: `-out` then `show` round-trips; an edited byte, an unknown format or a schema
violation is refused before anything trusts it (K1, STYLE 3)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.conftest import Cli
from tests.sample_repo import SampleRepo
from udeploy.engine.plan.planfile import canonical


def redigest(doc: dict) -> dict:
    doc["digest"] = "sha256:" + hashlib.sha256(canonical(doc)).hexdigest()
    return doc


def test_K1_out_then_show_round_trips(shared_sample: tuple[SampleRepo, Cli], tmp_path: Path) -> None:
    _, cli = shared_sample
    path = tmp_path / "plan.json"
    planned = cli("plan", "--env", "dev", "--no-refresh", "-out", str(path))
    assert planned.exit_code == 0
    assert json.loads(path.read_text()) == planned.json
    shown = cli("show", str(path))
    assert shown.exit_code == 0 and shown.json == planned.json
    text = cli("show", str(path), "--format", "text")
    assert "to deploy" in text.stdout and "backend-core" in text.stdout


def test_K1_one_edited_byte_is_refused(shared_sample: tuple[SampleRepo, Cli], tmp_path: Path) -> None:
    _, cli = shared_sample
    path = tmp_path / "plan.json"
    cli("plan", "--env", "prod", "--no-refresh", "-out", str(path))
    raw = bytearray(path.read_bytes())
    at = raw.index(b'"action": "') + 11
    raw[at] = ord("x")
    path.write_bytes(bytes(raw))
    r = cli("show", str(path))
    assert r.exit_code == 4 and r.json["error"]["code"] == "plan-tampered"


def test_unknown_format_and_schema_violations_are_refused(shared_sample: tuple[SampleRepo, Cli],
                                                          tmp_path: Path) -> None:
    _, cli = shared_sample
    path = tmp_path / "plan.json"
    cli("plan", "--env", "prod", "--no-refresh", "-out", str(path))
    doc = json.loads(path.read_text())
    future = tmp_path / "future.json"
    future.write_text(json.dumps(redigest({**doc, "formatVersion": 99})))
    r = cli("show", str(future))
    assert r.exit_code == 4 and r.json["error"]["code"] == "plan-format-unknown"
    broken = dict(doc)
    broken["services"] = [{**doc["services"][0], "action": "explode"}]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(redigest(broken)))
    r = cli("show", str(bad))
    assert r.exit_code == 4 and r.json["error"]["code"] == "plan-invalid"  # crafted: digest recomputed
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    assert cli("show", str(junk)).json["error"]["code"] == "plan-tampered"


def test_P7_plan_file_holds_no_secret_values(shared_sample: tuple[SampleRepo, Cli], tmp_path: Path) -> None:
    """The dev foundation Secret template's placeholder values never reach a plan: prerequisite
    nodes carry the manifest path and commit, not object bodies."""
    sample, cli = shared_sample
    path = tmp_path / "plan.json"
    cli("plan", "--env", "dev", "--no-refresh", "-out", str(path))
    foundation = (sample.clone / "src/components/microservices/k3sctl-adapter/k3s/dev/"
                  "unidesk-dev-foundation.k8s.yaml").read_text()
    values = [line.split(":", 1)[1].strip().strip('"') for line in foundation.splitlines()
              if line.strip().startswith(("POSTGRES_PASSWORD", "DATABASE_URL", "PROVIDER_TOKEN", "SESSION_SECRET"))]
    assert values, "the fixture's Secret template should hold placeholder values"
    text = path.read_text()
    assert not [v for v in values if v and v in text]
