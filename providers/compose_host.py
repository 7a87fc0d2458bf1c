"""The compose-host provider: one config.json host running Docker + Compose, locally or over SSH.

Readers live in `compose_facts`, executors in `compose_ops` (deploys) and `compose_build`
(target-side builds), the host transport in `hostshell`. This module plans a service's steps,
routes them to those modules and owns verification (V4): a deploy has converged only when the
running container's image labels, its stamped env and its health all report the requested commit.
A healthy service running another commit fails verification.

Target-side builds (B3): on a provider-role host (`role: provider`) export-source and build-image
first probe through the host's node-local egress proxy (`egressProxy`, probing `egressProbeUrl`,
default the registry's `/v2/`) and fail when it does not answer; the proxy reaches only that step.
main-server hosts fetch and build directly.

Layout on the host: `<composeRoot>/<project>/<compose file>`, `<composeRoot>/<project>/env/<service>.env`,
secrets read from `<composeRoot>/<project>/<file>` named by `<host>:compose-env:<file>` (P7).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar

import attrs

from udeploy.engine.errors import GitError, UsageError
from udeploy.engine.load.catalog import Catalog, ComposeTarget, Host, Target
from udeploy.engine.load.desired import DesiredService
from udeploy.engine.load.timeouts import TimeoutKind
from udeploy.engine.provider_api import (
    DeployRequest,
    ObserveRequest,
    PlannedStep,
    Presence,
    ProviderUnreachable,
    RuntimeState,
    StepKind,
    StepRequest,
    StepResult,
)
from udeploy.providers.git import GitProvider
from udeploy.providers.lazy import lazy_module, load
from udeploy.providers.polling import poll

if TYPE_CHECKING:
    from udeploy.providers.hostshell import HostShell

# The Docker and SSH clients load when a provider is built (`load` in `build`): planning needs none.
docker = lazy_module("docker")
hostshell = lazy_module("udeploy.providers.hostshell")
facts = lazy_module("udeploy.providers.compose_facts")
ops = lazy_module("udeploy.providers.compose_ops")
builds = lazy_module("udeploy.providers.compose_build")

HEALTH_TIMEOUT = 20.0  # a just-recreated container needs a moment before its health answers
GAVE_UP = ("container exited", "container dead")
# A batch asking for this many services of one Compose project or fewer (apply's one-service read
# after each step, verify-live) lists only their containers: each costs one more list call, but the
# daemon answers it with those services alone, where a project list carries every container of the
# project (the whole fleet's share of the host) and made apply quadratic in fleet size. Past a few,
# one project list is fewer round trips (over SSH each is a channel) for an answer that is needed anyway.
OWN_READS_UP_TO = 4
# Stamp steps of several services may run in parallel and read from the same git mirror cache; a
# fetch into a bare mirror is not safe to run twice at once, so reads are serialized in-process.


@attrs.define
class ComposeHostProvider:
    host: Host
    shell: HostShell
    layout: ops.Layout
    catalog: Catalog | None = None
    git: GitProvider = attrs.field(factory=GitProvider)  # locks each mirror itself
    _compose: list[str] | None = attrs.field(default=None, init=False)
    # The walk runs services in parallel, but Compose v1 is not safe for two `up`s in one project
    # (both create its network): recreate's `up`s are serialized per project. Stamps write the
    # project's shared files (its compose file, the empty env files Compose v1 needs) and look up
    # which exist: they are serialized per project by a lock of their own, so that one stamp never
    # touches over another's env file, and never wait for an `up`. Every write replaces a file whole
    # (a temp file renamed), so an `up` reads a file as it was before or after, and a service's
    # files are written by its stamp before its own `up` starts. The git read, the checks and the
    # container lookups around them are not serialized.
    _project_locks: dict[str, threading.Lock] = attrs.field(factory=dict, init=False)
    _files_locks: dict[str, threading.Lock] = attrs.field(factory=dict, init=False)
    _locks_lock: threading.Lock = attrs.field(factory=threading.Lock, init=False)
    _written: ops.Written = attrs.field(factory=lambda: ops.Written(), init=False)  # by stamps of this process
    # Image id -> identity labels, for every read of this process: an image id is the digest of its
    # config, so its labels never change (apply reads a service again after every step).
    _image_labels: dict[str, dict[str, str]] = attrs.field(factory=dict, init=False)

    name: ClassVar[str] = "compose-host"

    @classmethod
    def build(cls, host: Host | None, catalog: Catalog | None, *, git: GitProvider | None = None,
              shell: HostShell | None = None) -> ComposeHostProvider:
        if host is None:
            raise UsageError("the compose-host provider needs a config.json host")
        load(docker, hostshell, facts, ops, builds)
        root = host.settings.get("composeRoot")
        if not root:
            raise UsageError(f"host {host.id} has no composeRoot in config.json", path=f"hosts.{host.id}")
        return cls(host=host, shell=shell or shell_for(host), layout=ops.Layout(str(root)), catalog=catalog,
                   git=git or GitProvider())

    def close(self) -> None:
        self.shell.close()

    # -- readers

    def observe(self, requests: Sequence[ObserveRequest], *, parallelism: int = 10) -> dict[str, RuntimeState]:
        """Lists the containers of each Compose project once, then inspects and reads health per
        service, at most `parallelism` at a time. A project asked for at most `OWN_READS_UP_TO`
        services lists only theirs (filtered by project and service), not the whole project."""
        targets = {r.service_id: self._compose_target(r) for r in requests}
        asked: dict[str, int] = {}
        for t in targets.values():
            asked[t.project] = asked.get(t.project, 0) + 1
        projects = sorted(p for p, n in asked.items() if n > OWN_READS_UP_TO)
        try:
            with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(requests)))) as pool:
                listed = dict(zip(projects, pool.map(partial(facts.project_containers, self.shell), projects),
                                  strict=True))

                def read(request: ObserveRequest) -> RuntimeState:
                    t = targets[request.service_id]
                    if t.project in listed:
                        found = facts.listed_container(self.shell, t.project, t.service,
                                                       listed[t.project].get(t.service, []))
                    else:
                        found = facts.service_container(self.shell, t.project, t.service)
                    state = facts.container_state(self.shell, f"{self.host.id}:{t.project}/{t.service}", found,
                                                  self._image_labels)
                    if request.read_health and state.presence is not Presence.ABSENT:
                        state = attrs.evolve(state, health=facts.read_health(self.shell, t.health_port,
                                                                             request.health_path))
                    return state

                states = list(pool.map(read, requests))
        except docker.errors.DockerException as exc:
            raise ProviderUnreachable(f"Docker engine of {self.shell.where}: {exc}", path=self.host.id) from exc
        return {r.service_id: state for r, state in zip(requests, states, strict=True)}

    def _compose_target(self, request: ObserveRequest) -> ComposeTarget:
        target: Target = request.target
        if target.compose is None:
            raise UsageError(f"{request.service_id}: its target on {target.host} has no compose section for the "
                             "compose-host provider", path=request.service_id)
        return target.compose

    def secret_presence(self, source: str, keys: list[str], project: str) -> dict[str, Any]:
        """P7: names, booleans and lengths of the required keys in the secret source; never values."""
        return facts.secret_presence(self.shell, source, self.secret_path(source, project), keys)

    def secret_path(self, source: str, project: str) -> str:
        """`<host>:compose-env:<file>` -> `<composeRoot>/<project>/<file>` on this host."""
        host, kind, filename = (source.split(":", 2) + ["", ""])[:3]
        if host != self.host.id or kind != "compose-env" or not filename or "/" in filename:
            raise UsageError(f"secret source {source!r} is not `{self.host.id}:compose-env:<file>`",
                             path=source)
        return f"{self.layout.project_dir(project)}/{filename}"

    def secret_source_for(self, service_id: str, project: str) -> str | None:
        """The catalog's secretSource for the service's environment that targets this host and project."""
        service = self.catalog.microservices.get(service_id) if self.catalog else None
        for env in (service.environments.values() if service else ()):
            t = env.target
            if env.runtime_secrets and t and t.host == self.host.id and t.compose and t.compose.project == project:
                return env.runtime_secrets.secret_source
        return None

    # -- steps

    @classmethod
    def plan_steps(cls, request: DeployRequest) -> list[PlannedStep]:
        """An artifact: transfer-image -> stamp -> recreate -> verify-live. Built on the target
        (local-manifest mode, B1-B4): export-source -> build-image -> stamp -> recreate -> verify-live."""
        d: DesiredService = request.service
        target: Target = request.target
        c = target.compose
        if c is None:
            raise UsageError(f"{d.id}: its target on {target.host} has no compose section for the compose-host "
                             "provider", path=d.entry_path)
        if request.artifact is None:
            return _source_build_steps(d, c)
        return _artifact_steps(d, c, request)

    def execute(self, request: StepRequest) -> StepResult:
        p, dry = request.params, request.dry_run
        try:
            match request.kind:
                # Pulling and tagging images and writing files change no container, and the runtime
                # fingerprint is the container's (id, image id, state, env): apply need not re-read it.
                case StepKind.TRANSFER_IMAGE:
                    return _untouched(ops.transfer_image(self.shell, p, dry))
                case StepKind.STAMP:  # rewrites the project's shared compose file, under its files lock
                    return _untouched(self._stamp(request))
                case StepKind.RECREATE:
                    return ops.recreate(self.shell, self.layout, p, self._compose_command(), dry,
                                        self._project_lock(str(p["project"])), self._image_labels)
                case StepKind.EXPORT_SOURCE:
                    return builds.export_source(self.shell, self.layout, p, request.service_id, dry,
                                                self.build_proxy())
                case StepKind.BUILD_IMAGE:
                    return builds.build_image(self.shell, self.layout, p, request.service_id, dry, self.build_proxy())
                case StepKind.VERIFY_LIVE:
                    return self._verify_live(request, wait=not dry)
        except docker.errors.DockerException as exc:
            return StepResult(False, f"{request.kind.value} on {self.host.id}: Docker engine error: {exc}",
                              {"kind": request.kind.value})
        return StepResult(False, f"the compose-host provider does not execute {request.kind.value!r} steps",
                          {"kind": request.kind.value})

    def _project_lock(self, project: str) -> threading.Lock:
        """Held by `up` (recreate)."""
        with self._locks_lock:
            return self._project_locks.setdefault(project, threading.Lock())

    def _files_lock(self, project: str) -> threading.Lock:
        """Held by a stamp's writes of the project's files."""
        with self._locks_lock:
            return self._files_locks.setdefault(project, threading.Lock())

    def build_proxy(self) -> builds.BuildProxy | None:
        """B3: a provider host fetches and builds only through its node-local egress proxy; a
        main-server host builds directly. A provider host without one is a configuration error,
        never a reason to go to the internet directly."""
        if self.host.role != "provider":
            return None
        proxy = self.host.settings.get("egressProxy")
        if not proxy:
            raise UsageError(f"provider host {self.host.id} has no egressProxy in config.json: target-side builds "
                             "there go only through the node-local egress proxy (B3)",
                             path=f"hosts.{self.host.id}.egressProxy")
        probe = self.host.settings.get("egressProbeUrl")
        if not probe:
            if self.catalog is None:
                raise UsageError(f"provider host {self.host.id} has no egressProbeUrl in config.json",
                                 path=f"hosts.{self.host.id}.egressProbeUrl")
            probe = f"http://{self.catalog.registry}/v2/"
        return builds.BuildProxy(proxy=str(proxy), probe_url=str(probe))

    # -- internals

    def _compose_command(self) -> list[str]:
        if self._compose is None:
            self._compose = ops.compose_command(self.shell)
        return self._compose

    def _stamp(self, request: StepRequest) -> StepResult:
        p = request.params
        try:
            blob = self.git.read(str(p["manifestRemote"]), str(p["manifestCommit"]), str(p["file"]))
        except GitError as exc:
            return StepResult(False, f"cannot read {p['file']} at the manifest commit: {exc.message}",
                              {"file": p["file"], "manifestCommit": p.get("manifestCommit")})
        secret = None
        if p.get("secretKeys"):
            source = p.get("secretSource") or self.secret_source_for(request.service_id, str(p["project"]))
            if source:
                try:
                    secret = (str(source), self.secret_path(str(source), str(p["project"])))
                except UsageError as exc:
                    return StepResult(False, exc.message, {"secretSource": source})
        return ops.stamp(self.shell, self.layout, p, blob.data, blob.blob_sha, secret, request.dry_run, self._written,
                         self._files_lock(str(p["project"])))

    def _verify_live(self, request: StepRequest, *, wait: bool) -> StepResult:
        p = request.params
        target = ComposeTarget(file=str(p.get("file")), project=str(p["project"]), service=str(p["service"]),
                               image="", health_port=int(p["healthPort"]))
        health_path = str(p.get("healthPath") or "/health")
        # The first look finds the service's newest container; later polls re-inspect only that one
        # (its state and health are what change while it starts; its image's labels never do), and
        # look for the service's container again only when it is gone.
        where = f"{self.host.id}:{target.project}/{target.service}"
        seen_id: list[str] = []

        def current() -> RuntimeState:
            inspected = facts.inspect_container(self.shell, seen_id[-1]) if seen_id else None
            if inspected is None:
                inspected = facts.service_container(self.shell, target.project, target.service)
            state = facts.container_state(self.shell, where, inspected, self._image_labels)
            if state.identity:
                seen_id.append(state.identity)
            return state

        def read() -> tuple[RuntimeState, list[str]]:
            try:
                state = current()
            except docker.errors.DockerException as exc:
                raise ProviderUnreachable(f"Docker engine of {self.shell.where}: {exc}", path=self.host.id) from exc
            if state.presence is Presence.RUNNING:
                state = attrs.evolve(state, health=facts.read_health(self.shell, target.health_port,
                                                                     health_path))
            return state, live_mismatches(state, p) + self._digest_mismatch(state, p)

        def settled(seen: tuple[RuntimeState, list[str]]) -> bool:
            state, problems = seen
            answered = state.health is not None and state.health.reachable and state.health.error is None
            gave_up = state.presence is Presence.ABSENT or (state.detail or "").startswith(GAVE_UP)
            return answered or gave_up or any(not m.startswith("health") for m in problems)

        timeout = float(p.get("healthTimeoutSeconds", HEALTH_TIMEOUT)) if wait else 0.0
        state, problems = poll(read, settled, timeout)
        result = _verdict(state, problems, p)
        if request.dry_run:
            return StepResult(True, f"would verify {state.target} reports {p['expectedCommit'][:12]} "
                                    f"(now: {result.message})", {**result.facts, "currentlyConverged": result.ok})
        return result

    def _digest_mismatch(self, state: RuntimeState, p: Mapping[str, Any]) -> list[str]:
        """P10: an upstream image is identified by its manifest digest, read from the running image."""
        want = p.get("expectedDigest")
        if not want or state.image_id is None:
            return []
        digests = (facts.image_info(self.shell, state.image_id) or {}).get("RepoDigests") or []
        if any(str(d).endswith(f"@{want}") for d in digests):
            return []
        return [f"image digest: expected {want}, the running image has {', '.join(digests) or 'no registry digest'}"]


def _untouched(result: StepResult) -> StepResult:
    return attrs.evolve(result, runtime_untouched=True)


def _recreate_command(service: str) -> str:
    return f"up -d --no-build --no-deps --force-recreate {service}"


def _artifact_steps(d: DesiredService, c: ComposeTarget, request: DeployRequest) -> list[PlannedStep]:
    artifact = request.artifact
    assert artifact is not None
    compose: dict[str, Any] = {"project": c.project, "service": c.service, "file": c.file,
                               "manifestCommit": request.manifest_commit, "manifestRemote": request.manifest_remote}
    secrets = d.environment.runtime_secrets if d.environment else None
    verify: dict[str, Any] = {**compose, "healthPort": c.health_port, "healthPath": d.microservice.health_path,
                              "expectedCommit": d.resolved_commit, "expectedLabels": dict(artifact.labels)}
    if secrets:
        verify["healthAuthFlags"] = list(secrets.health_auth_flags)
    if artifact.digest is not None:  # an upstream artifact: its identity is the digest and its OCI labels
        verify["expectedDigest"] = artifact.digest
    return [
        PlannedStep(StepKind.TRANSFER_IMAGE, {"image": artifact.image, "localImage": c.image,
                                              "localTags": ["latest", d.resolved_commit]}),
        PlannedStep(StepKind.STAMP, {**compose, "env": d.deploy_stamp(),
                                     "secretKeys": list(secrets.required_keys) if secrets else []}),
        PlannedStep(StepKind.RECREATE, {**compose, "command": _recreate_command(c.service)}),
        PlannedStep(StepKind.VERIFY_LIVE, verify),
    ]


def _source_build_steps(d: DesiredService, c: ComposeTarget) -> list[PlannedStep]:
    """B1-B4, local-manifest mode only: the target fetches, archives, builds and recreates."""
    ms = d.microservice
    compose = {"project": c.project, "service": c.service, "file": c.file}
    build: dict[str, Any] = {"dockerfile": ms.dockerfile, "context": ms.build_context, "project": c.project,
                             "image": f"{c.image}:{d.resolved_commit}", "labels": d.expected_labels()}
    if ms.local_mode.get("buildBaseArg"):  # B4: the declared warm build-base argument
        build["buildBaseArg"] = str(ms.local_mode["buildBaseArg"])
    # The compose declaration is read from git at the commit being built, never the operator's tree.
    declared = {"manifestRemote": d.repo, "manifestCommit": d.resolved_commit}
    return [
        PlannedStep(StepKind.EXPORT_SOURCE, {"repo": d.repo, "commit": d.resolved_commit,
                                             "context": ms.build_context, "project": c.project}),
        PlannedStep(StepKind.BUILD_IMAGE, build),
        PlannedStep(StepKind.STAMP, {**compose, **declared, "env": d.deploy_stamp()}),
        PlannedStep(StepKind.RECREATE, {**compose, "command": _recreate_command(c.service)}),
        PlannedStep(StepKind.VERIFY_LIVE, {**compose, "healthPort": c.health_port, "healthPath": ms.health_path,
                                           "expectedCommit": d.resolved_commit,
                                           "expectedLabels": d.expected_labels()}),
    ]


def live_mismatches(state: RuntimeState, p: Mapping[str, Any]) -> list[str]:
    """V4: every way the running service differs from the requested commit, named."""
    if state.presence is Presence.ABSENT:
        return [f"no container for {state.target}"]
    expected = str(p["expectedCommit"])
    problems: list[str] = []
    if state.presence is not Presence.RUNNING:
        problems.append(f"container is {state.presence.value}" + (f" ({state.detail})" if state.detail else ""))
    for key, want in (p.get("expectedLabels") or {}).items():
        got = state.labels.get(key)
        if got != want:
            problems.append(f"image label {key}: expected {want!r}, running {got!r}")
    env_want = {"UNIDESK_DEPLOY_COMMIT": expected}
    if p.get("expectedRequestedCommit"):
        env_want["UNIDESK_DEPLOY_REQUESTED_COMMIT"] = str(p["expectedRequestedCommit"])
    for key, want in env_want.items():
        got = state.deploy_env.get(key)
        if got != want:
            problems.append(f"env {key}: expected {want!r}, running {got!r}")
    health = state.health
    if health is None or not health.reachable or health.error:
        reason = "not read" if health is None else (health.error or "unreachable")
        problems.append(f"health {p.get('healthPath') or '/health'} on port {p['healthPort']}: {reason}")
        return problems
    if health.deploy_commit != expected:
        problems.append(f"health deploy.commit: expected {expected!r}, got {health.deploy_commit!r}")
    if p.get("expectedRequestedCommit") and health.deploy_requested_commit != p["expectedRequestedCommit"]:
        problems.append(f"health deploy.requestedCommit: expected {p['expectedRequestedCommit']!r}, "
                        f"got {health.deploy_requested_commit!r}")
    for flag in p.get("healthAuthFlags") or []:
        value = (health.auth or {}).get(flag)
        if value is not True:
            problems.append(f"health auth.{flag} is {value!r}, expected true")
    return problems


def _verdict(state: RuntimeState, problems: list[str], p: Mapping[str, Any]) -> StepResult:
    health = state.health
    info: dict[str, Any] = {
        "target": state.target, "presence": state.presence.value, "identity": state.identity,
        "image": state.image, "imageId": state.image_id, "labels": dict(state.labels),
        "deployEnv": dict(state.deploy_env), "expectedCommit": p["expectedCommit"], "mismatches": problems,
        "health": None if health is None else health.facts(),
    }
    if problems:
        return StepResult(False, f"{state.target} does not run {str(p['expectedCommit'])[:12]}: "
                                 + "; ".join(problems), info)
    return StepResult(True, f"{state.target} runs {str(p['expectedCommit'])[:12]} (labels, env and health agree)",
                      info)


def shell_for(host: Host) -> HostShell:
    """The shell for a config.json host with `docker.socket` or `docker.ssh`."""
    settings: Mapping[str, Any] = host.settings.get("docker") or {}
    if settings.get("socket"):
        load(hostshell)
        return hostshell.LocalShell(host.id, str(settings["socket"]),
                                    docker_timeout=host.timeouts.get(TimeoutKind.DOCKER))
    if settings.get("ssh"):
        from udeploy.providers.hostshell_ssh import SSH_SESSIONS, SshShell  # imports fabric/paramiko only for SSH hosts

        s = settings["ssh"]
        return SshShell(host.id, host=str(s["host"]), port=int(s.get("port", 22)), user=str(s.get("user", "root")),
                        key_file=s.get("keyFile"), known_hosts=s.get("knownHosts"),
                        timeout=host.timeouts.get(TimeoutKind.SSH),
                        docker_timeout=host.timeouts.get(TimeoutKind.DOCKER),
                        max_channels=int(s.get("maxChannels", SSH_SESSIONS)))
    raise ProviderUnreachable(f"host {host.id} has neither docker.socket nor docker.ssh in config.json",
                              path=host.id)
