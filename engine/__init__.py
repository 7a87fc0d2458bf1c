"""udeploy's engine: the flow from manifests to a reviewed plan to a verified apply.

    load/    read and join deploy.json, config.json, CI.json and the k3s manifests; resolve SHAs
    plan/    observe through the provider protocol, diff, steps, DAG, guardrails; the plan and its file
    apply/   trust checks, lock, the parallel walk, jobs and resume
    checks/  manifest rules (D1-D4, E2), the G1 source guard, runtime checks (E3, E5)
    ci/      the CI producer side (publish, artifact status)
    cli/     one thin typer module per command group

`errors` (the error root and exit codes) and `provider_api` (the protocol every provider
implements) are shared by all phases. The engine changes the world only through providers and
never imports one (the contracts in pyproject.toml). What it reads or runs itself is local: the
files a command names, the checkout's git config (its `origin` URL), the state directory,
Graphviz `dot` for `graph --format svg|html`, and a child `udeploy apply` for `--detach`.
"""

__version__ = "0.1.0"
