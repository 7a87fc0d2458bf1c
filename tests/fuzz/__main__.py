"""`python -m tests.fuzz --examples 10000`: the big fuzz run (see tests/fuzz/runner.py)."""

from tests.fuzz.runner import main

raise SystemExit(main())
