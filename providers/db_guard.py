"""D5 for real: run the dev foundation's db-guard script with `sh` against a dev DATABASE_URL
(must pass) and production-looking ones (must be refused). Passwords are masked in the output."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from engine.errors import Diagnostic, Severity
from engine.k8s_manifest import K8sObject
from engine.manifest_rules import DB_GUARD, address, db_guard_script, dev_database_url

# D5 inputs: the dev URL must pass (the Secret template's own, else this one); each of these
# production-looking URLs must be refused.
FALLBACK_DEV_URL = "postgres://unidesk_dev:dev@postgres-dev.unidesk-dev.svc.cluster.local:5432/unidesk_dev"
PROD_LIKE_URLS = (
    "postgres://unidesk:prod@unidesk-database:5432/unidesk",  # the production database (config.json prod)
    "postgres://unidesk:prod@d601-tcp-egress-gateway.unidesk.svc.cluster.local:15432/unidesk",  # its k3s route
    "postgres://unidesk_dev:dev@postgres-dev.unidesk-dev.svc.cluster.local:5432/unidesk",  # dev host, prod database
)


def _redact(url: str) -> str:
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def run_db_guard(path: str, objects: tuple[K8sObject, ...]) -> tuple[dict[str, Any], list[Diagnostic]]:
    """Run the ConfigMap's guard script with `sh`: the dev URL must pass, production-looking ones fail."""
    def finding(summary: str) -> Diagnostic:
        return Diagnostic(Severity.ERROR, "D5", summary, address=address(path, DB_GUARD[0]))

    script, sh = db_guard_script(objects), shutil.which("sh")
    if script is None:
        return {"ran": False}, [finding(f"{DB_GUARD[0]} has no {DB_GUARD[1]} to run")]
    if sh is None:
        return {"ran": False}, [finding("cannot run the db guard: no `sh` on PATH")]
    cases = [(dev_database_url(objects) or FALLBACK_DEV_URL, True), *((u, False) for u in PROD_LIKE_URLS)]
    runs, findings = [], []
    with tempfile.TemporaryDirectory(prefix="udeploy-db-guard-") as tmp:
        file = Path(tmp) / DB_GUARD[1]
        file.write_text(script)
        for url, should_pass in cases:
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": url}
            try:
                done = subprocess.run([sh, str(file)], env=env, capture_output=True, text=True, timeout=10)
                code, output = done.returncode, (done.stdout + done.stderr).strip()
            except subprocess.TimeoutExpired:
                code, output = None, "timed out after 10s"
            runs.append({"databaseUrl": _redact(url), "expect": "accept" if should_pass else "reject",
                         "exitCode": code, "accepted": code == 0, "output": _redact(output)[-500:]})
            if (code == 0) != should_pass:
                verb = "rejected the dev" if should_pass else "accepted the production-looking"
                findings.append(finding(f"{DB_GUARD[1]} {verb} DATABASE_URL {_redact(url)}"))
    return {"ran": True, "script": f"{DB_GUARD[0]}#{DB_GUARD[1]}", "runs": runs}, findings
