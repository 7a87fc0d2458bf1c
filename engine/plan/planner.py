"""Make a plan: load the desired state, observe, diff, lay out the steps, run the guardrails."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from pathlib import Path

import attrs

from udeploy.engine import __version__
from udeploy.engine.load.desired import DesiredService, DesiredState, Request, load_desired
from udeploy.engine.load.k8s_manifest import K8sObject
from udeploy.engine.load.timeouts import Timeouts
from udeploy.engine.load.upstream import for_service
from udeploy.engine.plan.diff import Decision, UpstreamCheck, decide
from udeploy.engine.plan.guardrails import GuardContext, failing_services, run_all
from udeploy.engine.plan.items import build_item, deployment_path
from udeploy.engine.plan.model import FORMAT_VERSION, Action, Blocked, BlockedReason, Node, Plan, ServiceChange
from udeploy.engine.plan.observe import Observations, ProviderPool, observe
from udeploy.engine.plan.plan_item import PlanItem
from udeploy.engine.plan.records import LiveHealth, LiveSummary, PlanRequest
from udeploy.engine.plan.report import environment_record, manifest_record
from udeploy.engine.plan.steps import ChainPlanners, Observed, build_graph, prerequisite_node, service_nodes
from udeploy.engine.provider_api import ProviderUnreachable, RuntimeState, SourceReader, source_reader

SUBJECT_CLIP = 200  # a commit subject is recorded at most this long: a message cannot bloat the plan


@attrs.frozen
class PlanOptions:
    refresh: bool = True
    force: bool = False
    parallelism: int = 10
    timeouts: Timeouts = attrs.field(factory=Timeouts)  # the command line's --timeout, over config.json's


@attrs.frozen
class Planned:
    plan: Plan
    state: DesiredState


def make_plan(request: Request, options: PlanOptions, *, git: SourceReader | None = None,
              pool_for: Callable[[DesiredState], ProviderPool] | None = None) -> Planned:
    git = git or source_reader()  # one reader: the subjects below come from the mirrors it fetched
    state = load_desired(request, git)
    state = attrs.evolve(state, catalog=state.catalog.with_timeouts(options.timeouts))
    own_pool = pool_for is None  # a caller that passes pool_for keeps (and closes) its pool
    pool = pool_for(state) if pool_for else ProviderPool(state.catalog)
    try:
        obs = observe(state, pool, parallelism=options.parallelism) if options.refresh else \
            Observations(artifacts={}, runtime={}, secrets={})
    finally:
        if own_pool:
            pool.close()
    subjects = commit_subjects(state, obs, git)
    changes = [_change(d, state, obs, options, subjects) for d in state.services]
    _refuse_outages(changes)
    plan = _assemble(state, changes, obs, options, request, demoted={}, subjects=subjects)
    results = run_all(guard_context(plan, state))
    failing = failing_services(results)
    if failing:  # a service failing a guardrail is blocked and loses its steps; the findings stay
        plan = _assemble(state, changes, obs, options, request, demoted=failing, subjects=subjects)
    plan = attrs.evolve(plan, guardrails=results)
    return Planned(plan=plan, state=state)


def commit_subjects(state: DesiredState, obs: Observations, git: SourceReader) -> Mapping[tuple[str, str], str]:
    """The subject line of every desired and live commit, by (repo, SHA), for the reviewer's diff
    (K5): one batched read per repository, through the mirrors resolving the commits fetched."""
    wanted: dict[str, set[str]] = {}
    for d in state.services:
        runtime = obs.runtime.get(d.id)
        wanted.setdefault(d.repo, set()).update(c for c in (d.resolved_commit, runtime and runtime.live_commit) if c)
    return {(repo, sha): subject[:SUBJECT_CLIP] for repo, commits in wanted.items()
            for sha, subject in git.subjects(repo, sorted(commits)).items()}


def _refuse_outages(changes: list[tuple[DesiredService, Decision, PlanItem]]) -> None:
    """A plan never stands on live state it could not read: an outage is an error (exit 1), never a
    blocked item a `--detailed-exitcode` gate would read as "no changes" (docs/reliability.md)."""
    down = [(d.id, decision.reason) for d, decision, _ in changes if decision.blocked and decision.blocked.outage]
    if down:
        raise ProviderUnreachable(f"{len(down)} service(s) could not be planned: {down[0][0]}: {down[0][1]}",
                                  path=down[0][0], details={"services": [sid for sid, _ in down]})


def plan_request(request: Request) -> PlanRequest:
    return PlanRequest(env=request.env, file=str(request.file) if request.file else None,
                       services=request.services, commit=request.commit, ref=request.ref)


def request_of(planned: PlanRequest, checkout: Path) -> Request:
    """The request a plan was made with, to reload its desired state from `checkout`."""
    return Request(env=planned.env, file=Path(planned.file) if planned.file else None, services=planned.services,
                   commit=planned.commit, checkout=checkout, ref=planned.ref)


def guard_context(plan: Plan, state: DesiredState) -> GuardContext:
    stepped = {n.service for n in plan.nodes}
    objects: dict[str, tuple[K8sObject, ...]] = {d.id: d.k3s_objects for d in state.services if d.id in stepped}
    return GuardContext(plan=plan, k3s_objects=objects,
                        hosts={h.id: dict(h.settings) for h in state.catalog.hosts.values()})


def _change(d: DesiredService, state: DesiredState, obs: Observations, options: PlanOptions,
            subjects: Mapping[tuple[str, str], str]) -> tuple[DesiredService, Decision, PlanItem]:
    path = deployment_path(d)
    secrets = obs.secrets.get(d.id)
    decision = decide(d, path, runtime=obs.runtime.get(d.id), artifact=obs.artifacts.get(d.id),
                      secrets_present=secrets.get("requiredSecretsPresent") if secrets else None,
                      forced=options.force, upstream=_upstream_check(d, state, obs))
    item = build_item(d, state.catalog, state.settings, state.environment, artifact=obs.artifacts.get(d.id),
                      secrets=secrets, subject=subjects.get((d.repo, d.resolved_commit)))
    return d, decision, item


def _upstream_check(d: DesiredService, state: DesiredState, obs: Observations) -> UpstreamCheck | None:
    art = for_service(state.catalog, d.microservice)
    if art is None:
        return None
    seen = obs.upstream.get(d.id)
    return UpstreamCheck(artifact_id=art.id, pin=art.pin, mirrored=seen.mirrored if seen else None,
                         upstream_reachable=seen.upstream_reachable if seen else None)


def _assemble(state: DesiredState, changes: list[tuple[DesiredService, Decision, PlanItem]],
              obs: Observations, options: PlanOptions, request: Request,
              demoted: Mapping[str, list[str]], subjects: Mapping[tuple[str, str], str]) -> Plan:
    services: list[ServiceChange] = []
    chains: dict[str, list[Node]] = {}
    planners = ChainPlanners()
    for d, decision, item in changes:
        action, reason, blocked = decision.action, decision.reason, decision.blocked
        if d.id in demoted and action is Action.DEPLOY:
            action = Action.BLOCKED
            reason = f"guardrail {', '.join(demoted[d.id])} failed"
            blocked = Blocked(BlockedReason.GUARDRAIL, tuple(demoted[d.id]))
        runtime = obs.runtime.get(d.id)
        services.append(ServiceChange(
            id=d.id, action=action, reason=reason, requested_commit=d.requested_commit,
            resolved_commit=d.resolved_commit, item=item,
            live=_live(runtime, subjects.get((d.repo, runtime.live_commit or "")) if runtime else None)
            if options.refresh else None,
            drift=decision.drift, blocked=blocked))
        if action is Action.DEPLOY:
            artifact = obs.artifacts.get(d.id)
            chains[d.id] = service_nodes(d, state.catalog, state.source, Observed(
                artifact=artifact.fingerprint if artifact else None,
                runtime=runtime.fingerprint if runtime else None), planners)
    prerequisites = _prerequisites(state, chains)
    requires = {d.id: d.environment.target.requires for d, _, _ in changes
                if d.id in chains and d.environment and d.environment.target}
    depends = {d.id: d.microservice.depends_on for d, _, _ in changes}
    graph = build_graph(chains, prerequisites, requires, depends)
    by_id = {n.id: n for n in prerequisites + [n for c in chains.values() for n in c]}
    return Plan(
        format_version=FORMAT_VERSION, udeploy_version=__version__,
        created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), mode=state.mode,
        environment=environment_record(state), manifest=manifest_record(state.source), request=plan_request(request),
        refreshed=options.refresh,
        forced=options.force, selection=request.services,
        services=tuple(services), nodes=tuple(by_id[n] for n in graph.nodes()), edges=tuple(graph.edges()),
        guardrails=())


def _prerequisites(state: DesiredState, chains: Mapping[str, list[Node]]) -> list[Node]:
    if state.settings is None:
        return []
    needed = sorted({r for d in state.services if d.id in chains and d.environment and d.environment.target
                     for r in d.environment.target.requires})
    return [prerequisite_node(name, state.settings.prerequisites[name], state.catalog, state.source, None)
            for name in needed]


def _live(runtime: RuntimeState | None, subject: str | None) -> LiveSummary | None:
    if runtime is None:
        return None
    h = runtime.health
    return LiveSummary(target=runtime.target, presence=runtime.presence, image=runtime.image,
                       commit=runtime.live_commit, fingerprint=runtime.fingerprint,
                       health=None if h is None else LiveHealth(reachable=h.reachable, status=h.status,
                                                                deploy_commit=h.deploy_commit),
                       subject=subject)
