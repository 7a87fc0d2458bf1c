"""Shared state on the lab's PostgreSQL (issue 13): one lock per environment across runners with
different state directories, leases taken over only after expiry, fencing, jobs and resume
visible from another runner, a database outage mid-apply, and no secret value in a dump."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.apply.conftest import Lab
from tests.state.conftest import Machine, PrivateCluster, wait_for
from udeploy.engine.state_api import LeaseLost, LockHeld
from udeploy.providers.state_postgres import PostgresState

SERVICES = ["backend-core", "frontend", "findjob", "todo-note", "project-manager"]


def plan_out(lab: Lab, path: Path, *services: str) -> dict[str, Any]:
    r = lab.cli("plan", "--env", "prod", "-out", str(path), *[a for s in services for a in ("--service", s)])
    assert r.exit_code == 0, r.stdout + r.stderr
    doc: dict[str, Any] = r.json
    return doc


def publish(lab: Lab, *services: str) -> None:
    for s in services:
        lab.publish(s, lab.sample.commits["frontend-v2"])


def finished(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, dict[str, Any]]:
    out, err = proc.communicate(timeout=timeout)
    try:
        return proc.returncode, json.loads(out)
    except json.JSONDecodeError:
        raise AssertionError(f"no JSON from udeploy (exit {proc.returncode}): {out}\n{err}") from None


def test_migrations_are_versioned_and_applied_once(state_url: str) -> None:
    PostgresState(state_url).close()
    PostgresState(state_url).close()
    with psycopg.connect(state_url, autocommit=True) as conn:
        rows = conn.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    assert rows == [(1, "0001_initial.sql"), (2, "0002_job_history.sql")]


def test_fencing_a_taken_over_lease_is_lost_by_token(state_url: str) -> None:
    first, second = PostgresState(state_url), PostgresState(state_url)
    try:
        old = first.acquire_lock("env-dev", "job-old", 1)
        with pytest.raises(LockHeld, match="job-old"):
            second.acquire_lock("env-dev", "job-new", 1)
        time.sleep(1.2)
        new = second.acquire_lock("env-dev", "job-new", 30)
        assert new.token is not None and old.token is not None and new.token > old.token
        assert new.taken_over is not None and new.taken_over["jobId"] == "job-old"
        with pytest.raises(LeaseLost, match="job-new .* took it over with fencing token"):
            first.check_lock(old)
        with pytest.raises(LeaseLost):
            first.renew_lock(old, 30)
        second.check_lock(new)
    finally:
        first.close()
        second.close()


CONTENDER = textwrap.dedent("""
    import json, sys, time
    from udeploy.engine.state_api import LockHeld, open_backend
    backend = open_backend(sys.argv[1])
    me = sys.argv[2]
    time.sleep(max(0.0, float(sys.argv[3]) - time.time()))  # all contend at the same moment
    refusals = []
    while True:
        try:
            grant = backend.acquire_lock("env-prod", me, 10)
        except LockHeld as exc:
            refusals.append({"code": exc.code, "message": exc.message, "holder": exc.details["jobId"]})
            time.sleep(0.02)
            continue
        start = time.time()
        time.sleep(0.3)
        backend.check_lock(grant)
        end = time.time()
        backend.release_lock("env-prod", grant.lock_id)
        break
    print(json.dumps({"job": me, "start": start, "end": end, "token": grant.token, "refusals": refusals}))
""")


def test_eight_contenders_hold_the_lock_one_at_a_time(state_url: str, tmp_path: Path) -> None:
    PostgresState(state_url).close()  # migrated before the race
    at = str(time.time() + 4)
    procs = [subprocess.Popen([sys.executable, "-c", CONTENDER, state_url, f"job-{i}", at], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, cwd=tmp_path) for i in range(8)]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        results.append(json.loads(out))
    spans = sorted((r["start"], r["end"], r["job"]) for r in results)
    for (_, end, a), (start, _, b) in zip(spans, spans[1:], strict=False):
        assert end <= start, f"{a} and {b} held env-prod at the same time"
    assert len({r["token"] for r in results}) == 8  # a new fencing token for every acquisition
    losers = [r for r in results if r["refusals"]]
    assert len(losers) == 7  # all but the first had to wait
    jobs = {r["job"] for r in results}
    for r in losers:
        for refusal in r["refusals"]:
            assert refusal["code"] == "lock-held" and refusal["holder"] in jobs - {r["job"]}
            assert f"locked by job {refusal['holder']}" in refusal["message"]


def test_two_runners_with_different_state_dirs_one_url_exactly_one_applies(
        machines: tuple[Machine, Machine], tmp_path: Path) -> None:
    a, b = machines
    publish(a.lab, "findjob", "todo-note")
    plan_out(a.lab, tmp_path / "p.json", "findjob", "todo-note")
    procs = [m.spawn("apply", str(tmp_path / "p.json")) for m in (a, b)]
    (code_a, doc_a), (code_b, doc_b) = (finished(p) for p in procs)
    outcomes = sorted([(code_a, doc_a), (code_b, doc_b)], key=lambda o: o[0])
    (win_code, win), (lose_code, lose) = outcomes
    assert win_code == 0 and win["state"] == "succeeded", win
    # The loser either met the lock, or came after the winner and found the plan spent; never both apply.
    assert lose_code in (1, 4), lose
    if lose_code == 1:
        assert lose["error"]["code"] == "lock-held" and win["jobId"] in lose["error"]["message"]
    jobs = b.cli("job", "list").json["jobs"]  # the other runner's directory knows nothing; the database does
    assert [j["jobId"] for j in jobs] == [win["jobId"]]
    assert not (a.state_dir / "jobs").exists() and not (b.state_dir / "jobs").exists()


def test_kill_9_holder_is_taken_over_only_after_the_lease_and_resumed_elsewhere(
        machines: tuple[Machine, Machine], tmp_path: Path) -> None:
    a, b = machines
    publish(a.lab, *SERVICES)
    path = tmp_path / "p.json"
    plan_out(a.lab, path, *SERVICES)
    proc = a.spawn("apply", str(path), "--parallelism", "1")
    backend = PostgresState(a.state_url)
    try:
        def three_done() -> str | None:
            for j in backend.list_jobs():
                nodes = backend.open_job(j["jobId"]).status()["nodes"]
                if sum(n.get("state") == "succeeded" for n in nodes.values()) >= 3:
                    return str(j["jobId"])
            return None

        killed = wait_for(three_done, 90, "three nodes to succeed")
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        refused = b.cli("apply", str(path))  # the lease has not run out yet
        assert refused.exit_code == 1 and refused.json["error"]["code"] == "lock-held", refused.stdout
        assert killed in refused.json["error"]["message"]
        wait_for(lambda: not (backend.read_lock("env-prod") or {}).get("alive"), 10, "the lease to expire")
        status = b.cli("job", "status", killed).json  # followed from the other runner
        assert status["state"] == "died" and status["diedNote"]
        r = b.cli("apply", str(path))
        assert r.exit_code == 0, r.stdout + r.stderr
        assert r.json["tookOverLock"]["jobId"] == killed
        assert len(r.json["resumed"]) >= 3  # resume from the other "machine"
        assert all(s["verified"] for s in r.json["services"])
        listed = {j["jobId"]: j["state"] for j in a.cli("job", "list").json["jobs"]}
        assert listed == {killed: "died", r.json["jobId"]: "succeeded"}
        log = a.cli("job", "status", r.json["jobId"], "--tail-bytes", "1000000").json["logTail"]
        assert f"abandoned by job {killed} (its lease expired" in log
    finally:
        backend.close()
        if proc.poll() is None:
            proc.kill()


def test_postgres_stopped_mid_apply_stops_cleanly_and_a_rerun_converges(
        lab: Lab, private_cluster: PrivateCluster, tmp_path: Path) -> None:
    runner = Machine(lab, tmp_path / "runner", private_cluster.url)
    publish(lab, *SERVICES)
    path = tmp_path / "p.json"
    plan_out(lab, path, *SERVICES)
    proc = runner.spawn("apply", str(path), "--parallelism", "1")
    backend = PostgresState(private_cluster.url)

    def two_done() -> str | None:
        assert proc.poll() is None, proc.communicate()
        for j in backend.list_jobs():
            nodes = backend.open_job(j["jobId"]).status()["nodes"]
            if sum(n.get("state") == "succeeded" for n in nodes.values()) >= 2:
                return str(j["jobId"])
        return None

    job = wait_for(two_done, 90, "two nodes to succeed")
    backend.close()
    private_cluster.stop()
    code, doc = finished(proc)
    assert code == 1 and doc["error"]["code"] == "state-unavailable", doc
    assert "stopped at" in doc["error"]["message"] and "re-run the same plan" in doc["error"]["message"]
    succeeded_then = set(doc["error"]["details"]["succeeded"])
    private_cluster.start()
    backend = PostgresState(private_cluster.url)
    try:
        status = backend.open_job(job).status()
        assert status["state"] in ("died", "failed")
        recorded = {n for n, rec in status["nodes"].items() if rec.get("state") == "succeeded"}
        applied = backend.resume(status["planDigest"]).done
        assert recorded <= applied <= succeeded_then | recorded  # every recorded success is a resume record
        wait_for(lambda: not (backend.read_lock("env-prod") or {}).get("alive"), 10, "the lease to expire")
    finally:
        backend.close()
    r = runner.cli("apply", str(path))
    assert r.exit_code == 0, r.stdout + r.stderr
    assert set(r.json["resumed"]) == applied
    assert all(s["verified"] for s in r.json["services"])


def test_a_dump_of_the_database_holds_no_secret_value(lab: Lab, state_url: str, tmp_path: Path,
                                                      lab_postgres: dict[str, Any]) -> None:
    runner = Machine(lab, tmp_path / "runner", state_url)
    lab.publish("baidu-netdisk", lab.sample.commits["frontend-v2"])
    values = {"UNIDESK_BAIDU_NETDISK_CLIENT_ID": "cid-Qw7rT2", "UNIDESK_BAIDU_NETDISK_CLIENT_SECRET": "sec-K4mZ9x",
              "UNIDESK_BAIDU_NETDISK_TOKEN_KEY": "tok-H8pL3v"}
    lab.write_secrets(values)
    path = tmp_path / "p.json"
    plan_out(lab, path, "baidu-netdisk")
    r = runner.cli("apply", str(path))
    assert r.exit_code == 0, r.stdout + r.stderr
    dump = subprocess.run([str(Path(lab_postgres["bin"]) / "pg_dump"), "--dbname", state_url],
                          capture_output=True, text=True, check=True, timeout=60,
                          env={**os.environ, "PGPASSFILE": lab_postgres["passfile"]}).stdout
    assert r.json["jobId"] in dump and "udeploy_job_log" in dump  # the dump holds the job
    for secret in values.values():
        assert secret not in dump, f"a secret value is in the state database: {secret}"
