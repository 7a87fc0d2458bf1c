-- udeploy shared state, version 1 (docs/state.md). What the local .state/ directory holds, in tables.

-- One row per environment lock: a lease. `token` comes from the sequence on every acquisition, so
-- a later holder always has a larger token than any earlier one (fencing).
CREATE SEQUENCE udeploy_fencing_token;
CREATE TABLE udeploy_locks (
    scope       text PRIMARY KEY,            -- env-dev, env-prod, local-manifest
    lock_id     text NOT NULL,
    token       bigint NOT NULL,
    owner       text NOT NULL,
    host        text NOT NULL,
    pid         integer NOT NULL,
    job_id      text NOT NULL,
    created_at  timestamptz NOT NULL,
    renewed_at  timestamptz NOT NULL,
    expires_at  timestamptz NOT NULL
);

-- Jobs: state.json's fields. `result` is the job summary apply prints (names, states, messages).
CREATE TABLE udeploy_jobs (
    job_id       text PRIMARY KEY,
    state        text NOT NULL,
    pid          integer NOT NULL,
    host         text NOT NULL,
    owner        text NOT NULL,
    scope        text,                       -- the lock scope the job ran under
    lock_token   bigint,                     -- the lease it ran under: running without it = died
    plan_digest  text NOT NULL,
    plan_file    text,
    environment  text,
    dry_run      boolean NOT NULL,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz,
    result       jsonb
);

CREATE TABLE udeploy_job_nodes (
    job_id   text NOT NULL REFERENCES udeploy_jobs ON DELETE CASCADE,
    node_id  text NOT NULL,
    ordinal  integer NOT NULL,               -- the plan's node order
    record   jsonb NOT NULL,                 -- {"state": ..., "at": ..., "message": ...}
    PRIMARY KEY (job_id, node_id)
);

-- The job log, one row per line; `job status` reads a bounded tail.
CREATE TABLE udeploy_job_log (
    job_id  text NOT NULL REFERENCES udeploy_jobs ON DELETE CASCADE,
    seq     bigserial,
    line    text NOT NULL,
    PRIMARY KEY (job_id, seq)
);

-- Resume and spent plans: the nodes of a plan (by digest) that succeeded and were verified, and
-- each service's runtime fingerprint after its last mutating step.
CREATE TABLE udeploy_applied_nodes (
    plan_digest  text NOT NULL,
    node_id      text NOT NULL,
    applied_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (plan_digest, node_id)
);
CREATE TABLE udeploy_plan_runtime (
    plan_digest  text NOT NULL,
    service      text NOT NULL,
    fingerprint  text NOT NULL,
    PRIMARY KEY (plan_digest, service)
);
