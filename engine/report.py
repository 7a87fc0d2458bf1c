"""The desired-state part of every command's JSON: the manifest source and the joined facts."""

from __future__ import annotations

from typing import Any

from engine.desired import DesiredService, DesiredState
from engine.source import ManifestSource


def manifest_json(source: ManifestSource) -> dict[str, Any]:
    if source.mode == "env":
        return {"mode": "env", "remote": source.remote, "ref": source.ref, "commit": source.commit,
                "deployBlob": source.deploy_blob, "configBlob": source.config_blob, "ciBlob": source.ci_blob}
    return {"mode": "file", "file": source.file, "sha256": source.file_sha256}


def environment_json(state: DesiredState) -> dict[str, Any] | None:
    s = state.settings
    if s is None:
        return None
    return {"name": s.name, "namespace": s.namespace, "providerId": s.provider_id,
            "databaseFingerprint": s.database_fingerprint}


def service_facts(d: DesiredService) -> dict[str, Any]:
    """The joined catalog facts of one service (no live state)."""
    ms, env = d.microservice, d.environment
    target = env.target if env else None
    facts: dict[str, Any] = {
        "id": d.id, "repo": d.repo, "requestedCommit": d.requested_commit, "resolvedCommit": d.resolved_commit,
        "commitOverride": d.commit_override, "sourceKind": ms.source_kind.value,
        "deployment": {"mode": ms.deployment_mode, "host": ms.deployment_host},
        "catalogCommit": ms.catalog_commit,
    }
    if env is not None:
        facts["consumerKind"] = env.consumer_kind
        facts["liveApply"] = {"mode": env.live_apply.mode.value, "reason": env.live_apply.reason}
    if target is not None:
        facts["target"] = {"host": target.host}
        if target.compose:
            c = target.compose
            facts["target"]["compose"] = {"project": c.project, "service": c.service, "file": c.file}
        if target.k3s:
            k = target.k3s
            facts["target"]["k3s"] = {"namespace": k.namespace, "manifest": k.manifest, "objects": list(k.objects)}
    return facts
