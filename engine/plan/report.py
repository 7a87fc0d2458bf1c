"""What the plan records of the desired state it read: the manifest source and the environment."""

from __future__ import annotations

from udeploy.engine.load.desired import DesiredState
from udeploy.engine.load.source import ManifestSource
from udeploy.engine.plan.records import EnvironmentRecord, EnvManifest, FileManifest, ManifestRecord


def manifest_record(source: ManifestSource) -> ManifestRecord:
    if source.mode == "env":
        assert source.remote is not None and source.ref is not None and source.commit is not None
        return EnvManifest(remote=source.remote, ref=source.ref, commit=source.commit, deploy_blob=source.deploy_blob,
                           config_blob=source.config_blob, ci_blob=source.ci_blob)
    assert source.file is not None and source.file_sha256 is not None
    return FileManifest(file=source.file, sha256=source.file_sha256, config_sha256=source.config_blob,
                        ci_sha256=source.ci_blob)


def environment_record(state: DesiredState) -> EnvironmentRecord | None:
    s = state.settings
    if s is None:
        return None
    return EnvironmentRecord(name=s.name, namespace=s.namespace, provider_id=s.provider_id,
                             database_fingerprint=s.database_fingerprint)
