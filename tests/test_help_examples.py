"""Every command's `--help` ends with an "Examples" section of real invocations (issue 14): the test
walks the typer app, so a new command without examples fails here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from udeploy.engine.cli import app
from udeploy.engine.cli.examples import EXAMPLES


def command_paths(group: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    """Typer may vendor its own click: a group is whatever has subcommands."""
    for name, command in sorted(group.commands.items()):
        if command.hidden:
            continue
        if hasattr(command, "commands"):
            yield from command_paths(command, (*prefix, name))
        else:
            yield (*prefix, name)


COMMANDS = list(command_paths(typer.main.get_command(app)))


def test_the_walk_finds_every_command_group() -> None:
    assert {"plan", "apply", "show", "graph", "check"} <= {p[0] for p in COMMANDS}
    assert ("job", "status") in COMMANDS and ("artifact", "publish") in COMMANDS


@pytest.mark.parametrize("path", COMMANDS, ids=" ".join)
def test_help_ends_with_examples_of_this_command(path: tuple[str, ...]) -> None:
    r = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": "200", "TERM": "dumb"})
    assert r.exit_code == 0, r.output
    lines = [line.strip(" │") for line in r.output.rstrip().splitlines()]
    heading = max(i for i, line in enumerate(lines) if line.strip() == "Examples:")
    examples = [line.strip() for line in lines[heading + 1:] if line.strip()]
    assert 1 <= len(examples) <= 2, examples
    assert all(e.startswith(f"$ udeploy {' '.join(path)}") for e in examples), examples
    assert tuple(e.removeprefix("$ ") for e in examples) == EXAMPLES[" ".join(path)]


def test_no_examples_for_commands_that_do_not_exist() -> None:
    assert set(EXAMPLES) == {" ".join(p) for p in COMMANDS}
