"""Issue 9: state files, repository URLs and refs, and schema type holes are hostile input.

Each case gets one JSON document and a clear error code, never a traceback: a corrupt job record
is `job-record-corrupt` naming the file, `job list` lists it as `unreadable`, an unreadable lock
counts as held (apply refuses instead of taking it over), job ids on the command line follow
`new_job_id()`'s grammar, only https/ssh/scp-like/file repository URLs reach git, refs follow
git's refname rules, and every CI.json/config.json field the catalog reads has a schema type.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import Cli, CliResult
from tests.sample_repo import SampleRepo
from udeploy.engine.apply import lock as env_lock
from udeploy.engine.apply.jobs import Job, StateRecordCorrupt, new_job_id
from udeploy.engine.apply.run import Resume
from udeploy.engine.cli import app
from udeploy.engine.errors import ManifestInvalid, UdeployError
from udeploy.engine.load.catalog import parse_catalog
from udeploy.engine.load.manifest import parse_deploy
from udeploy.engine.load.repo_url import RefRefused, RepoUrlRefused, check_ref, check_repo_url, ref_problem
from udeploy.providers.compose_build import export_source
from udeploy.providers.compose_ops import Layout
from udeploy.providers.git import GitProvider
from udeploy.providers.hostshell import LocalShell

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "fixtures" / "unidesk-sample"
JOB_ID = "20261130T120000Z-0a1b2c"


def run(*args: str) -> CliResult:
    """The CLI in-process; stdout must be exactly one JSON document and no traceback anywhere."""
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    out = CliResult(result.exit_code, result.stdout, result.stderr)
    assert "Traceback" not in out.stdout + out.stderr, out.stderr
    assert out.json is not None
    if out.exit_code != 0:
        assert out.json["error"]["code"] != "internal-error", out.stdout
    return out


# -- state files: jobs -----------------------------------------------------------------------------

def make_job(state: Path, job_id: str = JOB_ID) -> Path:
    job = Job.create(state, plan_digest="sha256:" + "0" * 64, plan_file=None, environment="dev", dry_run=True,
                     nodes=["a/verify-live"], job_id=job_id)
    job.log("hello from the job")
    job.finish("succeeded", {"ok": True})
    return job.dir


BAD_STATUS = {
    "not JSON": b"{not json",
    "binary junk": b"\xff\xfe\x00\x01junk",
    "a list": b"[1]",
    "missing keys": b"{}",
    "pid as a string": json.dumps({"jobId": JOB_ID, "state": "running", "pid": "12"}).encode(),
    "pid as a list": json.dumps({"jobId": JOB_ID, "state": "running", "pid": [1]}).encode(),
    "pid huge": json.dumps({"jobId": JOB_ID, "state": "running", "pid": 10**30}).encode(),
    "pid a boolean": json.dumps({"jobId": JOB_ID, "state": "running", "pid": True}).encode(),
    "state a list": json.dumps({"jobId": JOB_ID, "state": ["running"], "pid": 1}).encode(),
    "nodes a string": json.dumps({"jobId": JOB_ID, "state": "running", "pid": 1, "nodes": "x"}).encode(),
    "deep nesting": b"[" * 100_000,
    "4301-digit integer": b'{"pid": ' + b"9" * 4301 + b"}",
}


@pytest.mark.parametrize("content", list(BAD_STATUS.values()), ids=list(BAD_STATUS))
def test_issue9_corrupt_status_json_is_job_record_corrupt_and_listed_unreadable(tmp_path: Path,
                                                                                 content: bytes) -> None:
    state = tmp_path / "state"
    good = make_job(state, "20261130T110000Z-aaaaaa")
    bad = make_job(state)
    (bad / "status.json").write_bytes(content)
    r = run("job", "status", JOB_ID, "--state-dir", str(state))
    assert r.exit_code == 1 and r.json["error"]["code"] == "job-record-corrupt"
    assert r.json["error"]["path"] == str(bad / "status.json")
    listed = run("job", "list", "--state-dir", str(state))
    assert listed.exit_code == 0
    by_id = {j["jobId"]: j for j in listed.json["jobs"]}
    assert by_id[good.name]["state"] == "succeeded"
    assert by_id[JOB_ID]["state"] == "unreadable" and by_id[JOB_ID]["problem"]


def test_issue9_status_json_that_is_a_directory_or_a_fifo_is_corrupt_and_never_hangs(tmp_path: Path) -> None:
    state = tmp_path / "state"
    for job_id, plant in (("20261130T120000Z-000001", "dir"), ("20261130T120000Z-000002", "fifo")):
        d = make_job(state, job_id)
        (d / "status.json").unlink()
        if plant == "dir":
            (d / "status.json").mkdir()
        else:
            os.mkfifo(d / "status.json")
        r = run("job", "status", job_id, "--state-dir", str(state))
        assert r.exit_code == 1 and r.json["error"]["code"] == "job-record-corrupt", r.stdout
    assert {j["state"] for j in run("job", "list", "--state-dir", str(state)).json["jobs"]} == {"unreadable"}


def test_issue9_job_directory_that_is_a_file_is_reported_not_a_crash(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "jobs").mkdir(parents=True)
    (state / "jobs" / JOB_ID).write_text("not a directory")
    r = run("job", "status", JOB_ID, "--state-dir", str(state))
    assert r.exit_code == 1 and r.json["error"]["code"] == "job-record-corrupt"
    listed = run("job", "list", "--state-dir", str(state)).json["jobs"]
    assert listed == [{"jobId": JOB_ID, "state": "unreadable", "problem": f"{state / 'jobs' / JOB_ID} is not a "
                                                                          "directory"}]


def test_issue9_missing_log_gives_an_empty_tail_and_says_so(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (make_job(state) / "log").unlink()
    r = run("job", "status", JOB_ID, "--state-dir", str(state))
    assert r.exit_code == 0 and r.json["state"] == "succeeded"
    assert r.json["logTail"] == "" and "missing" in r.json["logProblem"]


def test_issue9_running_job_with_a_dead_pid_is_died_not_a_crash(tmp_path: Path) -> None:
    state = tmp_path / "state"
    d = make_job(state)
    doc = json.loads((d / "status.json").read_text())
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    doc.update(state="running", pid=child.pid)
    (d / "status.json").write_text(json.dumps(doc))
    r = run("job", "status", JOB_ID, "--state-dir", str(state))
    assert r.exit_code == 0 and r.json["state"] == "died"


@pytest.mark.parametrize("launch", [b"{junk", b"[]", b'{"jobId": "%s"}' % JOB_ID.encode(),
                                    b'{"jobId": "%s", "pid": "12"}' % JOB_ID.encode(),
                                    b'{"jobId": "20261130T120000Z-ffffff", "pid": 1}'])
def test_issue9_bad_launch_record_is_job_record_corrupt(tmp_path: Path, launch: bytes) -> None:
    jobs = tmp_path / "state" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / f"{JOB_ID}.launch.json").write_bytes(launch)
    r = run("job", "status", JOB_ID, "--state-dir", str(tmp_path / "state"))
    assert r.exit_code == 1 and r.json["error"]["code"] == "job-record-corrupt"
    assert r.json["error"]["path"] == str(jobs / f"{JOB_ID}.launch.json")


def test_issue9_launch_record_without_its_output_file_reports_starting_or_died(tmp_path: Path) -> None:
    jobs = tmp_path / "state" / "jobs"
    jobs.mkdir(parents=True)
    (jobs / f"{JOB_ID}.launch.json").write_text(json.dumps({"jobId": JOB_ID, "pid": os.getpid()}))
    r = run("job", "status", JOB_ID, "--state-dir", str(tmp_path / "state"))
    assert r.exit_code == 0 and r.json["state"] == "starting" and r.json["logTail"] == ""


@pytest.mark.parametrize("job_id", ["../../x", "..", "x", f"{JOB_ID}/../../../outside", f"{JOB_ID}\n",
                                    "/etc", "", "20261130T120000Z-0A1B2C"])
def test_issue9_job_ids_must_match_the_job_id_grammar(tmp_path: Path, job_id: str) -> None:
    state = tmp_path / "deep" / "state"
    # A plausible record outside the jobs directory: a traversal would find and print it.
    for outside in (tmp_path / "deep", tmp_path, tmp_path / "outside"):
        outside.mkdir(parents=True, exist_ok=True)
        (outside / "status.json").write_text(json.dumps({"jobId": "planted", "state": "done", "pid": 1}))
    r = run("job", "status", job_id, "--state-dir", str(state))
    assert r.exit_code == 1 and r.json["error"]["code"] == "usage" and r.json["error"]["path"] == "JOB"
    assert "planted" not in r.stdout


def test_issue9_new_job_ids_pass_the_grammar_and_the_hidden_job_id_option_is_checked(tmp_path: Path) -> None:
    state = tmp_path / "state"
    assert make_job(state, new_job_id()).is_dir()
    r = run("apply", str(tmp_path / "plan.json"), "--job-id", "../../evil", "--state-dir", str(state))
    assert r.exit_code == 1 and r.json["error"]["path"] == "--job-id"
    assert not (tmp_path / "evil").exists()


def test_issue9_tail_bytes_is_bounded(tmp_path: Path) -> None:
    state = tmp_path / "state"
    d = make_job(state)
    (d / "log").write_bytes(b"x" * (3 << 20))
    r = run("job", "status", JOB_ID, "--state-dir", str(state), "--tail-bytes", str(1 << 20))
    assert r.exit_code == 0 and len(r.json["logTail"]) == 1 << 20
    over = subprocess.run([sys.executable, "-m", "udeploy.engine.cli", "job", "status", JOB_ID,
                           "--state-dir", str(state), "--tail-bytes", str((1 << 20) + 1)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert over.returncode == 1 and json.loads(over.stdout)["error"]["code"] == "usage"


def test_issue9_state_dir_that_is_a_file_is_state_unusable(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("a file")
    for args in (("job", "list"), ("job", "status", JOB_ID), ("lock", "status", "--env", "dev")):
        r = run(*args, "--state-dir", str(state))
        assert r.exit_code == 1 and r.json["error"]["code"] == "state-unusable", (args, r.stdout)
    with pytest.raises(env_lock.StateUnusable):
        env_lock.acquire(state, "env-dev", JOB_ID)
    (tmp_path / "s2").mkdir()
    (tmp_path / "s2" / "jobs").write_text("a file")
    r = run("job", "list", "--state-dir", str(tmp_path / "s2"))
    assert r.exit_code == 1 and r.json["error"]["code"] == "state-unusable"


def test_issue9_corrupt_resume_record_refuses_instead_of_guessing(tmp_path: Path) -> None:
    digest = "sha256:" + "ab" * 32
    plans = tmp_path / "plans"
    plans.mkdir()
    assert Resume(tmp_path, digest).done == set()
    for junk in (b"[1]", b"{", b'{"nodes": [], "runtime": {}}', b'{"nodes": {"a": 1}, "runtime": {}}'):
        (plans / ("ab" * 32 + ".json")).write_bytes(junk)
        with pytest.raises(StateRecordCorrupt) as caught:
            Resume(tmp_path, digest)
        assert caught.value.path == str(plans / ("ab" * 32 + ".json"))
    (plans / ("ab" * 32 + ".json")).write_text(json.dumps({"nodes": {"a/stamp": "succeeded"}, "runtime": {}}))
    assert Resume(tmp_path, digest).done == {"a/stamp"}


# -- state files: locks ----------------------------------------------------------------------------

BAD_LOCKS = {
    "a list": b"[1]",
    "pid as a string": b'{"pid": "x"}',
    "binary junk": b"\x00\xff\xfejunk\x80",
    "no lockId": json.dumps({"host": socket.gethostname(), "pid": os.getpid()}).encode(),
    "pid huge": json.dumps({"lockId": "ab12", "host": socket.gethostname(), "pid": 10**30}).encode(),
    "pid a string on this host": json.dumps({"lockId": "ab12", "host": socket.gethostname(), "pid": "1"}).encode(),
    "deep nesting": b"[" * 100_000,
    "too large": b'{"lockId": "ab12", "pad": "' + b"x" * (70 << 10) + b'"}',
}


@pytest.mark.parametrize("content", list(BAD_LOCKS.values()), ids=list(BAD_LOCKS))
def test_issue9_unreadable_lock_is_held_and_released_only_by_its_stand_in_id(tmp_path: Path,
                                                                             content: bytes) -> None:
    state = tmp_path / "state"
    lock = state / "locks" / "env-dev.lock"
    lock.parent.mkdir(parents=True)
    lock.write_bytes(content)
    r = run("lock", "status", "--env", "dev", "--state-dir", str(state))
    assert r.exit_code == 0
    held = r.json["lock"]
    assert held["unreadable"] is True and held["alive"] is True and held["problem"]
    assert held["lockId"].startswith("unreadable-")
    with pytest.raises(env_lock.LockHeld):  # apply refuses: an unreadable lock is never taken over
        env_lock.acquire(state, "env-dev", JOB_ID)
    assert lock.read_bytes() == content
    wrong = run("lock", "release", "--env", "dev", "--lock-id", "unreadable-0000", "--state-dir", str(state))
    assert wrong.exit_code == 1 and wrong.json["error"]["code"] == "lock-id-mismatch" and lock.exists()
    ok = run("lock", "release", "--env", "dev", "--lock-id", held["lockId"], "--state-dir", str(state))
    assert ok.exit_code == 0 and not lock.exists()
    mine, taken_over = env_lock.acquire(state, "env-dev", JOB_ID)
    assert taken_over is None and json.loads(lock.read_text())["lockId"] == mine["lockId"]


def test_issue9_lock_that_is_a_directory_is_held_and_never_removed_by_udeploy(tmp_path: Path) -> None:
    state = tmp_path / "state"
    lock = state / "locks" / "env-prod.lock"
    lock.mkdir(parents=True)
    held = run("lock", "status", "--env", "prod", "--state-dir", str(state)).json["lock"]
    assert held["unreadable"] is True and held["lockId"] is None
    with pytest.raises(env_lock.LockHeld, match="an operator must remove it"):
        env_lock.acquire(state, "env-prod", JOB_ID)
    r = run("lock", "release", "--env", "prod", "--lock-id", "None", "--state-dir", str(state))
    assert r.exit_code == 1 and r.json["error"]["code"] == "lock-id-mismatch" and lock.is_dir()


def test_issue9_lock_env_is_an_environment_never_a_path(tmp_path: Path) -> None:
    state = tmp_path / "a" / "state"
    (tmp_path / "x.lock").write_text(json.dumps({"lockId": "ab12", "host": "elsewhere", "pid": 1}))
    for args in (("lock", "status", "--env", "../../../x"), ("lock", "release", "--env", "../../../x",
                                                              "--lock-id", "ab12")):
        r = run(*args, "--state-dir", str(state))
        assert r.exit_code == 1 and r.json["error"]["code"] == "usage" and r.json["error"]["path"] == "--env"
    assert (tmp_path / "x.lock").exists()
    with pytest.raises(ValueError):
        env_lock.lock_path(state, "env-../../x")


# -- repository URLs and refs ----------------------------------------------------------------------

ACCEPTED_URLS = ["https://github.com/pikasTech/unidesk", "https://ci-token:s3cr3t@github.com/o/r.git",
                 "ssh://git@github.com/o/r.git", "ssh://git@host:2222/o/r", "git@github.com:o/r.git",
                 "host.example:o/r", "file:///srv/git/r.git"]
REFUSED_URLS = {
    "ext::sh -c touch% /tmp/pwned": "'ext::'", "ext::sh": "'ext::'", "fd::17": "'fd::'",
    "http://example.com/r": "'http://'", "git://example.com/r": "'git://'", "ftp://example.com/r": "'ftp://'",
    "-uhelp": "'-'", "--upload-pack=touch /tmp/x": "'-'", "ssh://-oProxyCommand=touch%20x/r": "option",
    "https://host/r with space": "whitespace", "https://host/r\n": "whitespace", "https://host/\x00r": "control",
    "file://remotehost/r": "absolute local path", "relative/path": "not a URL", "/srv/git/r.git": "not a URL",
    "": "non-empty", "https:///nohost": "no usable host",
}


@pytest.mark.parametrize("url", ACCEPTED_URLS)
def test_issue9_supported_transports_pass(url: str) -> None:
    assert check_repo_url(url, "$.repo") == url


@pytest.mark.parametrize("url,reason", list(REFUSED_URLS.items()), ids=[ascii(u) for u in REFUSED_URLS])
def test_issue9_other_transports_are_refused_by_name(url: str, reason: str) -> None:
    with pytest.raises(RepoUrlRefused, match=reason) as caught:
        check_repo_url(url, "$.repo")
    assert caught.value.code == "repo-url-refused" and caught.value.path == "$.repo"


def test_issue9_refused_url_message_never_carries_credentials() -> None:
    with pytest.raises(RepoUrlRefused) as caught:
        check_repo_url("http://ci-token:s3cr3t@example.com/r", "origin")
    assert "s3cr3t" not in caught.value.message


def test_issue9_git_provider_refuses_before_any_git_command(tmp_path: Path) -> None:
    """Defence in depth: the provider checks the URL even when no manifest parser did."""
    marker = tmp_path / "pwned"
    provider = GitProvider(cache_dir=tmp_path / "cache")
    for url in (f"ext::sh -c touch% {marker}", "fd::0", "-u" + str(marker)):
        with pytest.raises(RepoUrlRefused):
            provider.resolve(url, "0" * 40)
    assert not marker.exists() and not (tmp_path / "cache").exists()


def test_issue9_git_refuses_a_transport_an_insteadof_rewrite_leads_to(sample: SampleRepo, tmp_path: Path) -> None:
    """GIT_ALLOW_PROTOCOL: a URL that passes the check but is rewritten to git:// is still refused."""
    sample.repo.git.config("--file", sample.env["GIT_CONFIG_GLOBAL"], "--add",
                           "url.git://127.0.0.1:9/r.insteadOf", "https://rewritten.example/r")
    with pytest.raises(Exception) as caught:
        GitProvider(cache_dir=tmp_path / "cache").resolve("https://rewritten.example/r", "0" * 40)
    assert getattr(caught.value, "code", None) == "git-error" and "not allowed" in str(caught.value)


def test_issue9_gitpython_unsafe_switches_are_never_used() -> None:
    sources = [p for d in ("engine", "providers") for p in (ROOT / d).rglob("*.py")]
    assert sources
    for p in sources:
        text = p.read_text()
        assert "allow_unsafe_protocols" not in text and "allow_unsafe_options" not in text, p


REFS = ["origin/master", "master", "feature/x-1", "release-1.2", "-x", "--upload-pack=touch x", "a..b", "a b",
        "a~1", "a^", "a:b", "a?", "a*", "a[", "a\\b", "a@{1}", "@", "a@b", "/a", "a/", "a//b", "a.", ".a", "a/.b",
        "a.lock", "a/b.lock/c", "a\x01", "a\x7f", "ünïcode", "a/@/b"]


@pytest.mark.parametrize("branch", REFS, ids=[ascii(r) for r in REFS])
def test_issue9_ref_rules_agree_with_git_check_ref_format(branch: str) -> None:
    name = branch.removeprefix("origin/")
    git_says_ok = subprocess.run(["git", "check-ref-format", f"refs/heads/{name}"], capture_output=True).returncode == 0
    ours_ok = ref_problem(name) is None
    # Ours is git's rule plus one more: never a leading '-' (it could read as an option).
    assert ours_ok == (git_says_ok and not name.startswith("-")), (branch, git_says_ok)
    if not ours_ok:
        with pytest.raises(RefRefused):
            check_ref(branch, "--ref")


def test_issue9_ref_option_is_refused_before_git(cli: Cli, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    for ref in (f"--upload-pack=touch {marker}", "master..x", "master:x"):
        r = cli("plan", "--env", "dev", "--no-refresh", "--ref", ref)
        assert r.exit_code == 1 and r.json["error"]["code"] == "ref-refused" and r.json["error"]["path"] == "--ref"
        assert "Traceback" not in r.stdout + r.stderr
    assert not marker.exists()


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = copy.deepcopy(doc)
    target: Any = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


def test_issue9_deploy_json_repo_is_refused_at_parse_time_even_without_refresh(sample: SampleRepo, cli: Cli,
                                                                             tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    doc = sample.deploy_json()
    hostile = _set(doc, ("environments", "dev", "services", 0, "repo"), f"ext::sh -c touch% {marker}")
    sample.commit_change("deploy.json", json.dumps(hostile, indent=2), "hostile repo")
    r = cli("plan", "--env", "dev", "--no-refresh")
    assert r.exit_code == 1 and r.json["error"]["code"] == "repo-url-refused", r.stdout
    assert r.json["error"]["path"] == "deploy.json#$.environments.dev.services[0].repo"
    assert "'ext::'" in r.json["error"]["message"] and not marker.exists()
    local = tmp_path / "local.json"
    local.write_text(json.dumps({"schemaVersion": 1, "services": [
        {"id": "backend-core", "repo": "git://example.com/r", "commitId": "a" * 40}]}))
    r = cli("plan", "--file", str(local), "--no-refresh")
    assert r.exit_code == 1 and r.json["error"]["code"] == "repo-url-refused"
    assert r.json["error"]["path"].endswith("#$.services[0].repo")


def test_issue9_ci_declaration_and_config_repository_url_are_refused(sample: SampleRepo, cli: Cli) -> None:
    doc = sample.deploy_json()
    if "ci" in doc["environments"]["dev"]:
        hostile = _set(doc, ("environments", "dev", "ci", "repo"), "fd::3")
        sample.commit_change("deploy.json", json.dumps(hostile, indent=2), "hostile ci repo")
        r = cli("plan", "--env", "dev", "--no-refresh")
        assert r.json["error"]["code"] == "repo-url-refused"
        assert r.json["error"]["path"] == "deploy.json#$.environments.dev.ci.repo"
        sample.commit_change("deploy.json", json.dumps(doc, indent=2), "restore")
    config = json.loads((sample.clone / "config.json").read_text())
    hostile_config = _set(config, ("microservices", 1, "repository", "url"), "http://example.com/r")
    sample.commit_change("config.json", json.dumps(hostile_config, indent=2), "hostile config url")
    r = cli("plan", "--env", "dev", "--no-refresh")
    assert r.exit_code == 1 and r.json["error"]["code"] == "repo-url-refused"
    assert r.json["error"]["path"] == "config.json#$.microservices[1].repository.url"


# -- schema type holes -----------------------------------------------------------------------------

def fixture_docs() -> tuple[dict[str, Any], dict[str, Any]]:
    return json.loads((FIXTURE / "config.json").read_text()), json.loads((FIXTURE / "CI.json").read_text())


def _index(items: list[dict[str, Any]], **match: Any) -> int:
    return next(i for i, x in enumerate(items) if all(x.get(k) == v for k, v in match.items()))


def hostile_shapes() -> list[tuple[str, str, tuple[Any, ...], Any, str]]:
    """(name, document, path, value, the JSON path the error must name)."""
    config, ci = fixture_docs()
    up = _index(ci["artifacts"], kind="upstream-image")
    svc = _index(ci["artifacts"], kind="service-image")
    cq = _index(config["microservices"], id="code-queue")
    k3 = _index(config["microservices"], id="k3sctl-adapter")
    return [
        ("artifact id a list", "ci", ("artifacts", svc, "id"), ["x"], f"$.artifacts[{svc}].id"),
        ("upstream services null", "ci", ("artifacts", up, "services"), None, f"$.artifacts[{up}].services"),
        ("upstream services of numbers", "ci", ("artifacts", up, "services"), [1], f"$.artifacts[{up}].services[0]"),
        ("upstream image a number", "ci", ("artifacts", up, "upstreamImage"), 5, f"$.artifacts[{up}].upstreamImage"),
        ("service image a dict", "ci", ("artifacts", svc, "image"), {}, f"$.artifacts[{svc}].image"),
        ("artifact kind unknown", "ci", ("artifacts", svc, "kind"), "tarball", f"$.artifacts[{svc}].kind"),
        ("builder host a list", "ci", ("builder", "host"), ["D601"], "$.builder.host"),
        ("environments.dev a string", "config", ("environments", "dev"), "dev", "$.environments.dev"),
        ("prerequisite a string", "config", ("environments", "dev", "prerequisites", "dev-foundation"), "x",
         "$.environments.dev.prerequisites['dev-foundation']"),
        ("prerequisite host missing", "config", ("environments", "dev", "prerequisites", "dev-foundation"),
         {"manifest": "m", "namespace": "n"}, "$.environments.dev.prerequisites['dev-foundation']"),
        ("microservice id a list", "config", ("microservices", 0, "id"), ["a"], "$.microservices[0].id"),
        ("microservice id a path", "config", ("microservices", 0, "id"), "../x", "$.microservices[0].id"),
        # Python's `$` also matches before a final newline; the schemas' patterns must not.
        ("microservice id with a trailing newline", "config", ("microservices", 0, "id"), "backend-core\n",
         "$.microservices[0].id"),
        ("digest with a trailing newline", "ci", ("artifacts", up, "digest"), "sha256:" + "0" * 64 + "\n",
         f"$.artifacts[{up}].digest"),
        ("hostPathSource root a number", "config", ("microservices", cq, "hostPathSource", "root"), 1,
         f"$.microservices[{cq}].hostPathSource.root"),
        ("localMode compose port a string", "config", ("microservices", k3, "localMode", "compose", "healthPort"),
         "80", f"$.microservices[{k3}].localMode.compose.healthPort"),
        ("localMode host a list", "config", ("microservices", k3, "localMode", "host"), ["D601"],
         f"$.microservices[{k3}].localMode.host"),
        ("docker ssh port huge", "config", ("hosts", "main-server", "docker", "ssh", "port"), 10**30,
         "$.hosts['main-server'].docker.ssh.port"),
        ("docker socket a number", "config", ("hosts", "D601", "docker", "socket"), 5, "$.hosts.D601.docker.socket"),
    ]


@pytest.mark.parametrize("name,which,path,value,json_path", hostile_shapes(), ids=[h[0] for h in hostile_shapes()])
def test_issue9_hostile_shapes_are_schema_errors_naming_the_path(name: str, which: str, path: tuple[Any, ...],
                                                                 value: Any, json_path: str) -> None:
    config, ci = fixture_docs()
    parse_catalog(config, ci)  # the fixture itself is valid
    if which == "ci":
        ci = _set(ci, path, value)
    else:
        config = _set(config, path, value)
    with pytest.raises(ManifestInvalid) as caught:
        parse_catalog(config, ci)
    named = [d["path"] for d in caught.value.details]
    assert f"{which.replace('ci', 'CI')}.json#{json_path}" in named, (name, named)


@pytest.mark.parametrize("field,value", [("id", "backend-core\n"), ("commitId", "abc1234\n"), ("id", ["a"]),
                                         ("repo", 5)])
def test_issue9_deploy_json_patterns_and_types_hold(field: str, value: Any) -> None:
    entry = {"id": "backend-core", "repo": "https://github.com/pikasTech/unidesk", "commitId": "abc1234", field: value}
    with pytest.raises(ManifestInvalid) as caught:
        parse_deploy({"schemaVersion": 1, "services": [entry]}, source="deploy.json", environment=None)
    assert caught.value.path == f"deploy.json#$.services[0].{field}"


def test_issue9_hostile_ci_json_through_the_cli_is_a_manifest_error(sample: SampleRepo, cli: Cli) -> None:
    ci = json.loads((sample.clone / "CI.json").read_text())
    up = _index(ci["artifacts"], kind="upstream-image")
    sample.commit_change("CI.json", json.dumps(_set(ci, ("artifacts", up, "services"), None), indent=2),
                         "hostile CI.json")
    r = cli("plan", "--env", "dev", "--no-refresh")
    assert r.exit_code == 1 and r.json["error"]["code"] == "manifest-invalid"
    assert r.json["error"]["path"] == f"CI.json#$.artifacts[{up}].services"


@pytest.mark.parametrize("repo,commit", [("--upload-pack=touch PWNED", "a" * 40), ("ext::sh -c touch% PWNED", "a" * 40),
                                         ("https://github.com/pikasTech/unidesk", "--output=PWNED")])
def test_issue9_target_side_export_refuses_hostile_plan_params_before_git(tmp_path: Path, repo: str,
                                                                          commit: str) -> None:
    """A plan file with a recomputed digest can carry any node params: the export step checks them."""
    shell = LocalShell("D601", f"unix://{tmp_path}/no-docker.sock")
    params = {"repo": repo.replace("PWNED", str(tmp_path / "pwned")),
              "commit": commit.replace("PWNED", str(tmp_path / "pwned")), "project": "p", "context": "."}
    with pytest.raises(UdeployError) as caught:
        export_source(shell, Layout(str(tmp_path / "root")), params, "svc", dry_run=False)
    assert caught.value.code in ("repo-url-refused", "commit-not-found")
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "root").exists()
