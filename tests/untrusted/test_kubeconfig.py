"""Issue 9: a kubeconfig is data. config.json (pull-request content) names the kubeconfig path,
and a kubeconfig may name a program (`exec`, `auth-provider`) that the kubernetes client would run
while loading it. udeploy refuses such users and relative paths, so nothing a pull request puts
in the checkout is ever run by `plan` or `validate --kubectl-dry-run`."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from tests.conftest import Cli
from tests.sample_repo import SampleRepo
from tests.validate.support import validate
from udeploy.providers.kubeconfig import KubeconfigRefused, new_client, read_kubeconfig

LAB_KUBECONFIG = Path("/var/lib/udeploy-lab/k3s/kubeconfig.yaml")


def hostile_kubeconfig(marker: Path, key: str = "exec") -> dict[str, object]:
    run = f"touch {shlex.quote(str(marker))}"
    user = ({"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "sh", "args": ["-c", run]}}
            if key == "exec" else {"auth-provider": {"name": "oidc", "config": {"cmd-path": "sh"}}})
    return {"apiVersion": "v1", "kind": "Config", "current-context": "pwn",
            "clusters": [{"name": "c", "cluster": {"server": "http://127.0.0.1:1"}}],
            "contexts": [{"name": "pwn", "context": {"cluster": "c", "user": "u"}}],
            "users": [{"name": "u", "user": user}]}


@pytest.mark.parametrize("key", ["exec", "auth-provider"])
def test_issue9_a_kubeconfig_that_runs_a_program_is_refused_and_nothing_runs(key: str, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    file = tmp_path / "kubeconfig.yaml"
    file.write_text(yaml.safe_dump(hostile_kubeconfig(marker, key)))
    with pytest.raises(KubeconfigRefused, match=key) as err:
        new_client(file)
    assert err.value.path == f"{file}#users[0].user.{key}"
    assert not marker.exists()


def test_issue9_a_relative_kubeconfig_path_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigRefused, match="absolute"):
        read_kubeconfig("kubeconfig.yaml")


def test_issue9_the_labs_kubeconfig_still_builds_a_client() -> None:
    api = new_client(LAB_KUBECONFIG, "udeploy-lab")
    assert api.configuration.host.startswith("http://127.0.0.1:")
    api.close()


def test_issue9_validate_dry_run_never_runs_the_kubeconfigs_program(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    file = tmp_path / "kubeconfig.yaml"
    file.write_text(yaml.safe_dump(hostile_kubeconfig(marker)))
    manifest = tmp_path / "m.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x, namespace: unidesk-dev}\n")
    code, doc = validate("--manifest", str(manifest), "--kubectl-dry-run", "--kubeconfig", str(file))
    assert doc["dryRun"]["mode"] == "structural" and doc["dryRun"]["reason"] == "kubeconfig-refused"
    assert not marker.exists()


@pytest.mark.parametrize("where", ["absolute", "relative"])
def test_issue9_plan_with_a_pull_requests_kubeconfig_is_refused_before_anything_runs(
        where: str, sample: SampleRepo, cli: Cli, tmp_path: Path) -> None:
    """The attack as a pull request would make it: a kubeconfig committed in the repository and
    config.json naming it, then a bot's `plan --env dev` in that checkout. A relative path is a
    schema error; an absolute one into the checkout reaches the provider, which refuses `exec`."""
    marker = tmp_path / "ran"
    config = json.loads((sample.clone / "config.json").read_text())
    named = "ci/kubeconfig.yaml" if where == "relative" else str(sample.clone / "ci" / "kubeconfig.yaml")
    config["hosts"]["D601-k3s"]["kubeconfig"] = named
    sample.commit_change("ci/kubeconfig.yaml", yaml.safe_dump(hostile_kubeconfig(marker)), "a kubeconfig")
    sample.commit_change("config.json", json.dumps(config, indent=2), "use it")
    r = cli("plan", "--env", "dev", "--service", "backend-core")
    assert r.exit_code == 1, r.stdout
    assert r.json["error"]["code"] == ("manifest-invalid" if where == "relative" else "kubeconfig-refused"), r.json
    assert "Traceback" not in r.stderr
    assert not marker.exists()


@pytest.mark.parametrize("section,inner,key", [("users", "user", "tokenFile"), ("users", "user", "client-key"),
                                               ("users", "user", "client-certificate"),
                                               ("clusters", "cluster", "certificate-authority")])
def test_issue9_a_kubeconfig_never_makes_the_client_send_a_local_file(section: str, inner: str, key: str,
                                                                      tmp_path: Path) -> None:
    """A file the client would read and send to the kubeconfig's server (a way to post any file on
    the bot to any server) is refused by name; only inline credentials are used."""
    secret = tmp_path / "secret"
    secret.write_text("S3CRET")
    doc = hostile_kubeconfig(tmp_path / "ran")
    doc["users"] = [{"name": "u", "user": {"token": "inline"}}]
    entry = doc[section][0]  # type: ignore[index]
    entry[inner] = {**({"server": "https://attacker.invalid"} if section == "clusters" else {}), key: str(secret)}
    file = tmp_path / "kubeconfig.yaml"
    file.write_text(yaml.safe_dump(doc))
    with pytest.raises(KubeconfigRefused, match=key) as err:
        new_client(file)
    assert err.value.path == f"{file}#{section}[0].{inner}.{key}"


@pytest.mark.parametrize("users", ["x", ["x"], [{"name": "u", "user": "x"}], [{"name": "u", "user": ["x"]}]])
def test_issue9_a_kubeconfig_of_the_wrong_shape_is_refused_not_a_crash(users: object, tmp_path: Path) -> None:
    doc = hostile_kubeconfig(tmp_path / "ran")
    doc["users"] = users
    file = tmp_path / "kubeconfig.yaml"
    file.write_text(yaml.safe_dump(doc))
    with pytest.raises(KubeconfigRefused):
        new_client(file)
