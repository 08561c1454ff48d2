"""Errors raised by the MLLP adapter (framer, client).

Each error says whose fault it is (``fault``) and whether trying again later can succeed
(``retriable``), in the same vocabulary as :class:`edge.errors.EdgeError`. Messages name sizes,
offsets, counts and control ids, never message content (it is PHI).
"""

from __future__ import annotations

from typing import Literal

from adapters.errors import AdapterError

Fault = Literal["peer", "config", "internal", "environment"]


class MLLPError(AdapterError):
    """Base of every MLLP adapter error."""

    fault: Fault = "internal"
    retriable: bool = False


class FramingError(MLLPError):
    """The peer broke MLLP framing in a way the caller cannot continue from (for the client:
    the answer to a message was truncated or larger than allowed)."""

    fault: Fault = "peer"


class InvalidAckError(MLLPError):
    """A frame that should hold an HL7 acknowledgement does not (no MSH, no MSA)."""

    fault: Fault = "peer"


class MLLPConnectionError(MLLPError):
    """The TCP/TLS connection could not be opened or broke while in use."""

    fault: Fault = "environment"
    retriable: bool = True


class PeerClosedError(MLLPConnectionError):
    """The peer closed the connection while acknowledgements were still owed."""

    def __init__(self, message: str, *, pending: int) -> None:
        super().__init__(message)
        self.pending = pending


class MLLPTimeoutError(MLLPError, TimeoutError):
    """Nothing happened within the timeout. ``stage`` is ``"connect"``, ``"write"`` or
    ``"ack"``; ``pending`` is how many acknowledgements were still owed."""

    fault: Fault = "environment"
    retriable: bool = True

    def __init__(self, message: str, *, stage: str, pending: int = 0) -> None:
        super().__init__(message)
        self.stage = stage
        self.pending = pending
