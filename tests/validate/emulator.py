"""A throwaway Kubernetes API for the dry-run tests, in its own process (`python emulator.py MODE`).

MODE "lab" serves the lab's own API server (scripts/kubelab/kubeapi.py, which honours dryRun=All);
MODE "plain" serves kmock's KubernetesEmulator as it ships, which ignores dryRun and stores the
object. Prints the URL on one line, then serves until killed. A separate process keeps kubeapi's
patch of kmock's path parser out of the test process.
"""

import asyncio
import sys
from pathlib import Path

import kmock

KUBELAB = Path(__file__).resolve().parents[2] / "scripts" / "kubelab"


async def serve(mode: str) -> None:
    if mode == "lab":
        sys.path.insert(0, str(KUBELAB))
        from kubeapi import LabApiServer

        emulator: kmock.KubernetesEmulator = LabApiServer()
    else:
        emulator = kmock.KubernetesEmulator()
    async with emulator, kmock.Server(emulator) as server:
        print(server.url, flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(serve(sys.argv[1]))
