"""Errors of the serial adapter. They name an errno or an exception type, never data."""

from __future__ import annotations

from typing import Literal

from adapters.errors import AdapterError

Fault = Literal["peer", "config", "internal", "environment"]


class SerialAdapterError(AdapterError):
    """Base of the serial adapter's errors."""

    fault: Fault = "environment"
    retriable: bool = True

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class PortUnavailable(SerialAdapterError):
    """The port could not be opened (missing device, busy, refused connection)."""


class PortGone(SerialAdapterError):
    """An open port stopped working (USB adapter unplugged, connection closed)."""
