"""The k3s containerd, driven through the `ctr` CLI (the same tool the deploy path uses)."""

import subprocess
from pathlib import Path


class CtrError(RuntimeError):
    pass


def normalize(ref: str) -> str:
    """The name containerd stores for a Kubernetes image reference.

    `app:abc` -> `docker.io/library/app:abc`, `org/app` -> `docker.io/org/app:latest`;
    references with a registry host (`127.0.0.1:5000/x:y`, `localhost/x`) keep it.
    """
    name, at, digest = ref.partition("@")
    first, slash, _ = name.partition("/")
    if not slash or ("." not in first and ":" not in first and first != "localhost"):
        name = f"docker.io/{name}" if slash else f"docker.io/library/{name}"
    if not at and ":" not in name.rsplit("/", 1)[-1]:
        name += ":latest"
    return name + at + digest


class Ctr:
    def __init__(self, address: str, namespace: str = "k8s.io") -> None:
        self.base = ["ctr", "--address", address, "-n", namespace]

    def _ctr(self, *args: str) -> str:
        try:
            done = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise CtrError(f"ctr {args[0]}: {exc}") from exc
        if done.returncode != 0:
            raise CtrError(f"ctr {' '.join(args[:2])}: {done.stderr.strip() or done.stdout.strip()}")
        return done.stdout

    def images(self) -> set[str]:
        return set(self._ctr("images", "ls", "-q").split())

    def find_image(self, ref: str, images: set[str]) -> str | None:
        """The stored name under which `ref` is present, or None (Kubernetes: ImagePullBackOff)."""
        return next((name for name in (ref, normalize(ref)) if name in images), None)

    def containers(self) -> list[str]:
        return self._ctr("containers", "ls", "-q").split()

    def tasks(self) -> dict[str, str]:
        """Container ID -> task status (RUNNING, STOPPED, ...)."""
        rows = [line.split() for line in self._ctr("tasks", "ls").splitlines()[1:]]
        return {row[0]: row[-1] for row in rows if row}

    def run(self, image: str, container_id: str, env: dict[str, str], args: list[str],
            log: Path, cwd: str | None = None) -> None:
        """Start a detached container on the host network; its output goes to `log`."""
        log.parent.mkdir(parents=True, exist_ok=True)
        options = ["--net-host", f"--log-uri=file://{log}", "--label", "udeploy-lab=kubelab"]
        options += [f"--env={key}={value}" for key, value in env.items()]
        options += [f"--cwd={cwd}"] if cwd else []
        self._ctr("run", "-d", *options, image, container_id, *args)

    def remove(self, container_id: str) -> None:
        """Kill (SIGKILL: busybox httpd ignores SIGTERM) and delete the task and the container."""
        for args in (("tasks", "rm", "-f", container_id), ("containers", "rm", container_id)):
            try:
                self._ctr(*args)
            except CtrError as exc:
                if "not found" not in str(exc):
                    raise
