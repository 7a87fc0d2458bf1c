"""udeploy's core: load and join the manifests, build the step DAG, diff, guardrails, the plan
value and its file, apply/walk, jobs and locks, rendering. No sockets or subprocesses here except
through a provider."""

__version__ = "0.1.0"
