"""The desired-state part of every command's JSON: the manifest source and the environment."""

from __future__ import annotations

from typing import Any

from udeploy.engine.load.desired import DesiredState
from udeploy.engine.load.source import ManifestSource


def manifest_json(source: ManifestSource) -> dict[str, Any]:
    if source.mode == "env":
        return {"mode": "env", "remote": source.remote, "ref": source.ref, "commit": source.commit,
                "deployBlob": source.deploy_blob, "configBlob": source.config_blob, "ciBlob": source.ci_blob}
    return {"mode": "file", "file": source.file, "sha256": source.file_sha256, "configSha256": source.config_blob,
            "ciSha256": source.ci_blob}


def environment_json(state: DesiredState) -> dict[str, Any] | None:
    s = state.settings
    if s is None:
        return None
    return {"name": s.name, "namespace": s.namespace, "providerId": s.provider_id,
            "databaseFingerprint": s.database_fingerprint}
