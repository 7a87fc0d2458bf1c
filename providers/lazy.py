"""Modules a provider loads when it is built, not when its class is imported.

`udeploy plan --no-refresh` imports the runtime providers' classes only to call their pure
`plan_steps`; it must not pay for (or depend on) the Docker, Kubernetes and SSH clients (issue 11).
A provider module names those modules with `lazy_module` and calls `load` in its `build`, which
the provider pool runs under its lock: a module is executed once, before any thread uses it
(importlib's `LazyLoader` is not safe to trigger from two threads at once before Python 3.12).
"""

from __future__ import annotations

import importlib.util
import sys
from types import ModuleType


def lazy_module(name: str) -> ModuleType:
    """`name`, executed when one of its attributes is first read (importlib's `LazyLoader`).
    Its parent packages are imported now: name a top-level package (`docker`, `kubernetes`) or a
    module of a package that is already loaded."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"no module named {name!r}", name=name)
    loader = importlib.util.LazyLoader(spec.loader)
    spec.loader = loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


def load(*modules: ModuleType) -> None:
    """Execute `modules` now (reading any attribute does)."""
    for module in modules:
        _ = module.__name__  # any attribute read runs it
