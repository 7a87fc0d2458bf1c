"""The two kinds of failure (STYLE 9).

Program errors are exceptions under one root, `UdeployError`; each carries a stable `code`, the
JSON path or git ref at fault, and the exit code the CLI turns it into. Problems a user should see
together (guardrail findings) are `Diagnostic` values, collected rather than raised.
"""

from __future__ import annotations

import enum
from typing import Any

import attrs


class ExitCode(enum.IntEnum):
    """The CLI contract's exit codes (DESIGN.md)."""

    OK = 0
    ERROR = 1
    CHANGES = 2
    POLICY_REFUSED = 3
    STALE_PLAN = 4


class UdeployError(Exception):
    """Root of every error udeploy raises on purpose."""

    code = "error"
    exit_code = ExitCode.ERROR

    def __init__(self, message: str, *, path: str | None = None, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message, "path": self.path}
        if self.details is not None:
            body["details"] = self.details
        return {"error": body}


class UsageError(UdeployError, ValueError):
    code = "usage"


class ManifestInvalid(UdeployError, ValueError):
    """A manifest is not valid JSON or breaks its schema."""

    code = "manifest-invalid"


class InputTooLarge(UdeployError, ValueError):
    """An input, or the work it asks for, is over a documented limit (size, nesting, YAML documents,
    alias expansion, graph layout): refused before the work it would cost, naming what is at fault."""

    code = "input-too-large"


class ForbiddenServiceField(ManifestInvalid):
    """M2: a deploy.json service entry carries runtime topology."""

    code = "forbidden-service-field"


class UnknownEnvironment(UdeployError, LookupError):
    """M8: an environment name nobody declared (e.g. `dev-v1`)."""

    code = "unknown-environment"


class ServiceNotFound(UdeployError, LookupError):
    code = "service-not-found"


class CatalogEntryMissing(UdeployError, LookupError):
    """M3: deploy.json names a service config.json does not know."""

    code = "catalog-entry-missing"


class CommitNotFound(UdeployError, LookupError):
    code = "commit-not-found"


class CommitAmbiguous(UdeployError, LookupError):
    code = "commit-ambiguous"


class GitError(UdeployError, RuntimeError):
    code = "git-error"


class RuleError(UdeployError):
    """An error that names the numbered requirement behind it (`rule`: P3, S1, ...)."""

    def __init__(self, message: str, *, rule: str, path: str | None = None, details: Any = None) -> None:
        super().__init__(message, path=path, details=details)
        self.rule = rule

    def to_json(self) -> dict[str, Any]:
        body = super().to_json()
        body["error"]["rule"] = self.rule
        return body


class PolicyRefused(RuleError):
    """The command asks for something policy refuses (P3, P4, ...)."""

    code = "policy-refused"
    exit_code = ExitCode.POLICY_REFUSED


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@attrs.frozen
class Diagnostic:
    """A user-facing finding, reported together with the others (Terraform tfdiags)."""

    severity: Severity
    code: str
    summary: str
    detail: str = ""
    address: str | None = None  # the service id, node or manifest path it is about
