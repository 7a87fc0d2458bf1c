"""Print the fuzz harness's counts table at the end of a session that ran it."""

from __future__ import annotations

import pytest

from tests.fuzz.harness import TALLY


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY.examples:
        terminalreporter.section("udeploy fuzz (issue 9)")
        terminalreporter.write_line(TALLY.table())
