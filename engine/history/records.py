"""Deployment history: one row per service a finished apply job deployed, read from the job
records of a state backend (local directory or shared), newest first.

A row is what an operator asks of a deployment: the service and commit, when the job finished,
the job id, who ran it (`owner@host` as the job recorded it), the digest of the plan it applied,
and whether live verification passed (`verified`: every node of the service succeeded, its verify
step included). Dry runs and jobs that never walked (refused, stopped by a state outage before
any result) carry no services and do not appear.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from udeploy.engine.state_api import StateBackend


@attrs.frozen
class Deployment:
    service: str
    commit: str
    when: str | None  # the job's finishedAt (ISO 8601, UTC)
    job_id: str
    who: str | None  # owner@host as recorded on the job; None for records older than that field
    plan_digest: str | None
    verified: bool
    outcome: str  # deployed | failed

    def to_json(self) -> dict[str, Any]:
        return {"service": self.service, "commit": self.commit, "when": self.when, "jobId": self.job_id,
                "who": self.who, "planDigest": self.plan_digest, "verified": self.verified, "outcome": self.outcome}


def deployments(backend: StateBackend, environment: str, service: str | None = None, *,
                verified_only: bool = True) -> list[Deployment]:
    """The deployments of `environment` (of `service` alone when given), newest first. With
    `verified_only=False`, attempts that failed verification are listed too (`verified: false`);
    services an upstream failure skipped were never attempted and are never listed."""
    rows = []
    for job in backend.job_results(environment):
        for entry in job["result"]["services"]:
            row = _row(job, entry)
            if row is None or (service is not None and row.service != service):
                continue
            if row.verified or (not verified_only and row.outcome == "failed"):
                rows.append(row)
    return rows


def _row(job: Mapping[str, Any], entry: object) -> Deployment | None:
    if not isinstance(entry, Mapping) or not isinstance(entry.get("id"), str) or \
            not isinstance(entry.get("commit"), str):
        return None
    owner, host = job.get("owner"), job.get("host")
    return Deployment(service=entry["id"], commit=entry["commit"], when=job.get("finishedAt"), job_id=job["jobId"],
                      who=f"{owner}@{host}" if owner and host else None, plan_digest=job.get("planDigest"),
                      verified=entry.get("verified") is True, outcome=str(entry.get("outcome", "")))
