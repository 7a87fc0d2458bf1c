"""A Kubernetes API client from one kubeconfig file, and nothing that file could make us run.

A kubeconfig may name a program to run for credentials (`users[].user.exec`) or a legacy
`auth-provider` plugin, and the kubernetes client runs them while it loads the file. config.json,
which a pull request shapes, names the kubeconfig path; a relative path would resolve inside the
bot's checkout, where the pull request can put a file of its own. So udeploy reads the file
itself (an absolute path, a bounded regular file, safe YAML within limits), refuses any user that
would run something, and builds the client from the checked document: a kubeconfig is data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.config import ConfigException, kube_config

from udeploy.engine.errors import UdeployError
from udeploy.engine.load.input_files import read_input, shown
from udeploy.engine.load.k8s_manifest import load_documents

MAX_KUBECONFIG_BYTES = 1024 * 1024  # a kubeconfig with inline certificates is a few kilobytes
RUNS_A_PROGRAM = ("exec", "auth-provider")


class KubeconfigRefused(UdeployError, ValueError):
    """The kubeconfig is not an absolute path to a readable file, or would run a program."""

    code = "kubeconfig-refused"


def read_kubeconfig(path: str | Path) -> dict[str, Any]:
    """The checked kubeconfig document, or `KubeconfigRefused` naming the file and the reason."""
    file = Path(path)
    if not file.is_absolute():
        raise KubeconfigRefused(f"kubeconfig {shown(file)!r} must be an absolute path (a relative one would "
                                "resolve inside the checkout)", path=shown(file))
    data = read_input(file, label="kubeconfig", max_bytes=MAX_KUBECONFIG_BYTES, error=KubeconfigRefused)
    documents = [doc for _, doc in load_documents(data, shown(file))]
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise KubeconfigRefused(f"kubeconfig {shown(file)} is not one YAML mapping", path=shown(file))
    doc: dict[str, Any] = documents[0]
    for i, entry in enumerate(doc.get("users") or []):
        user = entry.get("user") if isinstance(entry, dict) else None
        for key in RUNS_A_PROGRAM:
            if isinstance(user, dict) and key in user:
                name = entry.get("name")
                raise KubeconfigRefused(
                    f"kubeconfig {shown(file)} user {name!r} uses {key!r}, which runs a program to get "
                    "credentials; udeploy only uses certificates or tokens",
                    path=f"{shown(file)}#users[{i}].user.{key}")
    return doc


def new_client(path: str | Path, context: str | None = None) -> client.ApiClient:
    """An ApiClient built from this file only (never $KUBECONFIG or ~/.kube, E2)."""
    doc = read_kubeconfig(path)
    configuration = client.Configuration()
    try:
        kube_config.load_kube_config_from_dict(  # type: ignore[no-untyped-call]
            doc, context=context, client_configuration=configuration, persist_config=False,
            temp_file_path=str(Path(path).parent))
    except (ConfigException, KeyError, TypeError, ValueError, OSError) as exc:
        raise KubeconfigRefused(f"kubeconfig {shown(path)} cannot be used: {exc}", path=shown(path)) from None
    return client.ApiClient(configuration=configuration)
