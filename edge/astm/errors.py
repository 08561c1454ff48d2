"""Errors of the ASTM E1394 record parser.

They name positions (record number, record type, field path such as ``R-4`` or ``H-2``),
never values: record content is PHI.
"""

from __future__ import annotations

from edge.errors import EdgeError, Fault


class ASTMError(EdgeError):
    """Base of the ``edge.astm`` errors."""


class RecordError(ASTMError):
    """A message that cannot be read as E1394 records: the sender's fault, not retriable.

    ``record`` is the 1-based position of the record in the message (0 for the message as a
    whole), ``field`` a path like ``O-3`` (empty when the record as a whole is wrong)."""

    fault: Fault = "peer"

    def __init__(self, record: int, field: str, reason: str) -> None:
        self.record = record
        self.field = field
        self.reason = reason
        where = f"record {record}" + (f" {field}" if field else "")
        super().__init__(f"{where}: {reason}")

    @property
    def location(self) -> str:
        """``record 3 R-4``: where, without the value."""
        return f"record {self.record}" + (f" {self.field}" if self.field else "")
