-- udeploy shared state, version 2: what `udeploy history` and `rollback` read (docs/state.md).
-- Who ran a job (`owner`, `host`) is in udeploy_jobs since version 1; the history reads the
-- finished, non-dry-run jobs of one environment newest first, and this index serves that read.
CREATE INDEX udeploy_jobs_history ON udeploy_jobs (environment, finished_at DESC, job_id DESC)
    WHERE finished_at IS NOT NULL AND NOT dry_run;
