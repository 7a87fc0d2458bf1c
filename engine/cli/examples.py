"""The "Examples" that end every command's `--help`: one or two real invocations each (README's CLI
tour is the source; tests/test_help_examples.py walks every command and checks each has them).

Kept in one table rather than on each decorator so that a new command without examples is one
obvious gap here, and so the command modules stay about options. Rich markup is on in typer's
help: no square brackets in an example (`[--detach]` would read as a style tag).
"""

from __future__ import annotations

import typer

EXAMPLES: dict[str, tuple[str, ...]] = {
    "plan": ("udeploy plan --env dev -out plan.json",
             "udeploy plan --env prod --service frontend --no-refresh"),
    "check": ("udeploy check --env dev",
              "udeploy check --env prod --service backend-core"),
    "show": ("udeploy show plan.json --format text",
             "udeploy show plan.json --format markdown --max-comment-chars 60000"),
    "graph": ("udeploy graph plan.json --format html > plan.html",
              "udeploy graph plan.json --format dot | dot -Tsvg > plan.svg"),
    "guardrails": ("udeploy guardrails",),
    "apply": ("udeploy apply plan.json --detach",
              "udeploy apply --env dev --service backend-core --dry-run"),
    "job status": ("udeploy job status 20261130T120000Z-0a1b2c --follow",
                   "udeploy job status 20261130T120000Z-0a1b2c --tail-bytes 4096"),
    "job show": ("udeploy job show 20261130T120000Z-0a1b2c --format html > job.html",
                 "udeploy job show 20261130T120000Z-0a1b2c --plan plan.json --format html > job.html"),
    "job list": ("udeploy job list",
                 "udeploy job list --state-url postgresql://udeploy@db.example/udeploy"),
    "lock status": ("udeploy lock status --env dev",),
    "lock release": ("udeploy lock release --env dev --lock-id <the lockId lock status shows>",),
    "history": ("udeploy history --env dev",
                "udeploy history --env prod --service backend-core"),
    "rollback": ("udeploy rollback --env dev --service backend-core --push",
                 "udeploy rollback --env dev --service backend-core --to <commit from udeploy history>"),
    "validate": ("udeploy validate",
                 "udeploy validate --manifest src/components/microservices/k3sctl-adapter/k3s/code-queue.k8s.yaml"),
    "guard code-queue-source": ("udeploy guard code-queue-source --root .",),
    "artifact publish": ("udeploy artifact publish --service backend-core --commit <full-sha> --dry-run",),
    "artifact status": ("udeploy artifact status",),
    "artifact mirror": ("udeploy artifact mirror --artifact filebrowser-upstream",),
}


def epilog(examples: tuple[str, ...]) -> str:
    """The epilog text: a heading, then one indented line per example."""
    return "\n".join(["Examples:", *(f"  $ {line}" for line in examples)])


def add_examples(app: typer.Typer, prefix: str = "") -> None:
    """Give every registered command its epilog (before typer builds the click commands)."""
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__.replace("_", "-") if command.callback else "")
        found = EXAMPLES.get(f"{prefix}{name}")
        if found and not command.epilog:
            command.epilog = epilog(found)
    for group in app.registered_groups:
        if group.typer_instance is not None:  # a group named by add_typer(name=) or by its own Typer(name=)
            add_examples(group.typer_instance, f"{prefix}{group.name or group.typer_instance.info.name} ")
