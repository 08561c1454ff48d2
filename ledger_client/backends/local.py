"""The embedded default backend: anchored checkpoints kept on this machine.

Each published checkpoint is appended, as its signed note, to an append-only text file (one
note after another, each ending with its signature lines and a blank line), fsynced, and then
recorded in the ``ledger_local_anchors`` table, which answers ``latest`` and ``get``. The file
is what an operator copies off the machine or hands to an auditor: every note in it verifies
with the facility's published key, and successive notes must be consistent.

If the process dies between the file append and the table insert, the outbox publishes the
same checkpoint again and the file holds that note twice: harmless, the notes are identical.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from ledger_client.backends.base import AnchoredCheckpoint, AnchorRef, LedgerBackend
from ledger_client.checkpoint import SignedCheckpoint
from ledger_client.errors import AnchorConflict, AnchorRejected, BackendUnavailable

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_local_anchors (
    facility     TEXT NOT NULL,
    tree_size    INTEGER NOT NULL,
    root_hash    BLOB NOT NULL,
    timestamp_ms INTEGER NOT NULL,
    note         TEXT NOT NULL,
    location     TEXT NOT NULL,
    PRIMARY KEY (facility, tree_size)
) WITHOUT ROWID
"""


class LocalBackend(LedgerBackend):
    """Checkpoints in ``db`` (a sqlite3 path or an open connection) and ``notes_file``."""

    name = "local"

    def __init__(self, db: str | Path | sqlite3.Connection, notes_file: str | Path) -> None:
        if isinstance(db, sqlite3.Connection):
            self._conn, self._owns = db, False
        else:
            self._conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 5000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._owns = True
        self._conn.execute(SCHEMA)
        self._notes = Path(notes_file)

    def __repr__(self) -> str:
        return f"LocalBackend(notes_file={self._notes.name!r})"

    def _row(self, facility: str, tree_size: int | None) -> AnchoredCheckpoint | None:
        cols = "facility, tree_size, root_hash, timestamp_ms, note, location"
        if tree_size is None:
            row = self._conn.execute(
                f"SELECT {cols} FROM ledger_local_anchors WHERE facility = ? "  # noqa: S608
                "ORDER BY tree_size DESC LIMIT 1", (facility,)).fetchone()
        else:
            row = self._conn.execute(
                f"SELECT {cols} FROM ledger_local_anchors "  # noqa: S608
                "WHERE facility = ? AND tree_size = ?", (facility, tree_size)).fetchone()
        if row is None:
            return None
        fac, size, root, ts, note, location = row
        ref = AnchorRef(backend=self.name, tree_size=size, location=location)
        return AnchoredCheckpoint(fac, size, bytes(root), ref, ts, note)

    def _append_note(self, note: str) -> int:
        data = note.encode("utf-8") + b"\n"  # a blank line between notes
        try:
            fd = os.open(self._notes, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
            try:
                offset = os.lseek(fd, 0, os.SEEK_END)
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            # Disk trouble may pass (full disk freed); the outbox retries.
            raise BackendUnavailable(f"cannot append to checkpoint file: {exc.strerror}") from None
        return offset

    async def publish(self, signed: SignedCheckpoint) -> AnchorRef:
        cp = signed.checkpoint
        existing = self._row(cp.facility, cp.tree_size)
        if existing is not None:
            if existing.root_hash != cp.root_hash:
                raise AnchorConflict(cp.tree_size)
            return existing.anchor
        latest = self._row(cp.facility, None)
        if latest is not None and latest.tree_size > cp.tree_size:
            raise AnchorRejected("tree-shrank", f"{cp.tree_size} < {latest.tree_size}")
        offset = self._append_note(signed.note)
        location = f"{self._notes.name}@{offset}"
        self._conn.execute(
            "INSERT INTO ledger_local_anchors VALUES (?, ?, ?, ?, ?, ?)",
            (cp.facility, cp.tree_size, cp.root_hash, cp.timestamp_ms, signed.note, location))
        return AnchorRef(backend=self.name, tree_size=cp.tree_size, location=location)

    async def latest(self, facility: str) -> AnchoredCheckpoint | None:
        return self._row(facility, None)

    async def get(self, facility: str, tree_size: int) -> AnchoredCheckpoint | None:
        return self._row(facility, tree_size)

    async def reachable(self) -> bool:
        return True

    async def aclose(self) -> None:
        if self._owns:
            self._conn.close()
