"""Storage errors: the database could not do what was asked."""

from __future__ import annotations

import sqlite3

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


def storage_error(exc: sqlite3.Error, operation: str = "commit") -> StorageError:
    """The StorageError for SQLite's ``exc`` during ``operation``. SQLite's messages name
    tables and conditions (locked, disk I/O, full), never row values."""
    # SQLITE_FULL, SQLITE_IOERR and SQLITE_BUSY/LOCKED clear up without a code change.
    retriable = isinstance(exc, sqlite3.OperationalError)
    return StorageError(operation, f"{exc.__class__.__name__}: {exc}", retriable=retriable)
