"""Issue 9: the files and paths a pull request or an operator names are read within limits, and
anything else is a clear JSON error with a code and the path, never a traceback or a hang.

Parsers (deploy.json, config.json, CI.json, plan files), plan files that are not UTF-8 or carry a
lone surrogate escape, and the paths (`-out`, `--file`, config.json as a directory, a symlink
loop or a symlink out of the checkout, a FIFO).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from tests.conftest import Cli, CliResult
from tests.sample_repo import SampleRepo
from udeploy.engine.plan.planfile import canonical

HOSTILE_JSON = {
    "deep-nesting": ("[" * 100_000 + "]" * 100_000, "input-too-large"),
    "4301-digit-integer": ('{"schemaVersion": ' + "1" * 4301 + "}", "manifest-invalid"),
    "not-utf8": (b'{"schemaVersion": 2, "x": "\xff\xfe"}', "manifest-invalid"),
    "lone-surrogate": ('{"schemaVersion": 2, "environments": {"dev": {"services": [], "x": "\\ud800"}}}',
                       "manifest-invalid"),
    "nan": ('{"schemaVersion": NaN}', "manifest-invalid"),
}


def _error(r: CliResult, code: str, exit_code: int = 1) -> dict[str, object]:
    assert "Traceback" not in r.stderr, r.stderr
    assert r.exit_code == exit_code, r.stdout
    error: dict[str, object] = r.json["error"]
    assert error["code"] == code, error
    return error


def _write(path: Path, data: str | bytes) -> Path:
    path.write_bytes(data if isinstance(data, bytes) else data.encode())
    return path


@pytest.mark.parametrize("case", sorted(HOSTILE_JSON))
def test_issue9_hostile_deploy_json_is_refused_by_code(case: str, shared_sample: tuple[SampleRepo, Cli],
                                                       tmp_path: Path) -> None:
    data, code = HOSTILE_JSON[case]
    _, cli = shared_sample
    error = _error(cli("plan", "--file", str(_write(tmp_path / "deploy.json", data)), "--no-refresh"), code)
    assert str(error["path"]).startswith(str(tmp_path / "deploy.json"))


@pytest.mark.parametrize("name", ["config.json", "CI.json"])
@pytest.mark.parametrize("case", ["deep-nesting", "4301-digit-integer", "not-utf8"])
def test_issue9_hostile_config_and_ci_json_are_refused_by_code(name: str, case: str, sample: SampleRepo,
                                                               cli: Cli) -> None:
    data, code = HOSTILE_JSON[case]
    _write(sample.clone / name, data)
    _error(cli("plan", "--file", str(_local_deploy(sample)), "--no-refresh"), code)


def _local_deploy(sample: SampleRepo) -> Path:
    doc = sample.deploy_json()
    return _write(sample.workdir / "dev-only.json",
                  json.dumps({"schemaVersion": 2, "environments": {"dev": doc["environments"]["dev"]}}))


def test_issue9_config_json_as_a_directory_a_loop_or_a_way_out_is_refused(sample: SampleRepo, cli: Cli,
                                                                          tmp_path: Path) -> None:
    deploy = _local_deploy(sample)
    config = sample.clone / "config.json"
    config.unlink()
    config.mkdir()
    assert "directory" in str(_error(cli("plan", "--file", str(deploy), "--no-refresh"), "manifest-invalid")["message"])
    config.rmdir()
    config.symlink_to(config)  # a loop
    assert "symbolic links" in str(_error(cli("plan", "--file", str(deploy), "--no-refresh"),
                                          "manifest-invalid")["message"])
    config.unlink()
    outside = _write(tmp_path / "secret.json", '{"token": "s3cr3t-value"}')
    config.symlink_to(outside)
    r = cli("plan", "--file", str(deploy), "--no-refresh")
    assert "leaves the checkout" in str(_error(r, "manifest-invalid")["message"])
    assert "s3cr3t-value" not in r.stdout + r.stderr


def test_issue9_a_fifo_as_file_or_config_does_not_hang(sample: SampleRepo, cli: Cli, tmp_path: Path) -> None:
    fifo = tmp_path / "deploy.json"
    os.mkfifo(fifo)  # nobody ever writes to it: a blocking open or read would hang forever
    assert "FIFO" in str(_error(cli("plan", "--file", str(fifo), "--no-refresh"), "manifest-invalid")["message"])
    deploy = _local_deploy(sample)
    (sample.clone / "CI.json").unlink()
    os.mkfifo(sample.clone / "CI.json")
    assert "FIFO" in str(_error(cli("plan", "--file", str(deploy), "--no-refresh"), "manifest-invalid")["message"])


def test_issue9_file_name_that_is_not_utf8_is_a_usage_error(shared_sample: tuple[SampleRepo, Cli],
                                                             tmp_path: Path) -> None:
    sample, cli = shared_sample
    name = os.fsdecode(os.fsencode(str(tmp_path)) + b"/deploy-\xff.json")
    Path(name).write_bytes((sample.clone / "deploy.json").read_bytes())
    error = _error(cli("plan", "--file", name, "--no-refresh"), "usage")
    assert error["path"] == "--file" and "UTF-8" in str(error["message"])


@pytest.mark.parametrize("target", ["missing-dir/plan.json", "a-dir", ""])
def test_issue9_out_into_a_missing_directory_onto_a_directory_or_empty(target: str, shared_sample: tuple[SampleRepo,
                                                                       Cli], tmp_path: Path) -> None:
    _, cli = shared_sample
    (tmp_path / "a-dir").mkdir()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    out = str(tmp_path / target) if target else ""
    error = _error(cli("plan", "--env", "dev", "--no-refresh", "-out", out), "usage")
    assert error["path"] == "-out"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def _plan_file(cli: Cli, tmp_path: Path) -> Path:
    path = tmp_path / "plan.json"
    assert cli("plan", "--env", "dev", "--no-refresh", "-out", str(path)).exit_code == 0
    return path


def _redigest(doc: dict[str, object]) -> dict[str, object]:
    doc["digest"] = "sha256:" + hashlib.sha256(canonical(doc)).hexdigest()
    return doc


@pytest.mark.parametrize("command", [["show"], ["show", "--format", "text"], ["graph"], ["apply", "--dry-run"]])
def test_issue9_plan_file_not_utf8_or_with_a_lone_surrogate_is_refused_with_exit_4(
        command: list[str], shared_sample: tuple[SampleRepo, Cli], tmp_path: Path) -> None:
    _, cli = shared_sample
    path = _plan_file(cli, tmp_path)
    text = path.read_text()
    at = text.index('"reason": "') + len('"reason": "')
    bad_bytes = _write(tmp_path / "bytes.json", text[:at].encode() + b"\xff\xfe" + text[at:].encode())
    surrogate = _write(tmp_path / "surrogate.json", text[:at] + "\\ud800" + text[at:])
    doc = json.loads(text)
    doc["services"][0]["reason"] = "\ud800"
    # The digest recomputed the way a crafter would have to: over the surrogate itself.
    body = {k: v for k, v in doc.items() if k != "digest"}
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8", "surrogatepass")
    doc["digest"] = "sha256:" + hashlib.sha256(raw).hexdigest()
    redigested = _write(tmp_path / "redigested.json", json.dumps(doc))  # ensure_ascii: "\ud800" escaped
    for bad in (bad_bytes, surrogate, redigested):
        _error(cli(*command, str(bad)), "plan-tampered", exit_code=4)


@pytest.mark.parametrize("case", ["deep-nesting", "4301-digit-integer"])
def test_issue9_plan_file_parser_limits(case: str, shared_sample: tuple[SampleRepo, Cli], tmp_path: Path) -> None:
    _, cli = shared_sample
    data, _ = HOSTILE_JSON[case]
    code = "input-too-large" if case == "deep-nesting" else "plan-tampered"
    _error(cli("show", str(_write(tmp_path / "plan.json", data))), code, exit_code=4)


def test_issue9_crafted_plan_with_a_good_digest_but_wrong_types_is_refused(
        shared_sample: tuple[SampleRepo, Cli], tmp_path: Path) -> None:
    _, cli = shared_sample
    doc = json.loads(_plan_file(cli, tmp_path).read_text())
    doc["graph"]["edges"] = [["only-one-end"]]
    path = _write(tmp_path / "crafted.json", json.dumps(_redigest(doc)))
    _error(cli("show", str(path)), "plan-invalid", exit_code=4)


def test_issue9_plan_file_that_is_a_directory_or_fifo(shared_sample: tuple[SampleRepo, Cli], tmp_path: Path) -> None:
    _, cli = shared_sample
    os.mkfifo(tmp_path / "fifo.json")
    for path, kind in ((tmp_path, "directory"), (tmp_path / "fifo.json", "FIFO")):
        assert kind in str(_error(cli("show", str(path)), "input-unreadable")["message"])


def test_issue9_a_plan_file_with_a_byte_order_mark_is_refused(shared_sample: tuple[SampleRepo, Cli],
                                                              tmp_path: Path) -> None:
    """json.loads skips a BOM, so the content (and its digest) would still match: the bytes did not."""
    _, cli = shared_sample
    path = _plan_file(cli, tmp_path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    _error(cli("show", str(path), "--format", "markdown"), "plan-tampered", exit_code=4)


@pytest.mark.parametrize("ref", ["é" * 200, "\ud800", "-" * 2 + "upload-pack=x"])
def test_issue9_a_ref_too_long_not_unicode_or_an_option_is_refused_before_git(
        ref: str, shared_sample: tuple[SampleRepo, Cli]) -> None:
    _, cli = shared_sample
    _error(cli("artifact", "status", "--ref", ref), "ref-refused")


def test_issue9_validate_repo_with_a_name_too_long_is_a_usage_error(shared_sample: tuple[SampleRepo, Cli],
                                                                    tmp_path: Path) -> None:
    _, cli = shared_sample
    _error(cli("validate", "--repo", str(tmp_path / ("a" * 300))), "usage")


def test_issue9_a_plan_with_too_many_nodes_is_refused_before_any_schema_work(tmp_path: Path,
                                                                           shared_sample: tuple[SampleRepo,
                                                                                                Cli]) -> None:
    _, cli = shared_sample
    doc: dict[str, object] = {"formatVersion": 1, "services": [],
                              "graph": {"nodes": [{"id": f"n{i}"} for i in range(60_001)], "edges": []}}
    path = _write(tmp_path / "big.json", json.dumps(_redigest(doc)))
    error = _error(cli("show", str(path)), "input-too-large", exit_code=4)
    assert error["details"] == {"count": 60_001, "limit": 60_000}
