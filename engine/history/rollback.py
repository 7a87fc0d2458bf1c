"""`udeploy rollback`: pin a service back to a commit it ran verified, on a new branch, for review.

The target is the newest verified commit in the history that is not the one `deploy.json` pins
now (or `--to`, which must be a verified commit in that history). Policy holds exactly as a plan
of the branch would apply it: a service the environment's reviewed policy stops (unsupported,
blocked, gated) is refused with that rule, and so is a commit whose artifact is not published
(P3); an unreachable registry is an outage (exit 1), not a verdict. The change is the one
`commitId` string in `deploy.json`, edited in the text, committed on `udeploy/rollback-<service>-
<short>` from the remote ref's commit, pushed only with `push`. Nothing is applied: the result
names the plan command that shows what the branch would deploy.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import attrs

from udeploy.engine.errors import PolicyRefused, UdeployError, UsageError
from udeploy.engine.history.branch import FileCommit, commit_on_new_branch, push_branch
from udeploy.engine.history.pin_text import replace_string
from udeploy.engine.history.records import Deployment, deployments
from udeploy.engine.load.desired import DesiredService, DesiredState, Request, load_desired
from udeploy.engine.load.jsonschema_check import parse_json
from udeploy.engine.load.repo_url import check_ref, check_repo_url
from udeploy.engine.load.source import DEFAULT_REF, origin_url
from udeploy.engine.plan.diff import decide
from udeploy.engine.plan.items import deployment_path
from udeploy.engine.plan.model import Action
from udeploy.engine.plan.plan_item import DeploymentPath
from udeploy.engine.provider_api import ProviderUnreachable, SourceReader, registry_reader, source_reader
from udeploy.engine.state_api import StateBackend

COMMIT_PREFIX = re.compile(r"^[0-9a-f]{4,40}$")
SHORT = 12


class RollbackTargetNotFound(UdeployError, LookupError):
    """No verified commit to roll back to: the history is empty, holds only the current pin, or
    lacks the `--to` commit."""

    code = "rollback-target-not-found"


@attrs.frozen
class RollbackRequest:
    env: str
    service: str
    checkout: Path
    to: str | None = None  # a commit (full or a unique prefix) from the service's verified history
    push: bool = False
    ref: str = DEFAULT_REF  # where the environment reads deploy.json (M7): the branch starts there


def rollback(request: RollbackRequest, backend: StateBackend, *, git: SourceReader | None = None) -> dict[str, Any]:
    """Make the rollback branch (see the module docstring) and say what it holds and what to run next."""
    if request.to is not None and not COMMIT_PREFIX.match(request.to):
        raise UsageError(f"--to: {ascii(request.to)[:60]} is not a commit (4 to 40 lowercase hex digits)",
                         path="--to")
    git = git or source_reader()
    state = load_desired(Request(env=request.env, services=(request.service,), checkout=request.checkout,
                                 ref=request.ref), git)
    current = state.services[0]
    check_policy(state, current)
    history = deployments(backend, request.env, request.service)
    target = pick_target(history, current, request.to, backend.location)
    artifact = check_policy(state, current, target.commit)
    base = state.source.commit
    assert base is not None and state.source.ref is not None  # environment mode always records both
    text = git.read(check_repo_url(origin_url(request.checkout), path="origin"), base, "deploy.json").data
    index = _entry_index(parse_json(text, "deploy.json"), request.env, request.service)
    location = ("environments", request.env, "services", index, "commitId")
    changed = replace_string(_utf8(text), location, target.commit)
    branch = check_ref(f"udeploy/rollback-{request.service}-{target.commit[:7]}", path="branch")
    commit = commit_on_new_branch(request.checkout, FileCommit(
        branch=branch, base=base, ref=state.source.ref, path="deploy.json", data=changed.encode(),
        message=_message(request, current, target)))
    if request.push:
        push_branch(request.checkout, branch)
    plan = (f"udeploy plan --env {request.env} --ref origin/{branch} --service {request.service} "
            f"-out rollback-{request.service}.plan.json")
    return {
        "environment": request.env, "service": request.service, "branch": branch, "commit": commit,
        "pushed": request.push, "base": {"ref": state.source.ref, "commit": base},
        "file": "deploy.json", "path": f"$.environments.{request.env}.services[{index}].commitId",
        "from": {"commit": current.resolved_commit, "requested": current.requested_commit},
        "to": target.to_json(), "artifact": artifact, "plan": plan,
        "next": ("review the branch and make the plan: it should deploy exactly this commit of this service"
                 if request.push else f"push the branch first (git push origin {branch}, or rollback --push): "
                 "environment mode plans from the remote only (M7)"),
    }


def pick_target(history: list[Deployment], current: DesiredService, to: str | None, where: str) -> Deployment:
    """The newest verified deployment whose commit is not the current pin; or the one `to` names."""
    service = current.id
    commits = list(dict.fromkeys(d.commit for d in history))
    known = {"verifiedCommits": commits, "stateBackend": where}
    if to is not None:
        matches = [c for c in commits if c.startswith(to)]
        if not matches:
            raise RollbackTargetNotFound(
                f"--to {to}: no verified deployment of {service} with that commit in the history ({where}); "
                f"verified commits: {', '.join(c[:SHORT] for c in commits) or 'none'}", path="--to", details=known)
        if len(matches) > 1:
            raise UsageError(f"--to {to} matches {len(matches)} verified commits of {service}: "
                             f"{', '.join(c[:SHORT] for c in matches)}; give more digits", path="--to")
        if matches[0] == current.resolved_commit:
            raise RollbackTargetNotFound(f"--to {to}: deploy.json already pins {service} to {matches[0][:SHORT]}",
                                         path="--to", details=known)
        return next(d for d in history if d.commit == matches[0])
    for d in history:
        if d.commit != current.resolved_commit:
            return d
    raise RollbackTargetNotFound(
        f"{service} has no verified deployment before its current pin {current.resolved_commit[:SHORT]} in the "
        f"history ({where}): nothing to roll back to", path=service, details=known)


def check_policy(state: DesiredState, current: DesiredService, commit: str | None = None) -> dict[str, Any] | None:
    """Refuse what a plan pinning `commit` would refuse by policy. Without `commit`, the service's
    own policy alone (before any history is read); with it, also its published artifact (P3).
    Returns the artifact seen (None where the deployment path builds on the target, not pulls)."""
    at = current if commit is None else attrs.evolve(current, requested_commit=commit, resolved_commit=commit,
                                                    commit_override=False)
    path = deployment_path(at)
    if path is DeploymentPath.UPSTREAM_IMAGE:
        raise PolicyRefused(f"{at.id} runs an upstream image pinned by digest in CI.json, not a commit of its "
                            "repository: roll back that digest pin instead (P10)", rule="P10", path=at.id)
    artifact = None
    if commit is not None and path is DeploymentPath.ARTIFACT_CONSUMER:
        image = state.catalog.registry_image(at.id, commit)
        artifact = registry_reader(state.catalog).head(image)
        if not artifact.reachable:
            raise ProviderUnreachable(f"registry {state.catalog.registry} cannot be reached to check {image}: "
                                      f"{artifact.error}", path=state.catalog.registry)
    decision = decide(at, path, runtime=None, artifact=artifact, secrets_present=None, forced=False)
    if decision.action is Action.UNSUPPORTED:
        raise PolicyRefused(f"{at.id} is unsupported in {state.environment}: {decision.reason}", rule="O7", path=at.id)
    if decision.action in (Action.BLOCKED, Action.GATED):
        assert decision.blocked is not None  # the diff gives every blocked or gated decision its reason
        raise PolicyRefused(f"{at.id} cannot be rolled back in {state.environment}: {decision.reason}",
                            rule=decision.blocked.rule, path=at.id, details={"blockedReason": str(decision.blocked)})
    return {"image": artifact.image, "digest": artifact.digest} if artifact is not None else None


def _entry_index(doc: Any, env: str, service: str) -> int:
    entries = doc["environments"][env]["services"]  # load_desired validated this shape already
    return next(i for i, e in enumerate(entries) if e["id"] == service)


def _utf8(data: bytes) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"deploy.json is not UTF-8 (byte {exc.start}): rollback edits it as text",
                         path="deploy.json") from None


def _message(request: RollbackRequest, current: DesiredService, target: Deployment) -> str:
    return (f"rollback({request.env}): pin {request.service} to {target.commit[:SHORT]}\n\n"
            f"udeploy rollback: environments.{request.env} service {request.service} from "
            f"{current.resolved_commit} to {target.commit},\n"
            f"verified by job {target.job_id} at {target.when} ({target.who or 'unknown'}, plan "
            f"{(target.plan_digest or '')[:19]}).\n")
