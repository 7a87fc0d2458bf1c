"""A Kubernetes API client from one kubeconfig file, and nothing that file could make us run or send.

config.json, which a pull request shapes, names the kubeconfig path, and a pull request can put a
kubeconfig of its own in the checkout. A kubeconfig may name a program to run for credentials
(`users[].user.exec`, a legacy `auth-provider`), and files the client reads and sends to the
server the kubeconfig names (`tokenFile`, `client-certificate`, `client-key`,
`certificate-authority`): a way to post any file on this machine to any server. So udeploy reads
the file itself (an absolute path, a bounded regular file, safe YAML within limits), accepts only
inline credentials (`token`, `*-data`), refuses the rest by name, and builds the client from the
checked document: a kubeconfig is data.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.config import ConfigException, kube_config

from udeploy.engine.errors import InputTooLarge, ManifestInvalid, UdeployError
from udeploy.engine.load.input_files import read_input, shown
from udeploy.engine.load.k8s_manifest import load_documents

MAX_KUBECONFIG_BYTES = 1024 * 1024  # a kubeconfig with inline certificates is a few kilobytes
RUNS_A_PROGRAM = ("exec", "auth-provider")
READS_A_FILE = {"users": ("tokenFile", "client-certificate", "client-key"), "clusters": ("certificate-authority",)}
SECTIONS = {"users": "user", "clusters": "cluster", "contexts": "context"}


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
    try:
        documents = [doc for _, doc in load_documents(data, shown(file))]
    except (ManifestInvalid, InputTooLarge) as exc:
        raise KubeconfigRefused(f"kubeconfig {exc.message}", path=exc.path) from None
    if len(documents) != 1 or not isinstance(documents[0], dict):
        raise KubeconfigRefused(f"kubeconfig {shown(file)} is not one YAML mapping", path=shown(file))
    doc: dict[str, Any] = documents[0]
    for section, inner in SECTIONS.items():
        entries = doc.get(section) or []
        if not isinstance(entries, list) or not all(
                isinstance(e, dict) and isinstance(e.get(inner, {}), dict) for e in entries):
            raise KubeconfigRefused(f"kubeconfig {shown(file)} {section} must be a list of mappings with a "
                                    f"{inner!r} mapping", path=f"{shown(file)}#{section}")
        for i, entry in enumerate(entries):
            body = entry.get(inner) or {}
            for key in (RUNS_A_PROGRAM if section == "users" else ()):
                if key in body:
                    raise KubeconfigRefused(
                        f"kubeconfig {shown(file)} user {entry.get('name')!r} uses {key!r}, which runs a program "
                        "to get credentials; udeploy only uses inline tokens or certificates",
                        path=f"{shown(file)}#users[{i}].user.{key}")
            for key in READS_A_FILE.get(section, ()):
                if key in body:
                    raise KubeconfigRefused(
                        f"kubeconfig {shown(file)} {inner} {entry.get('name')!r} names a file ({key!r}) the client "
                        "would read and send to the server; inline it (token, or the *-data form)",
                        path=f"{shown(file)}#{section}[{i}].{inner}.{key}")
    return doc


def new_client(path: str | Path, context: str | None = None) -> client.ApiClient:
    """An ApiClient built from this file only (never $KUBECONFIG or ~/.kube, E2)."""
    doc = read_kubeconfig(path)
    configuration = client.Configuration()
    try:
        kube_config.load_kube_config_from_dict(  # type: ignore[no-untyped-call]
            doc, context=context, client_configuration=configuration, persist_config=False,
            temp_file_path=str(Path(path).parent))
    except (ConfigException, AttributeError, KeyError, TypeError, ValueError, OSError) as exc:
        raise KubeconfigRefused(f"kubeconfig {shown(path)} cannot be used: {exc}", path=shown(path)) from None
    # One request, one wait: urllib3's default 3 retries made a stalled API server cost four read timeouts.
    configuration.retries = False
    return client.ApiClient(configuration=configuration)
