"""Desired against observed: one `Decision` per service (O2, O7).

The order is the policy's: unsupported first (never a fallback to a source build), then local-mode
refusals, then what the environment's reviewed policy allows, then missing preconditions, and only
then the commit comparison. Blocked and gated services still say whether they would change.
"""

from __future__ import annotations

import attrs

from udeploy.engine.load.catalog import GATING_MODES, LiveApplyMode, SourceKind
from udeploy.engine.load.desired import DesiredService
from udeploy.engine.plan.model import Action, Blocked, BlockedReason
from udeploy.engine.plan.plan_item import DeploymentPath
from udeploy.engine.provider_api import ArtifactState, Presence, RuntimeState

# The live-apply modes whose reason is a `BlockedReason` (the item keeps dryRunOnly/blockedReason, O3).


@attrs.frozen
class Decision:
    action: Action
    reason: str
    blocked: Blocked | None = None
    drift: str | None = None


def compare_live(d: DesiredService, runtime: RuntimeState | None, *, forced: bool) -> Decision:
    """The commit comparison alone: deploy when absent, at another commit, unverified, or forced."""
    want = d.resolved_commit
    if runtime is None:
        return Decision(Action.DEPLOY, "live state not read (--no-refresh): deploy is assumed")
    drift = detect_drift(runtime)
    if runtime.presence is Presence.ABSENT:
        return Decision(Action.DEPLOY, f"absent on {runtime.target}", drift=drift)
    live = runtime.live_commit
    if live != want:
        return Decision(Action.DEPLOY, f"live commit {live[:12] if live else 'unknown'} differs from "
                        f"{want[:12]}", drift=drift)
    if runtime.presence is not Presence.RUNNING:
        return Decision(Action.DEPLOY, f"at {want[:12]} but not running ({runtime.detail or 'not ready'})",
                        drift=drift)
    health = runtime.health
    if health is not None and health.deploy_commit != want:
        return Decision(Action.DEPLOY, f"stamped {want[:12]} but /health reports "
                        f"{health.deploy_commit or 'no commit'}", drift=drift)
    if forced:
        return Decision(Action.DEPLOY, "forced (--force): live commit already matches", drift=drift)
    return Decision(Action.NOOP, f"live commit {want[:12]} matches", drift=drift)


def detect_drift(runtime: RuntimeState) -> str | None:
    """Live state changed outside udeploy: the image says one commit, the stamp another."""
    label = runtime.labels.get("unidesk.ai/source-commit")
    stamp = runtime.deploy_env.get("UNIDESK_DEPLOY_COMMIT")
    if label and stamp and label != stamp:
        return f"image label commit {label[:12]} differs from stamped {stamp[:12]}: changed outside udeploy"
    return None


def decide(d: DesiredService, path: DeploymentPath, *, runtime: RuntimeState | None, artifact: ArtifactState | None,
           secrets_present: bool | None, forced: bool, upstream: UpstreamCheck | None = None) -> Decision:
    ms, env = d.microservice, d.environment
    if path is DeploymentPath.UNSUPPORTED:
        return Decision(Action.UNSUPPORTED, _unsupported_reason(d), blocked=_policy_block(d))
    if env is None:
        return _decide_local(d, runtime, forced)
    live_mode = env.live_apply.mode
    would = compare_live(d, runtime, forced=forced)
    if live_mode is LiveApplyMode.BLOCKED:
        return Decision(Action.BLOCKED, f"{env.live_apply.reason}; would {would.action.value}: {would.reason}",
                        blocked=_policy_block(d), drift=would.drift)
    if live_mode in (LiveApplyMode.PLAN_ONLY, LiveApplyMode.SUPERVISOR_GATED):
        return Decision(Action.GATED, f"{env.live_apply.reason}; would {would.action.value}: {would.reason}",
                        blocked=_policy_block(d), drift=would.drift)
    if ms.source_kind is SourceKind.UPSTREAM_IMAGE:
        stop = _upstream_stop(upstream)
        if stop is not None:
            return stop
    if artifact is not None and not artifact.reachable:
        return Decision(Action.BLOCKED, f"registry unreachable: {artifact.error}",
                        blocked=Blocked(BlockedReason.INFRA_BLOCKED))
    if artifact is not None and not artifact.exists:
        return Decision(Action.BLOCKED, f"artifact {artifact.image} does not exist; publish it first "
                        f"(udeploy artifact publish --service {d.id} --commit {d.resolved_commit})",
                        blocked=Blocked(BlockedReason.ARTIFACT_MISSING))
    if secrets_present is False and would.action is Action.DEPLOY:
        return Decision(Action.GATED, "runtime secrets missing from the secret source (P7)",
                        blocked=Blocked(BlockedReason.RUNTIME_SECRETS_MISSING), drift=would.drift)
    return would


@attrs.frozen
class UpstreamCheck:
    """P10 facts for one upstream-image service: the pin, and what the plan saw (None: not refreshed)."""

    artifact_id: str
    pin: str | None
    mirrored: bool | None
    upstream_reachable: bool | None


def _upstream_stop(u: UpstreamCheck | None) -> Decision | None:
    if u is None or u.pin is None:
        return Decision(Action.BLOCKED, "upstream image: a digest pin is required before rollout (P10)",
                        blocked=Blocked(BlockedReason.DIGEST_PIN_REQUIRED))
    if u.mirrored is None or u.mirrored:
        return None  # not refreshed, or the verified mirror holds the pinned digest: pull-only by digest
    if u.upstream_reachable is False:
        return Decision(Action.BLOCKED, "the upstream registry is unreachable, so the pinned digest cannot be "
                        "verified or mirrored (P10)", blocked=Blocked(BlockedReason.PENDING_NETWORK_VERIFICATION))
    return Decision(Action.BLOCKED, f"the pinned digest is not mirrored yet: run `udeploy artifact mirror --artifact "
                    f"{u.artifact_id}` (verifies the digest upstream first)",
                    blocked=Blocked(BlockedReason.MIRROR_MISSING))


def _policy_block(d: DesiredService) -> Blocked | None:
    """The reviewed policy's reason when the environment gates live apply (config.json liveApply.reason,
    which the config schema pins to `BlockedReason` values for these modes)."""
    live = d.environment.live_apply if d.environment else None
    if live is None or live.mode not in GATING_MODES or live.reason is None:
        return None
    return Blocked(BlockedReason(live.reason))


def _unsupported_reason(d: DesiredService) -> str:
    env = d.environment
    if env and env.live_apply.mode is LiveApplyMode.UNSUPPORTED:
        return env.live_apply.reason or "unsupported in this environment"
    kind = d.microservice.source_kind
    if kind is SourceKind.IMAGE_ONLY:
        return (f"image-only service ({d.microservice.image}) without a reviewed producer or upstream "
                "digest exception: never converted into a source build (P9)")
    if kind is SourceKind.NONE:
        return "no Dockerfile source artifact (M4)"
    return "no reviewed target in this environment"


def _decide_local(d: DesiredService, runtime: RuntimeState | None, forced: bool) -> Decision:
    """Local-manifest mode (--file): only direct-class, non-reviewed services may deploy (P4, P5, P11)."""
    ms = d.microservice
    if ms.local_mode.get("blockedReason"):
        return Decision(Action.BLOCKED, "k3s-managed workloads are blocked from maintenance-channel direct "
                        "deploy (P5)", blocked=Blocked(BlockedReason(ms.local_mode["blockedReason"])))
    if ms.reviewed_artifact_consumer:
        return Decision(Action.BLOCKED, f"reviewed pull-only artifact consumer: use `udeploy apply --env prod "
                        f"--service {ms.id} --commit <full-sha>` (P4)",
                        blocked=Blocked(BlockedReason.REVIEWED_ARTIFACT_CONSUMER))
    if ms.local_mode.get("executor") != "target-side-build":
        return Decision(Action.BLOCKED, f"deployment.mode={ms.deployment_mode} on {ms.deployment_host} is a "
                        "disabled executor (P11)", blocked=Blocked(BlockedReason.DISABLED_EXECUTOR))
    return compare_live(d, runtime, forced=forced)
