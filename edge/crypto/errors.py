"""Errors of ``edge.crypto``.

Every message names *where* something went wrong (a table, row id, version, key id, KEK id or
file path) and never *what* was stored: no plaintext, no key bytes, no share bytes. Key ids and
KEK ids are random or derived by a one-way function, so they are safe to log.
"""

from __future__ import annotations

from pathlib import Path

from edge.errors import EdgeError, Fault


class CryptoError(EdgeError):
    """Root of every error raised by ``edge.crypto``."""


class IntegrityError(CryptoError):
    """A ciphertext or a wrapped key failed authentication.

    Raised when the bytes were tampered with, when a row was swapped or replayed (its AAD no
    longer matches), when the wrong key was used, or when the blob is malformed. No data is ever
    returned in that case. The attributes say which stored object failed; any may be ``None``
    when it does not apply (a wrapped key has no table).

    The fault is "environment": the stored bytes no longer are what we wrote (disk corruption
    or an attacker with write access), and retrying the same read cannot help.

    ``row_id`` is the AAD's row id, for a resource its ``Type/id``; ``row`` the SQLite row
    number of a stored row and ``problem`` which check failed, when known.
    """

    fault: Fault = "environment"

    def __init__(
        self,
        message: str,
        *,
        table: str | None = None,
        row_id: str | None = None,
        version: int | None = None,
        key_id: str | None = None,
        row: int | None = None,
        problem: str | None = None,
    ) -> None:
        super().__init__(message)
        self.table = table
        self.row_id = row_id
        self.version = version
        self.key_id = key_id
        self.row = row
        self.problem = problem

    def log_fields(self) -> dict[str, str | int | None]:
        """Where the failure is, for a log line that must carry no PHI: table, row number,
        resource type, version, key id and the check that failed. Not the logical id of
        ``row_id``: a FHIR client chooses it on update (``PUT Patient/{id}``), so it may be
        a medical record number; the row number finds the same row (``hie-edge verify``)."""
        rtype = self.row_id.partition("/")[0] if self.row_id and "/" in self.row_id else None
        return {"table": self.table, "row": self.row, "type": rtype, "version": self.version,
                "key_id": self.key_id, "problem": self.problem}


class UnknownKeyError(CryptoError):
    """A key id or KEK id is not known: a KEK version missing from the keys directory (fault
    "config": the operator removed or never installed it), or a data key that was destroyed
    (for example by erasure)."""

    def __init__(self, message: str, *, key_id: str, fault: Fault = "config") -> None:
        super().__init__(message)
        self.key_id = key_id
        self.fault = fault


class KeyFileError(CryptoError):
    """A key file (the KEK file, an archived KEK version, or the systemd credential) cannot be
    used: missing, unreadable, readable by group/others, or of the wrong length or encoding.
    The message names the path and the problem, never the file's content."""

    fault: Fault = "config"

    def __init__(self, path: Path | str, problem: str) -> None:
        super().__init__(f"key file {str(path)!r}: {problem}")
        self.path = Path(path)
        self.problem = problem


class ShareError(CryptoError):
    """A Shamir share of the KEK is malformed, mistyped (checksum mismatch), belongs to another
    KEK or split, or a set of shares cannot rebuild the KEK (too few, duplicates, or a share
    that passes its own checksum but yields a key whose id does not match)."""

    fault: Fault = "config"


class IndexInputError(CryptoError):
    """A value given to the blind indexer is empty or malformed after normalization (an empty
    family name, a birth date that is not a FHIR date, a gender outside AdministrativeGender).
    The message names the index kind, never the value."""

    fault: Fault = "peer"

    def __init__(self, kind: str, problem: str) -> None:
        super().__init__(f"blind index {kind!r}: {problem}")
        self.kind = kind
