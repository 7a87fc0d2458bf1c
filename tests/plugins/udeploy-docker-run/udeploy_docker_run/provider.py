"""The docker-run provider: one service, one `docker run -d` container, on one host's Docker engine.

A deploy is `transfer-image` (pull the verified artifact by its registry reference) -> `recreate`
(remove the container of that name, run the new one with the V2 stamp and a label naming the
service) -> `verify-live` (the container runs that image, with the V1 labels and the stamp, and its
health reports the requested commit: V4). Observation lists the engine's labelled containers once
for all requested services.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import attrs
import docker.errors

from udeploy.engine.errors import UsageError
from udeploy.engine.load.catalog import Catalog, Host, Target
from udeploy.engine.load.desired import DesiredService
from udeploy.engine.provider_api import (
    DeployRequest,
    ObserveRequest,
    PlannedStep,
    Presence,
    RuntimeState,
    StepKind,
    StepRequest,
    StepResult,
)
from udeploy_docker_run import engine_reads as reads
from udeploy_docker_run.settings import RunSettings, engine_socket, run_settings

HEALTH_TIMEOUT = 20.0  # seconds a just-started container gets before its health must answer
POLL_INTERVAL = 0.3


@attrs.define
class DockerRunProvider:
    host: Host
    engine: reads.Engine

    name: ClassVar[str] = "docker-run"

    @classmethod
    def build(cls, host: Host | None, catalog: Catalog | None) -> DockerRunProvider:
        """Built for one config.json host with `docker.socket`; nothing is connected until used."""
        if host is None:
            raise UsageError("the docker-run provider needs a config.json host", path="hosts")
        return cls(host=host, engine=reads.Engine(host.id, engine_socket(host)))

    def close(self) -> None:
        self.engine.close()

    # -- planning (pure: reads nothing, connects nowhere)

    @classmethod
    def plan_steps(cls, request: DeployRequest) -> list[PlannedStep]:
        d: DesiredService = request.service
        target: Target = request.target
        path = settings_path(d)
        s = run_settings(target.settings, path)
        artifact = request.artifact
        if artifact is None:
            raise UsageError(f"{d.id}: the docker-run provider runs registry artifacts only, never a build from "
                             "source", path=d.entry_path)
        run: dict[str, Any] = {"container": s.container, "image": artifact.image, "network": s.network,
                               "env": {**s.env, **d.deploy_stamp()}, "labels": {reads.SERVICE_LABEL: d.id}}
        verify: dict[str, Any] = {"container": s.container, "image": artifact.image, "healthPort": s.health_port,
                                  "healthPath": d.microservice.health_path, "expectedCommit": d.resolved_commit,
                                  "expectedRequestedCommit": d.requested_commit,
                                  "expectedLabels": dict(artifact.labels)}
        if artifact.digest is not None:  # an upstream image (P10) is identified by its manifest digest
            verify["expectedDigest"] = artifact.digest
        return [PlannedStep(StepKind.TRANSFER_IMAGE, {"image": artifact.image}),
                PlannedStep(StepKind.RECREATE, run),
                PlannedStep(StepKind.VERIFY_LIVE, verify)]

    # -- reading

    def observe(self, requests: Sequence[ObserveRequest], *, parallelism: int = 10) -> Mapping[str, RuntimeState]:
        """Every requested service of this host: one list call, then an inspect per container found."""
        wanted = [(r, run_settings(r.target.settings, f"config.json#microservices[{r.service_id}].target.settings"))
                  for r in requests]
        listed = reads.labelled_containers(self.engine)
        images = _ImageCache(self.engine)

        def one(item: tuple[ObserveRequest, RunSettings]) -> tuple[str, RuntimeState]:
            r, s = item
            summary = listed.get(s.container)
            container = reads.inspect_container(self.engine, str(summary["Id"])) if summary else None
            state = self._state(s.container, container, images)
            if r.read_health and state.presence is not Presence.ABSENT:
                state = attrs.evolve(state, health=reads.read_health(s.health_port, r.health_path))
            return r.service_id, state

        with ThreadPoolExecutor(max_workers=max(1, min(parallelism, len(wanted) or 1))) as pool:
            return dict(pool.map(one, wanted))

    def _state(self, name: str, container: Mapping[str, Any] | None, images: _ImageCache) -> RuntimeState:
        image = images.get(str(container["Image"])) if container and container.get("Image") else None
        return reads.runtime_state(f"{self.host.id}:{name}", container, image)

    # -- steps

    def execute(self, request: StepRequest) -> StepResult:
        try:
            match request.kind:
                case StepKind.TRANSFER_IMAGE:
                    return self._transfer_image(request)
                case StepKind.RECREATE:
                    return self._recreate(request)
                case StepKind.VERIFY_LIVE:
                    return self._verify_live(request)
                case _:
                    return StepResult(False, f"the docker-run provider does not execute {request.kind.value!r} "
                                             "steps", {"kind": request.kind.value})
        except docker.errors.APIError as exc:
            return StepResult(False, f"{request.kind.value} on {self.host.id}: Docker engine error: "
                                     f"{exc.explanation or exc}", {"kind": request.kind.value})

    def _transfer_image(self, request: StepRequest) -> StepResult:
        image = str(request.params["image"])
        present = reads.inspect_image(self.engine, image)
        info: dict[str, Any] = {"image": image, "alreadyPresent": present is not None}
        if request.dry_run:
            return StepResult(True, f"would pull {image} into {self.host.id}", info)
        client = self.engine.client()
        pulled = self.engine.call(f"pull {image}", lambda: client.images.pull(image))
        info.update(imageId=pulled.id, repoDigests=pulled.attrs.get("RepoDigests", []))
        return StepResult(True, f"pulled {image} ({pulled.id[:19]}) on {self.host.id}", info)

    def _recreate(self, request: StepRequest) -> StepResult:
        p = request.params
        name, image = str(p["container"]), str(p["image"])
        old = reads.inspect_container(self.engine, name)
        owner = ((old or {}).get("Config") or {}).get("Labels", {}) or {}
        info: dict[str, Any] = {"container": name, "image": image, "containerBefore": old and old.get("Id")}
        if old is not None and owner.get(reads.SERVICE_LABEL) != request.service_id:
            return StepResult(False, f"a container named {name} on {self.host.id} was not started by the docker-run "
                                     f"provider for {request.service_id}: it is left alone", info)
        if request.dry_run:
            return StepResult(True, f"would run {image} as {name} on {self.host.id}"
                              + (f", replacing container {str(old['Id'])[:12]}" if old else ""), info)
        client = self.engine.client()
        if old is not None:
            self.engine.call(f"remove {name}", lambda: client.api.remove_container(old["Id"], force=True))
        started = self.engine.call(f"run {name}", lambda: client.containers.run(
            image, name=name, detach=True, environment=dict(p["env"]), labels=dict(p["labels"]),
            network_mode=str(p["network"])))
        info["containerAfter"] = started.id
        return StepResult(True, f"ran {image} as {name} ({started.id[:12]}) on {self.host.id}", info)

    def _verify_live(self, request: StepRequest) -> StepResult:
        p = request.params
        name = str(p["container"])

        def read() -> tuple[RuntimeState, list[str]]:
            container = reads.inspect_container(self.engine, name)
            images = _ImageCache(self.engine)
            state = self._state(name, container, images)
            if state.presence is Presence.RUNNING:
                state = attrs.evolve(state, health=reads.read_health(int(p["healthPort"]), str(p["healthPath"])))
            image = images.get(state.image_id) if state.image_id else None
            return state, live_mismatches(state, container, image, request.service_id, p)

        timeout = 0.0 if request.dry_run else float(p.get("healthTimeoutSeconds", HEALTH_TIMEOUT))
        deadline = time.monotonic() + timeout
        state, problems = read()
        while not _settled(state, problems) and time.monotonic() < deadline:
            time.sleep(POLL_INTERVAL)
            state, problems = read()
        facts = {"target": state.target, "presence": state.presence.value, "identity": state.identity,
                 "image": state.image, "imageId": state.image_id, "labels": dict(state.labels),
                 "deployEnv": dict(state.deploy_env), "expectedCommit": p["expectedCommit"], "mismatches": problems,
                 "health": state.health.facts() if state.health else None}
        commit = str(p["expectedCommit"])[:12]
        if request.dry_run:
            return StepResult(True, f"would verify {state.target} reports {commit} (now: "
                                    f"{'converged' if not problems else '; '.join(problems)})",
                              {**facts, "currentlyConverged": not problems})
        if problems:
            return StepResult(False, f"{state.target} does not run {commit}: " + "; ".join(problems), facts)
        return StepResult(True, f"{state.target} runs {commit} (image, labels, env and health agree)", facts)


def settings_path(d: DesiredService) -> str:
    """Where the service's `target.settings` is in config.json, for error paths."""
    env = next((name for name, e in d.microservice.environments.items() if e == d.environment), "?")
    return f"config.json#microservices[{d.id}].environments.{env}.target.settings"


def live_mismatches(state: RuntimeState, container: Mapping[str, Any] | None, image: Mapping[str, Any] | None,
                    service_id: str, p: Mapping[str, Any]) -> list[str]:
    """V4: every way the running container differs from the planned one, named. Health problems
    start with "health" (they may clear while the container starts)."""
    if state.presence is Presence.ABSENT or container is None:
        return [f"no container {p['container']} on the engine"]
    problems: list[str] = []
    if state.presence is not Presence.RUNNING:
        problems.append(f"container is {state.presence.value} ({state.detail})")
    owner = ((container.get("Config") or {}).get("Labels") or {}).get(reads.SERVICE_LABEL)
    if owner != service_id:
        problems.append(f"label {reads.SERVICE_LABEL}: expected {service_id!r}, running {owner!r}")
    if state.image != p["image"]:
        problems.append(f"image: expected {p['image']}, running {state.image}")
    for key, want in (p.get("expectedLabels") or {}).items():
        if state.labels.get(key) != want:
            problems.append(f"image label {key}: expected {want!r}, running {state.labels.get(key)!r}")
    stamp = {"UNIDESK_DEPLOY_COMMIT": p["expectedCommit"],
             "UNIDESK_DEPLOY_REQUESTED_COMMIT": p["expectedRequestedCommit"]}
    for key, want in stamp.items():
        if state.deploy_env.get(key) != want:
            problems.append(f"env {key}: expected {want!r}, running {state.deploy_env.get(key)!r}")
    if p.get("expectedDigest"):
        digests = (image or {}).get("RepoDigests") or []
        if not any(str(d).endswith(f"@{p['expectedDigest']}") for d in digests):
            problems.append(f"image digest: expected {p['expectedDigest']}, the image has {digests or 'none'}")
    health = state.health
    if health is None or not health.reachable or health.error:
        reason = "not read" if health is None else (health.error or "unreachable")
        problems.append(f"health {p['healthPath']} on port {p['healthPort']}: {reason}")
        return problems
    if health.deploy_commit != p["expectedCommit"]:
        problems.append(f"health deploy.commit: expected {p['expectedCommit']!r}, got {health.deploy_commit!r}")
    if health.deploy_requested_commit != p["expectedRequestedCommit"]:
        problems.append(f"health deploy.requestedCommit: expected {p['expectedRequestedCommit']!r}, "
                        f"got {health.deploy_requested_commit!r}")
    return problems


def _settled(state: RuntimeState, problems: list[str]) -> bool:
    """Waiting cannot change the verdict: health answered, the container is gone or stopped, or
    something static (image, labels, stamp) is wrong."""
    answered = state.health is not None and state.health.reachable and state.health.error is None
    return answered or state.presence is not Presence.RUNNING or any(not m.startswith("health") for m in problems)


@attrs.define
class _ImageCache:
    """Each distinct image inspected once per observation (many containers may run one image)."""

    engine: reads.Engine
    _seen: dict[str, Mapping[str, Any] | None] = attrs.field(factory=dict)
    _lock: threading.Lock = attrs.field(factory=threading.Lock)

    def get(self, image_id: str) -> Mapping[str, Any] | None:
        with self._lock:
            if image_id in self._seen:
                return self._seen[image_id]
        found = reads.inspect_image(self.engine, image_id)
        with self._lock:
            self._seen[image_id] = found
        return found
