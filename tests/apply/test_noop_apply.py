"""A converged sample dev environment: a second `plan -out` + `apply` changes nothing the engines can see
(K1, O6; issue 11). Counted from the engines themselves, never from udeploy's log: Docker events on
both engines (pulls, tags, container creates/starts/destroys), containerd events of the k3s node
(image creates/updates = imports and tags, container creates), and every Deployment's
resourceVersion and every Pod's uid in the namespace.

Image events are matched by the sample's image names, which other suites running on the same lab
at the same moment may pull too; the window is the no-op apply alone (a few seconds).
"""

from __future__ import annotations

import re
from pathlib import Path

from kubernetes import client

from bench.engine_events import EngineWatch
from tests.apply.conftest import ENGINES, KUBECONFIG, Lab
from tests.apply.test_apply_compose import by_id
from tests.apply.test_apply_dev_env import SECRETS, plan_dev

SAMPLE_IMAGES = re.compile(r"127\.0\.0\.1:5000/unidesk/|unidesk-[a-z]|baidu-netdisk")
CONTAINERD = "/run/udeploy-lab/k3s/containerd.sock"


def test_K1_O6_noop_apply_of_a_converged_dev_environment_makes_no_pull_import_or_recreate(
        lab: Lab, empty_dev_namespace: client.CoreV1Api, tmp_path: Path) -> None:
    for row in lab.cli("artifact", "status").json["environments"]["dev"]:
        if row["artifact"] == "missing":
            lab.publish(row["service"], row["commit"])
    lab.write_secrets(SECRETS, env="dev")
    plan_dev(lab, tmp_path / "plan.json")
    first = watch(lab)
    first.start()
    deployed = lab.cli("apply", str(tmp_path / "plan.json"), *lab.apply_args())
    deploy_seen = first.stop()["counts"]
    assert deployed.exit_code == 0, deployed.stdout[-3000:] + deployed.stderr[-3000:]
    converged = {s["id"] for s in deployed.json["services"] if s["verified"]}
    assert len(converged) >= 10
    # the watch is not blind: the first deploy's pulls and creates were seen on every engine (imports
    # only when the k3s containerd did not hold the image yet: the sample's commits are the same every run)
    for kind in ("main-server image pull", "D601 image pull", "main-server container create",
                 "D601 container create", "containerd /containers/create", "k8s Deployment created"):
        assert deploy_seen.get(kind, 0) > 0, (kind, deploy_seen)

    again = by_id(plan_dev(lab, tmp_path / "again.json"))
    assert {s for s, i in again.items() if i["action"] == "noop"} == converged
    second = watch(lab)
    second.start()
    noop = lab.cli("apply", str(tmp_path / "again.json"), *lab.apply_args())
    seen = second.stop()

    assert noop.exit_code == 0, noop.stdout[-3000:] + noop.stderr[-3000:]
    assert noop.json["state"] == "succeeded"
    assert seen["counts"] == {}, seen["events"]


def watch(lab: Lab) -> EngineWatch:
    return EngineWatch(ENGINES, containerd_socket=CONTAINERD, kubeconfig=KUBECONFIG, namespace="unidesk-dev",
                       image_match=lambda text: bool(SAMPLE_IMAGES.search(text)),
                       project_match=lambda project: project == f"{lab.project}-dev")
