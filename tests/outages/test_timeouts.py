"""Issue 12, timeouts: one default per kind, set per host or registry in config.json, overridden
by `--timeout KIND=SECONDS` on the command line (docs/reliability.md)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from udeploy.engine.errors import ManifestInvalid, UsageError
from udeploy.engine.load.catalog import parse_catalog
from udeploy.engine.load.timeouts import DEFAULTS, Timeout, TimeoutKind, Timeouts, from_cli

FIXTURE = Path(__file__).resolve().parents[2] / "fixtures" / "unidesk-sample"


def sample_config() -> tuple[dict[str, Any], dict[str, Any]]:
    return (json.loads((FIXTURE / "config.json").read_text()), json.loads((FIXTURE / "CI.json").read_text()))


def test_every_kind_has_one_default() -> None:
    assert set(DEFAULTS) == set(TimeoutKind)
    assert Timeouts().get(TimeoutKind.REGISTRY) == DEFAULTS[TimeoutKind.REGISTRY]


def test_config_sets_host_and_registry_timeouts_and_the_command_line_wins() -> None:
    config, ci = sample_config()
    config["registry"]["timeouts"] = {"read": 3}
    config["hosts"]["main-server"]["timeouts"] = {"ssh": {"connect": 4, "read": 6}, "docker": {"read": 60}}
    catalog = parse_catalog(config, ci)
    assert catalog.registry_timeouts.get(TimeoutKind.REGISTRY) == Timeout(DEFAULTS[TimeoutKind.REGISTRY].connect, 3)
    host = catalog.hosts["main-server"].timeouts
    assert host.get(TimeoutKind.SSH) == Timeout(4, 6)
    assert host.get(TimeoutKind.DOCKER) == Timeout(DEFAULTS[TimeoutKind.DOCKER].connect, 60)
    assert catalog.hosts["D601"].timeouts.get(TimeoutKind.SSH) == DEFAULTS[TimeoutKind.SSH]

    overridden = catalog.with_timeouts(from_cli(["ssh.read=2", "registry=1.5"]))
    assert overridden.hosts["main-server"].timeouts.get(TimeoutKind.SSH) == Timeout(4, 2)
    assert overridden.hosts["D601"].timeouts.get(TimeoutKind.SSH) == Timeout(DEFAULTS[TimeoutKind.SSH].connect, 2)
    assert overridden.registry_timeouts.get(TimeoutKind.REGISTRY) == Timeout(1.5, 1.5)
    assert catalog.with_timeouts(Timeouts()) is catalog


@pytest.mark.parametrize("section", [{"read": 0}, {"read": -1}, {}, {"write": 3}])
def test_config_refuses_a_timeout_that_is_not_positive_seconds(section: dict[str, Any]) -> None:
    config, ci = sample_config()
    config["registry"]["timeouts"] = section
    with pytest.raises(ManifestInvalid):
        parse_catalog(config, ci)


@pytest.mark.parametrize("spec", ["registry", "nope=3", "ssh=abc", "ssh=0", "ssh.write=3", "ssh=99999"])
def test_cli_refuses_a_malformed_timeout(spec: str) -> None:
    with pytest.raises(UsageError) as caught:
        from_cli([spec])
    assert caught.value.path == "--timeout"


def test_cli_timeouts_round_trip_for_a_detached_child() -> None:
    timeouts = from_cli(["ssh=2", "registry.read=7"])
    assert from_cli(timeouts.cli_args()[1::2]) == timeouts
