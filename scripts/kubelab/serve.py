"""The lab's Kubernetes: an API server (kmock's emulator) and a controller running Deployments.

    python3 scripts/kubelab/serve.py [--port 16443] [--kubeconfig PATH] [--containerd-socket SOCK]

Serves http://127.0.0.1:16443, writes a kubeconfig for it (cluster, context and user
`udeploy-lab`), and runs Deployments as containers in the k3s containerd (see controller.py).
State is in memory: a restart starts from an empty cluster (and removes the old containers).
SIGTERM or SIGINT stops the containers it started and exits. See README.md.
"""

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
import urllib.parse
from pathlib import Path

import kmock
import svcproxy
from containerd import Ctr
from controller import Controller
from kubeapi import LabApiServer
from kubernetes import client, config

log = logging.getLogger("kubelab")
CONTROLLER_AGENT = "kubelab-controller"

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: udeploy-lab
  cluster:
    server: {url}
contexts:
- name: udeploy-lab
  context:
    cluster: udeploy-lab
    user: udeploy-lab
current-context: udeploy-lab
users:
- name: udeploy-lab
  user:
    token: udeploy-lab-dummy-token
"""


class ApiServerThread(threading.Thread):
    """Runs the emulator's aiohttp server in its own event loop."""

    def __init__(self, api: LabApiServer, host: str, port: int) -> None:
        super().__init__(name="kube-api", daemon=True)
        self.api, self.host, self.port = api, host, port
        self.started = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    def run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:
            self.error = exc
        finally:
            self.started.set()

    async def _serve(self) -> None:
        self._loop, self._stopping = asyncio.get_running_loop(), asyncio.Event()
        async with self.api, kmock.Server(self.api, host=self.host, port=self.port):
            self.started.set()
            await self._stopping.wait()

    def stop(self) -> None:
        if self._loop and self._stopping:
            self._loop.call_soon_threadsafe(self._stopping.set)


def write_kubeconfig(path: Path, url: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(KUBECONFIG.format(url=url))
    tmp.chmod(0o600)
    tmp.replace(path)  # atomic: a reader never sees half a file


def main() -> int:
    # Defaults: the lab layout, as `scripts/lab` exports it (UDLAB_*) or as docs/lab.md fixes it.
    env = os.environ.get
    api = urllib.parse.urlsplit(env("UDLAB_KUBE_API", "http://127.0.0.1:16443"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=api.hostname)
    parser.add_argument("--port", type=int, default=api.port)
    parser.add_argument("--kubeconfig", type=Path,
                        default=Path(env("UDLAB_KUBE_KUBECONFIG", "/var/lib/udeploy-lab/k3s/kubeconfig.yaml")))
    parser.add_argument("--containerd-socket",
                        default=env("UDLAB_K3S_CONTAINERD_ADDRESS", "/run/udeploy-lab/k3s/containerd.sock"))
    parser.add_argument("--containerd-namespace", default=env("UDLAB_K3S_NAMESPACE", "k8s.io"))
    parser.add_argument("--log-dir", type=Path, help="where container output goes (one file per container)",
                        default=Path(env("UDLAB_LOGS", "/var/lib/udeploy-lab/logs")) / "kubelab")
    parser.add_argument("--interval", type=float, default=0.5, help="controller resync period, seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # The access log shows what clients do; the controller's resync polling would drown it.
    logging.getLogger("aiohttp.access").addFilter(lambda record: CONTROLLER_AGENT not in record.getMessage())

    kube = LabApiServer()
    svcproxy.install(kube)
    server = ApiServerThread(kube, args.host, args.port)
    server.start()
    server.started.wait()
    if server.error:
        log.error("cannot serve on %s:%d: %s", args.host, args.port, server.error)
        return 1
    url = f"http://{args.host}:{args.port}"
    write_kubeconfig(args.kubeconfig, url)
    log.info("Kubernetes API on %s, kubeconfig %s (pid %d)", url, args.kubeconfig, os.getpid())

    # The controller is a client like any other: it uses the kubeconfig it just wrote.
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(args.kubeconfig), client_configuration=configuration)
    api_client = client.ApiClient(configuration)
    api_client.user_agent = CONTROLLER_AGENT
    controller = Controller(api_client,
                            Ctr(args.containerd_socket, args.containerd_namespace), args.log_dir, args.interval)
    kube.on_change = controller.wake.set  # react to user writes at once, not at the next resync
    controller_thread = threading.Thread(target=controller.run, name="controller")
    controller_thread.start()

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: stop.set())
    while not stop.wait(1):
        if not server.is_alive():
            log.error("the API server stopped: %s", server.error)
            break
    log.info("stopping")
    controller.stop()
    controller_thread.join(60)
    server.stop()
    server.join(10)
    return 0 if stop.is_set() else 1


if __name__ == "__main__":
    sys.exit(main())
