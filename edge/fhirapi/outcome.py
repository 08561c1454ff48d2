"""Errors of the FHIR API and their OperationOutcome (FHIR R4 3.1.0.1.1, 2.36 OperationOutcome).

Every failure a client can cause is a :class:`FHIRAPIError` with its HTTP status, an issue code
(R4 value set ``issue-type``) and the FHIR path or HTTP element at fault, so the client learns
*where* without us echoing values (no PHI in errors or logs).
"""

from __future__ import annotations

import re
from typing import Any, Final

from edge.errors import EdgeError, Fault

__all__ = ["FHIRAPIError", "operation_outcome"]

# HTTP status -> OperationOutcome.issue.code (R4 value set issue-type).
_ISSUE_CODES: Final = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found",
                       405: "not-supported", 406: "not-supported", 409: "conflict",
                       410: "deleted", 412: "conflict", 413: "too-costly",
                       415: "not-supported", 422: "business-rule", 500: "exception",
                       502: "transient", 503: "transient", 504: "timeout"}


_FHIRPATH: Final = re.compile(r"[A-Z][A-Za-z]+(\.[A-Za-z0-9_]+(\[\d+\])?)*")


class FHIRAPIError(EdgeError):
    """A request the API answers with an error. ``path`` names the FHIR element or HTTP part
    (``Observation.status``, ``Bundle.entry[2].request.url``, ``If-Match``)."""

    def __init__(self, status: int, path: str, reason: str, *,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(f"{path}: {reason}" if path else reason)
        self.status = status
        self.path = path
        self.reason = reason
        self.headers = headers or {}

    @property
    def fault(self) -> Fault:  # type: ignore[override]
        return "peer" if self.status < 500 else "environment"

    @property
    def retriable(self) -> bool:  # type: ignore[override]
        return self.status in (409, 429, 502, 503, 504)

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.status, self.reason, self.path)


def operation_outcome(status: int, text: str, path: str = "", *,
                      severity: str = "") -> dict[str, Any]:
    """One-issue OperationOutcome; ``expression`` carries the FHIR path when there is one."""
    issue: dict[str, Any] = {
        "severity": severity or ("information" if status < 400
                                 else "error" if status < 500 else "fatal"),
        "code": _ISSUE_CODES.get(status, "processing" if status >= 400 else "informational"),
        "diagnostics": f"{path}: {text}" if path else text,
    }
    if _FHIRPATH.fullmatch(path):
        issue["expression"] = [path]  # a FHIRPath, e.g. Bundle.entry[1].resource.status
    elif path:
        issue["location"] = [path]  # an HTTP element, e.g. If-Match
    return {"resourceType": "OperationOutcome", "issue": [issue]}
