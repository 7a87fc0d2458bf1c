"""The command line: one thin module per command group (plan, apply, artifact, guard, validate),
the shared options and error boundary (`common`), the examples every `--help` ends with
(`examples`), how an apply's progress looks on stderr (`progress_view`, the one user of rich), and
the console script (`main`). A command
parses its options, calls one engine function and renders the result; no logic lives here.
A command imports the engine modules it calls inside its body, so that a command never pays for
another's clients (an offline plan imports no apply walk, validator or CI code).
"""

from udeploy.engine.cli.common import app
from udeploy.engine.cli.main import main

__all__ = ["app", "main"]
