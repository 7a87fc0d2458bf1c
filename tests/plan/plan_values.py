"""Typed plan parts for tests that build a `Plan` by hand (markdown, graph, rendering, refusals)."""

from __future__ import annotations

from udeploy.engine.load.catalog import LiveApplyMode
from udeploy.engine.plan.plan_item import (
    ArtifactConsumer,
    BuildRecord,
    DeploymentPath,
    LiveApplyRecord,
    PlanItem,
    RegistryRecord,
    SourceRecord,
    TargetRecord,
    Validation,
)
from udeploy.engine.plan.records import EnvironmentRecord, EnvManifest, PlanRequest

SHA = "0123456789abcdef0123456789abcdef01234567"


def item(*, allowed: bool = True) -> PlanItem:
    """An artifact-consumer item on main-server-compose."""
    return PlanItem(
        deployment_path=DeploymentPath.ARTIFACT_CONSUMER,
        artifact_consumer=ArtifactConsumer(
            consumer_kind="main-server-compose", registry_image="r",
            registry=RegistryRecord(address="r", repository="unidesk/svc", tag=SHA, digest=None,
                                    digest_provenance=None, role="content cache"),
            source=SourceRecord(repo="https://example.invalid/repo", commit=SHA, requested_commit=SHA,
                                dockerfile="Dockerfile", commit_override=False),
            build=BuildRecord(producer="CI", where="CI", forbidden_actions=()),
            no_runtime_source_build=True, dry_run_only=False),
        target=TargetRecord(namespace=None, provider_id=None, database_fingerprint=None, deploy_command_shape="x"),
        validation=Validation(checks=()),
        live_apply=LiveApplyRecord(allowed=allowed, mode=LiveApplyMode.ENABLED, reason=None))


def environment(name: str = "dev") -> EnvironmentRecord:
    return EnvironmentRecord(name=name, namespace="unidesk-dev", provider_id=None, database_fingerprint=None)


def env_manifest(ref: str = "origin/master") -> EnvManifest:
    return EnvManifest(remote="https://example.invalid/repo.git", ref=ref, commit=SHA, deploy_blob=SHA,
                       config_blob=None, ci_blob=None)


def request(*services: str) -> PlanRequest:
    return PlanRequest(env="dev", file=None, services=services, commit=None, ref="origin/master")
