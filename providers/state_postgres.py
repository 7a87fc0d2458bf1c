"""The PostgreSQL state backend (`postgresql://…`, psycopg 3): locks as leases, jobs, resume records.

Registered under `postgresql` in the `udeploy.state` entry-point group. Several runners (or
operators) that name the same database share one lock per environment, see each other's jobs,
and resume each other's plans. The tables are created by numbered migrations
(`state_postgres_sql/NNNN_*.sql`, recorded in `schema_migrations`), applied under an advisory
lock on first use. What is stored is what the local directory stores (docs/state.md): no secret
value. The password never comes from a reviewed file: libpq reads it from PGPASSFILE/PGPASSWORD.

Leases use the database's clock (`now()`), so runners with skewed clocks still agree on expiry.
One connection per backend, serialized by a lock (the walk's threads and the heartbeat share it);
a connection that broke is reopened on the next call, and a call that cannot reach the server is
`state-unavailable`.
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import secrets
import socket
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import psycopg
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from udeploy.engine.state_api import (
    JobNotFound,
    LeaseLost,
    LockGrant,
    LockHeld,
    LockMismatch,
    StateUnavailable,
    StateUnusable,
    pid_alive,
    redact_password,
)

MIGRATIONS = Path(__file__).with_name("state_postgres_sql")
CONNECT_TIMEOUT = 5  # seconds: a state server that does not answer fails the command, not hangs it
T = TypeVar("T")
LOCK_COLUMNS = ("lock_id, scope, token, owner, host, pid, job_id, created_at, renewed_at, expires_at, "
                "expires_at > now() AS live")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds")


def _iso(value: dt.datetime | None) -> str | None:
    return value.astimezone(dt.UTC).isoformat(timespec="milliseconds") if value else None



def migrate(conn: psycopg.Connection[Any]) -> list[int]:
    """Apply the numbered migrations the database lacks, in order; returns the versions applied."""
    known = sorted((int(p.name.split("_", 1)[0]), p) for p in MIGRATIONS.glob("[0-9]*_*.sql"))
    applied = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('udeploy-schema-migrations'))")
        conn.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version integer PRIMARY KEY, "
                     "name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())")
        done = {r[0] for r in conn.execute("SELECT version FROM schema_migrations")}
        newest = known[-1][0] if known else 0
        if done and max(done) > newest:
            raise StateUnusable(f"the state database has schema version {max(done)}; this udeploy knows up to "
                                f"{newest}: upgrade udeploy", path="schema_migrations")
        for version, path in known:
            if version not in done:
                conn.execute(path.read_text())  # type: ignore[arg-type]  # our own file, no parameters
                conn.execute("INSERT INTO schema_migrations (version, name) VALUES (%s, %s)", (version, path.name))
                applied.append(version)
    return applied


class PostgresState:
    """One database holding udeploy's shared state (see the module docstring)."""

    @classmethod
    def from_url(cls, url: str) -> PostgresState:
        return cls(url)

    def __init__(self, url: str) -> None:
        self.url = url
        self._conn: psycopg.Connection[Any] | None = None
        self._mutex = threading.RLock()
        self._run(migrate)

    @property
    def location(self) -> str:
        return redact_password(self.url)

    # -- connection -------------------------------------------------------------------------------

    def _run(self, work: Callable[[psycopg.Connection[Any]], T]) -> T:
        with self._mutex:
            try:
                if self._conn is None or self._conn.closed:
                    self._conn = psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                                 application_name="udeploy", keepalives_idle=5,
                                                 keepalives_interval=2, keepalives_count=2)
                return work(self._conn)
            except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                self._drop()
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
                raise StateUnavailable(f"the state backend {self.location} cannot be reached: {first}",
                                       path=self.location) from None

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except psycopg.Error:
                pass
        self._conn = None

    def close(self) -> None:
        with self._mutex:
            self._drop()

    # -- locks ------------------------------------------------------------------------------------

    def acquire_lock(self, scope: str, job_id: str, lease_seconds: float) -> LockGrant:
        lock_id = secrets.token_hex(8)
        who = (getpass.getuser(), socket.gethostname(), os.getpid())

        def take(conn: psycopg.Connection[Any]) -> LockGrant:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('udeploy-lock:' || %s))", (scope,))
                held = _lock_doc(conn.cursor(row_factory=dict_row).execute(
                    f"SELECT {LOCK_COLUMNS} FROM udeploy_locks WHERE scope = %s", (scope,)).fetchone())
                if held is not None and held["alive"]:
                    raise _held_error(scope, held)
                row = conn.cursor(row_factory=dict_row).execute(
                    "INSERT INTO udeploy_locks AS l (scope, lock_id, token, owner, host, pid, job_id, created_at, "
                    "renewed_at, expires_at) VALUES (%s, %s, nextval('udeploy_fencing_token'), %s, %s, %s, %s, "
                    "now(), now(), now() + make_interval(secs => %s::float8)) ON CONFLICT (scope) DO UPDATE SET "
                    "lock_id = EXCLUDED.lock_id, token = EXCLUDED.token, owner = EXCLUDED.owner, "
                    "host = EXCLUDED.host, pid = EXCLUDED.pid, job_id = EXCLUDED.job_id, "
                    "created_at = EXCLUDED.created_at, renewed_at = EXCLUDED.renewed_at, "
                    f"expires_at = EXCLUDED.expires_at RETURNING {LOCK_COLUMNS}",
                    (scope, lock_id, *who, job_id, lease_seconds)).fetchone()
                mine = _lock_doc(row)
                assert mine is not None
                mine.pop("alive")
                return LockGrant(scope=scope, lock_id=lock_id, token=mine["token"], record=mine, taken_over=held)

        return self._run(take)

    def renew_lock(self, grant: LockGrant, lease_seconds: float) -> None:
        renewed = self._run(lambda conn: conn.execute(
            "UPDATE udeploy_locks SET renewed_at = now(), expires_at = now() + make_interval(secs => %s::float8) "
            "WHERE scope = %s AND token = %s AND expires_at > now()",
            (lease_seconds, grant.scope, grant.token)).rowcount)
        if not renewed:
            raise self._lost(grant)

    def check_lock(self, grant: LockGrant) -> None:
        held = self._run(lambda conn: conn.execute(
            "SELECT 1 FROM udeploy_locks WHERE scope = %s AND token = %s AND expires_at > now()",
            (grant.scope, grant.token)).fetchone())
        if held is None:
            raise self._lost(grant)

    def _lost(self, grant: LockGrant) -> LeaseLost:
        now = self.read_lock(grant.scope)
        if now is None:
            why = "the lock was released (an operator's `udeploy lock release`?)"
        elif now["token"] != grant.token:
            why = (f"job {now['jobId']} ({now['owner']}@{now['host']}, pid {now['pid']}) took it over with "
                   f"fencing token {now['token']} after our lease (token {grant.token}) expired")
        else:
            why = f"our lease (token {grant.token}) expired at {now['expiresAt']} without a renewal"
        return LeaseLost(f"the lock on {grant.scope} is no longer ours: {why}; nothing more is changed",
                         path=grant.scope, details={"token": grant.token, "now": now})

    def read_lock(self, scope: str) -> dict[str, Any] | None:
        return _lock_doc(self._run(lambda conn: conn.cursor(row_factory=dict_row).execute(
            f"SELECT {LOCK_COLUMNS} FROM udeploy_locks WHERE scope = %s", (scope,)).fetchone()))

    def release_lock(self, scope: str, lock_id: str, *, strict: bool = True) -> None:
        def release(conn: psycopg.Connection[Any]) -> str | None:
            if conn.execute("DELETE FROM udeploy_locks WHERE scope = %s AND lock_id = %s",
                            (scope, lock_id)).rowcount:
                return None
            row = conn.execute("SELECT lock_id FROM udeploy_locks WHERE scope = %s", (scope,)).fetchone()
            return row[0] if row else None

        other = self._run(release)
        if other is not None and strict:
            raise LockMismatch(f"lock {scope} has id {other}, not {lock_id}", path=scope)

    # -- jobs -------------------------------------------------------------------------------------

    def create_job(self, *, plan_digest: str, plan_file: str | None, environment: str | None, dry_run: bool,
                   nodes: list[str], job_id: str | None = None, lock: LockGrant | None = None) -> PostgresJob:
        job_id = job_id or dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)

        def create(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO udeploy_jobs (job_id, state, pid, host, owner, scope, lock_token, plan_digest, "
                    "plan_file, environment, dry_run, started_at) VALUES (%s, 'running', %s, %s, %s, %s, %s, %s, "
                    "%s, %s, %s, now())",
                    (job_id, os.getpid(), socket.gethostname(), getpass.getuser(), lock.scope if lock else None,
                     lock.token if lock else None, plan_digest, plan_file, environment, dry_run))
                with conn.cursor() as cur:
                    cur.executemany("INSERT INTO udeploy_job_nodes (job_id, node_id, ordinal, record) "
                                    "VALUES (%s, %s, %s, %s)",
                                    [(job_id, n, i, Jsonb({"state": "pending"})) for i, n in enumerate(nodes)])

        self._run(create)
        return PostgresJob(self, job_id)

    def open_job(self, job_id: str) -> PostgresJob:
        found = self._run(lambda conn: conn.execute("SELECT 1 FROM udeploy_jobs WHERE job_id = %s",
                                                    (job_id,)).fetchone())
        if found is None:
            raise JobNotFound(f"no job {job_id} in {self.location}", path=job_id)
        return PostgresJob(self, job_id)

    def list_jobs(self) -> list[dict[str, Any]]:
        rows, locks = self._run(lambda conn: (
            conn.cursor(row_factory=dict_row).execute(f"SELECT {JOB_COLUMNS} FROM udeploy_jobs ORDER BY job_id")
            .fetchall(),
            _live_tokens(conn)))
        return [{k: v for k, v in _job_doc(r, locks).items() if k in LISTED} for r in rows]

    def job_results(self, environment: str) -> list[dict[str, Any]]:
        rows, locks = self._run(lambda conn: (
            conn.cursor(row_factory=dict_row).execute(
                f"SELECT {JOB_COLUMNS} FROM udeploy_jobs WHERE environment = %s AND finished_at IS NOT NULL "
                "AND NOT dry_run AND state IN ('succeeded', 'failed') AND jsonb_typeof(result -> 'services') = "
                "'array' ORDER BY finished_at DESC, job_id DESC", (environment,)).fetchall(),
            _live_tokens(conn)))
        return [_job_doc(r, locks) for r in rows]

    # -- resume -----------------------------------------------------------------------------------

    def resume(self, plan_digest: str) -> PostgresResume:
        return PostgresResume(self, plan_digest)


JOB_COLUMNS = ("job_id, state, pid, host, owner, scope, lock_token, plan_digest, plan_file, environment, dry_run, "
               "started_at, finished_at, result")
LISTED = ("jobId", "state", "environment", "dryRun", "startedAt", "finishedAt", "planDigest")


def _live_tokens(conn: psycopg.Connection[Any]) -> dict[str, int]:
    return dict(conn.execute("SELECT scope, token FROM udeploy_locks WHERE expires_at > now()").fetchall())


def _job_doc(row: Mapping[str, Any], live_tokens: Mapping[str, int]) -> dict[str, Any]:
    """A job row as `status.json`'s document. A running job has died when its process is gone
    (same host) or its lease is gone (any host): nobody can be running it any more."""
    doc = {"jobId": row["job_id"], "state": row["state"], "pid": row["pid"], "host": row["host"],
           "owner": row["owner"], "planDigest": row["plan_digest"], "planFile": row["plan_file"],
           "environment": row["environment"], "dryRun": row["dry_run"], "startedAt": _iso(row["started_at"]),
           "finishedAt": _iso(row["finished_at"]), "result": row["result"]}
    if doc["state"] == "running":
        if row["host"] == socket.gethostname() and not pid_alive(row["pid"]):
            doc["state"], doc["diedNote"] = "died", f"process {row['pid']} ended without finishing the job"
        elif row["scope"] and live_tokens.get(row["scope"]) != row["lock_token"]:
            doc["state"] = "died"
            doc["diedNote"] = (f"its lease on {row['scope']} (token {row['lock_token']}) is gone: the process on "
                               f"{row['host']} (pid {row['pid']}) ended, or lost the state database, without "
                               "finishing the job")
    return doc


def _lock_doc(row: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {"lockId": row["lock_id"], "scope": row["scope"], "owner": row["owner"], "host": row["host"],
            "pid": row["pid"], "jobId": row["job_id"], "token": row["token"], "createdAt": _iso(row["created_at"]),
            "renewedAt": _iso(row["renewed_at"]), "expiresAt": _iso(row["expires_at"]), "alive": row["live"]}


def _held_error(scope: str, held: Mapping[str, Any]) -> LockHeld:
    return LockHeld(f"environment {scope} is locked by job {held['jobId']} ({held['owner']}@{held['host']}, "
                    f"pid {held['pid']}, since {held['createdAt']}; lease until {held['expiresAt']})",
                    path=scope, details={k: v for k, v in held.items() if k != "alive"})


class PostgresJob:
    """One job's rows: `udeploy_jobs`, its `udeploy_job_nodes`, and its `udeploy_job_log` lines."""

    def __init__(self, backend: PostgresState, job_id: str) -> None:
        self.backend = backend
        self.id = job_id

    def status(self) -> dict[str, Any]:
        def read(conn: psycopg.Connection[Any]) -> dict[str, Any]:
            cur = conn.cursor(row_factory=dict_row)
            row = cur.execute(f"SELECT {JOB_COLUMNS} FROM udeploy_jobs WHERE job_id = %s", (self.id,)).fetchone()
            if row is None:
                raise JobNotFound(f"no job {self.id} in {self.backend.location}", path=self.id)
            doc = _job_doc(row, _live_tokens(conn))
            doc["nodes"] = dict(conn.execute("SELECT node_id, record FROM udeploy_job_nodes WHERE job_id = %s "
                                             "ORDER BY ordinal, node_id", (self.id,)).fetchall())
            return doc

        return self.backend._run(read)

    def log(self, message: str) -> None:
        self.backend._run(lambda conn: conn.execute("INSERT INTO udeploy_job_log (job_id, line) VALUES (%s, %s)",
                                                    (self.id, f"{_now()} {message}")))

    def tail(self, max_bytes: int) -> str | None:
        """The last `max_bytes` bytes of the log, read from only the lines that reach into them."""
        if max_bytes <= 0:
            return ""
        lines = self.backend._run(lambda conn: conn.execute(
            "SELECT line FROM (SELECT seq, line, sum(octet_length(line) + 1) OVER (ORDER BY seq DESC) AS upto "
            "FROM udeploy_job_log WHERE job_id = %s) t WHERE upto - octet_length(line) - 1 < %s ORDER BY seq",
            (self.id, max_bytes)).fetchall())
        data = "".join(line + "\n" for (line,) in lines).encode()
        return data[-max_bytes:].decode(errors="replace")

    def node(self, node_id: str, state: str, **facts: Any) -> None:
        record = Jsonb({"state": state, "at": _now(), **facts})
        self.backend._run(lambda conn: conn.execute(
            "INSERT INTO udeploy_job_nodes AS n (job_id, node_id, ordinal, record) VALUES (%s, %s, 2147483647, %s) "
            "ON CONFLICT (job_id, node_id) DO UPDATE SET record = n.record || EXCLUDED.record",
            (self.id, node_id, record)))

    def finish(self, state: str, result: Mapping[str, Any]) -> None:
        self.backend._run(lambda conn: conn.execute(
            "UPDATE udeploy_jobs SET state = %s, finished_at = now(), result = %s WHERE job_id = %s",
            (state, Jsonb(dict(result)), self.id)))


class PostgresResume:
    """A plan's applied nodes and runtime fingerprints, read once when the apply starts."""

    def __init__(self, backend: PostgresState, digest: str) -> None:
        self.backend = backend
        self.digest = digest
        nodes, runtime = backend._run(lambda conn: (
            [r[0] for r in conn.execute("SELECT node_id FROM udeploy_applied_nodes WHERE plan_digest = %s",
                                        (digest,))],
            dict(conn.execute("SELECT service, fingerprint FROM udeploy_plan_runtime WHERE plan_digest = %s",
                              (digest,)).fetchall())))
        self._done: set[str] = set(nodes)
        self._runtime: dict[str, str] = runtime
        self._lock = threading.Lock()

    @property
    def location(self) -> str:
        return f"{self.backend.location} (udeploy_applied_nodes, plan {self.digest[:19]})"

    @property
    def done(self) -> set[str]:
        return set(self._done)

    def runtime_fingerprint(self, service: str | None) -> str | None:
        return self._runtime.get(service or "")

    def record(self, node_id: str, service: str | None, runtime_fingerprint: str | None) -> None:
        def write(conn: psycopg.Connection[Any]) -> None:
            with conn.transaction():
                conn.execute("INSERT INTO udeploy_applied_nodes (plan_digest, node_id) VALUES (%s, %s) "
                             "ON CONFLICT DO NOTHING", (self.digest, node_id))
                if service and runtime_fingerprint:
                    conn.execute("INSERT INTO udeploy_plan_runtime (plan_digest, service, fingerprint) VALUES "
                                 "(%s, %s, %s) ON CONFLICT (plan_digest, service) DO UPDATE SET "
                                 "fingerprint = EXCLUDED.fingerprint", (self.digest, service, runtime_fingerprint))

        self.backend._run(write)
        with self._lock:
            self._done.add(node_id)
            if service and runtime_fingerprint:
                self._runtime[service] = runtime_fingerprint
