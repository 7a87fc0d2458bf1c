"""How long udeploy waits for each kind of call, as a value (docs/reliability.md has the table).

Each kind of remote call has one documented default `Timeout(connect, read)` in seconds. A host of
config.json may set its own (`hosts.<id>.timeouts.<kind>`), the registry its own
(`registry.timeouts`), and the command line overrides both (`--timeout KIND=SECONDS`, or
`KIND.connect=` / `KIND.read=` for one half). What "read" bounds depends on the kind: an HTTP
answer (registry, Docker API, Kubernetes API), the SSH banner, key exchange and authentication
(ssh), a whole `ctr` command (containerd).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any

import attrs

from udeploy.engine.errors import UsageError


class TimeoutKind(enum.Enum):
    REGISTRY = "registry"
    DOCKER = "docker"
    SSH = "ssh"
    KUBERNETES = "kubernetes"
    CONTAINERD = "containerd"


@attrs.frozen
class Timeout:
    connect: float = attrs.field(converter=float)  # seconds to establish the connection (TCP, or the unix socket)
    read: float = attrs.field(converter=float)  # seconds to wait for an answer once connected

    def describe(self) -> str:
        return f"connect {self.connect:g} s, read {self.read:g} s"


DEFAULTS: Mapping[TimeoutKind, Timeout] = {
    TimeoutKind.REGISTRY: Timeout(connect=5, read=10),
    TimeoutKind.DOCKER: Timeout(connect=5, read=120),  # image builds and pulls answer slowly
    TimeoutKind.SSH: Timeout(connect=10, read=10),  # read: banner, key exchange, authentication
    TimeoutKind.KUBERNETES: Timeout(connect=5, read=10),
    TimeoutKind.CONTAINERD: Timeout(connect=5, read=120),  # each `ctr` call; image pulls answer slowly
}


@attrs.frozen
class Timeouts:
    """Timeouts set somewhere (config.json or the command line), by kind and half; the rest default."""

    # (kind, "connect"|"read") -> seconds
    settings: Mapping[tuple[TimeoutKind, str], float] = attrs.field(factory=dict)

    def get(self, kind: TimeoutKind) -> Timeout:
        default = DEFAULTS[kind]
        return Timeout(connect=self.settings.get((kind, "connect"), default.connect),
                       read=self.settings.get((kind, "read"), default.read))

    def overridden_by(self, other: Timeouts) -> Timeouts:
        """These settings with `other`'s on top (the command line over config.json)."""
        return Timeouts({**self.settings, **other.settings}) if other.settings else self

    def __bool__(self) -> bool:
        return bool(self.settings)

    def cli_args(self) -> list[str]:
        """The `--timeout` options that give these settings (for a detached child)."""
        return [arg for (kind, half), seconds in self.settings.items()
                for arg in ("--timeout", f"{kind.value}.{half}={seconds:g}")]


def from_config(section: Mapping[str, Any] | None, kind: TimeoutKind | None = None) -> Timeouts:
    """config.json `timeouts`: `{connect, read}` for the registry (`kind` given), or
    `{<kind>: {connect, read}}` on a host (the schema has already checked the shape)."""
    if not section:
        return Timeouts()
    by_kind = {kind.value: section} if kind is not None else section
    return Timeouts({(TimeoutKind(k), half): float(seconds) for k, halves in by_kind.items()
                     for half, seconds in halves.items()})


def from_cli(specs: Iterable[str], option: str = "--timeout") -> Timeouts:
    """`KIND=SECONDS` (both halves), `KIND.connect=SECONDS` or `KIND.read=SECONDS`, repeatable."""
    kinds = ", ".join(k.value for k in TimeoutKind)
    settings: dict[tuple[TimeoutKind, str], float] = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        kind_name, _, half = name.strip().partition(".")
        try:
            kind = TimeoutKind(kind_name)
            seconds = float(value)
        except ValueError:
            raise UsageError(f"{option} {ascii(spec)[:80]}: expected KIND[.connect|.read]=SECONDS with KIND one of "
                             f"{kinds}", path=option) from None
        if not sep or half not in ("", "connect", "read") or not 0 < seconds <= 3600:
            raise UsageError(f"{option} {ascii(spec)[:80]}: expected KIND[.connect|.read]=SECONDS, seconds in "
                             "(0, 3600]", path=option)
        for h in (half,) if half else ("connect", "read"):
            settings[(kind, h)] = seconds
    return Timeouts(settings)
