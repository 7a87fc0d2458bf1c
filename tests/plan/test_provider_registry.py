"""K3: a provider is found by name through the `udeploy.providers` entry-point group, so a new
one is added by installing it, with no engine change."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from udeploy.engine.provider_api import ProviderNotFound, provider_class


def test_K3_builtin_providers_are_registered() -> None:
    for name in ("git", "registry", "compose-host", "k3s-native"):
        assert provider_class(name).__name__.endswith("Provider")


def test_K3_a_newly_installed_provider_is_found_without_engine_changes(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "echo_provider.py").write_text(
        "class EchoProvider:\n    name = 'echo'\n    @classmethod\n    def build(cls, host, catalog):\n"
        "        return cls()\n")
    dist = tmp_path / "echo_provider-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-provider\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[udeploy.providers]\necho = echo_provider:EchoProvider\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    cls = provider_class("echo")
    assert cls.__name__ == "EchoProvider" and cls.build(None, None).name == "echo"
    sys.modules.pop("echo_provider", None)


def test_K3_unknown_provider_is_a_clear_error() -> None:
    with pytest.raises(ProviderNotFound, match="udeploy.providers"):
        provider_class("no-such-provider")


def test_K3_a_provider_without_a_capability_gets_a_clear_error() -> None:
    """The pool checks what it hands out: a Compose host has no k3s runtime checks (E3/E5)."""
    import json

    from udeploy.engine.load.catalog import parse_catalog
    from udeploy.engine.plan.observe import ProviderPool
    from udeploy.engine.provider_api import ProviderCapabilityMissing

    sample = Path(__file__).resolve().parents[2] / "fixtures" / "unidesk-sample"
    catalog = parse_catalog(json.loads((sample / "config.json").read_text()),
                            json.loads((sample / "CI.json").read_text()))
    pool = ProviderPool(catalog)
    try:
        assert pool.runtime("D601").name == "compose-host"
        with pytest.raises(ProviderCapabilityMissing, match="RuntimeChecks"):
            pool.checks("D601")
    finally:
        pool.close()
