"""Issue 12, point 3: parallel reads over one SSH connection stay under sshd's MaxSessions.

The lab's main-server sshd runs with the default MaxSessions (10 channels per connection; scripts/lab
does not set it). Three times that many commands at once over one `SshShell` all succeed: at most
`maxChannels` (default 6) channels are open at a time; and set above MaxSessions, the channels the
server refuses are asked for again until they open.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from udeploy.providers.hostshell_ssh import SSH_SESSIONS, SshShell


def max_sessions(lab: dict[str, Any]) -> int:
    """sshd's MaxSessions as the lab configures it (default 10)."""
    with open(lab["ssh"]["sshd_config"]) as f:
        settings = [line.split() for line in f if line.strip().lower().startswith("maxsessions")]
    return int(settings[0][1]) if settings else 10


def lab_shell(lab: dict[str, Any], **options: Any) -> SshShell:
    ssh = lab["ssh"]
    return SshShell("main-server", host=ssh["host"], port=int(ssh["port"]), user=ssh["user"], key_file=ssh["key"],
                    known_hosts=ssh.get("known_hosts") or "/var/lib/udeploy-lab/ssh/known_hosts", **options)


@pytest.mark.parametrize("over", [None, 2], ids=["bounded-below-MaxSessions", "above-MaxSessions-refusals-retried"])
def test_more_parallel_reads_than_maxsessions_over_one_connection_all_succeed(
        over: int | None, lab: dict[str, Any], require: Callable[..., None]) -> None:
    require("sshd")
    limit = max_sessions(lab)
    assert SSH_SESSIONS < limit
    shell = lab_shell(lab, max_channels=SSH_SESSIONS if over is None else limit + over)
    reads = 3 * limit
    try:
        first = shell.connection()
        with ThreadPoolExecutor(max_workers=reads) as pool:
            results = list(pool.map(lambda i: shell.run('echo "$1"', str(i)), range(reads)))
        assert shell.connection() is first  # one connection carried them all, never dropped
    finally:
        shell.close()
    assert [r.returncode for r in results] == [0] * reads, [r.stderr for r in results if not r.ok]
    assert [r.stdout.strip() for r in results] == [str(i) for i in range(reads)]
