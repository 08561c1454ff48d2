"""Errors of the normalization stage.

A :class:`NormalizeError` names the HL7 location that failed (``PID-3.4``, ``OBX[2]-5``) and
why, never the value found there (values are PHI). ``fault`` is "peer" for content the sender
got wrong, "config" when the message is fine but our configuration cannot place it (an
assigning authority missing from ``[facility.identifier_systems]`` under the ``dead-letter``
policy): fixing the config and replaying the message then succeeds.
"""

from __future__ import annotations

from edge.errors import EdgeError, Fault

__all__ = ["NormalizeError"]


class NormalizeError(EdgeError):
    """A message could not be turned into valid FHIR. ``path`` is an HL7 or FHIR path."""

    fault: Fault = "peer"
    retriable = False

    def __init__(self, path: str, reason: str, *, fault: Fault = "peer") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.fault = fault
