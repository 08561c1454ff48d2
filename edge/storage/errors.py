"""Storage errors: the database could not do what was asked."""

from __future__ import annotations

from edge.errors import EdgeError


class StorageError(EdgeError):
    """A database operation failed. Disk full, I/O errors and a locked database are retriable:
    the caller (an MLLP sender after an AR) may try again once the operator has fixed it."""

    fault = "environment"

    def __init__(self, operation: str, reason: str, *, retriable: bool = True) -> None:
        self.operation = operation
        self.reason = reason
        self.retriable = retriable
        super().__init__(f"{operation}: {reason}")
