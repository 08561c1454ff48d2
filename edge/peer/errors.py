"""Errors of the peer API. Messages name what failed (a claim, a parameter), never data."""

from __future__ import annotations

from edge.errors import EdgeError


class PeerError(EdgeError):
    """Base of the peer package's errors."""


class RequestRefused(PeerError):
    """The peer's request is refused before any record is looked at. ``status`` is the HTTP
    status to answer (400 bad parameters, 401 bad or replayed context, 404 unknown route)."""

    fault = "peer"

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code  # a FHIR OperationOutcome issue code (invalid, security, not-found)


class ContextError(RequestRefused):
    """The request-context JWT is missing, malformed, badly signed, expired, not bound to the
    client certificate, or replayed (HTTP 401)."""

    def __init__(self, message: str) -> None:
        super().__init__(401, "security", message)


class ConsentInputError(PeerError):
    """A consent (CLI or FHIR API input) that cannot be stored; names the element."""

    fault = "peer"
