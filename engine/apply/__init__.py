"""Apply: re-check that a saved plan can still be trusted (digest, lock, manifest ref, observed
fingerprints, guardrails), walk its DAG through the providers, and keep the job records, the
environment lock and the resume records in a state backend (`engine/state_api.py`): the local
directory (`state`), or a shared one named by `--state-url`; `lease` renews and fences the lock.

`start` is `udeploy apply` as one call (a saved plan, or plan-then-apply in one step); `refusal`
turns what policy stops into a refusal naming its rule; `detach` runs an apply in a child process;
`run` is the trust checks and the walk; `jobs`, `job_status` and `lock` are the state it keeps;
`progress` is the typed events the walk reports to its watcher (`job_status.follow_job` rebuilds
them from a job record).
"""
