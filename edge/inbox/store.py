"""Writing raw messages to the inbox and reading them back.

Every write goes through the group committer, so a returned :class:`Stored` means the row is
committed. Duplicate detection (same MSH-3, MSH-4, MSH-10 and the same bytes as an accepted
message) runs inside the same transaction as the insert, so two copies racing on different
connections cannot both be stored.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from edge.er7.header import Header
from edge.inbox.schema import TABLE
from edge.storage.group_commit import GroupCommitter

PAYLOAD_VERSION = 1  # the AAD's version field for inbox payloads (one version per row)
ACCEPTED_CODES = ("AA", "CA", "AE", "CE")  # a sender that got these may not resend


class PayloadSealer(Protocol):
    """Encrypts payloads bound to their row (see ``edge.crypto``)."""

    @property
    def key_id(self) -> str: ...

    @property
    def payload_format(self) -> int: ...

    def seal(self, table: str, row_id: int, version: int, plaintext: bytes) -> bytes: ...

    def open(self, conn: sqlite3.Connection, table: str, row_id: int, version: int,
             key_id: str, blob: bytes) -> bytes: ...

    def fingerprint(self, data: bytes) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Arrival:
    """One message as it came off the wire."""

    raw: bytes
    listener: str
    peer: str
    received_at: datetime
    header: Header | None
    batch_control_id: str = ""

    def __repr__(self) -> str:  # never the payload
        control_id = self.header.control_id if self.header else "?"
        return f"Arrival(listener={self.listener!r}, control_id={control_id!r}, " \
               f"size={len(self.raw)})"


@dataclass(frozen=True, slots=True)
class Stored:
    row_id: int
    ack_code: str
    ack: bytes
    duplicate: bool = False
    flags: str = ""


# Given the new row's id, returns the ACK code and ACK bytes to store with it and send.
AckFactory = Callable[[int], tuple[str, bytes]]


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class InboxStore:
    def __init__(self, committer: GroupCommitter, sealer: PayloadSealer) -> None:
        self._committer = committer
        self._sealer = sealer
        self._next_id: int | None = None  # touched only on the writer thread

    async def store(self, arrival: Arrival, *, state: str, reason: str,
                    ack_for: AckFactory) -> Stored:
        """Commit ``arrival``; or, when it duplicates an accepted message, return the ACK that
        message got without storing it again."""
        fingerprint = self._sealer.fingerprint(arrival.raw)
        header = arrival.header

        def op(conn: sqlite3.Connection) -> Stored:
            flags = ""
            if header is not None and state == "received":
                rows = conn.execute(
                    f"SELECT id, fingerprint, ack_code, ack FROM {TABLE} "  # noqa: S608
                    "WHERE sending_application = ? AND sending_facility = ? "
                    "AND control_id = ? AND ack_code IN (?, ?, ?, ?) ORDER BY id",
                    (header.sending_application, header.sending_facility, header.control_id,
                     *ACCEPTED_CODES),
                ).fetchall()
                for row_id, seen, code, ack in rows:
                    if seen == fingerprint:
                        return Stored(row_id, code, ack, duplicate=True)
                if rows:
                    flags = "control-id-reused"
            row_id = self._allocate_id(conn)
            sealed = self._sealer.seal(TABLE, row_id, PAYLOAD_VERSION, arrival.raw)
            ack_code, ack = ack_for(row_id)
            now = utc_text(arrival.received_at)
            conn.execute(
                f"INSERT INTO {TABLE} (id, received_at, listener, peer, sending_application, "  # noqa: S608
                "sending_facility, message_type, control_id, version, codec, size, fingerprint, "
                "payload, payload_format, key_id, state, reason, ack_code, ack, flags, "
                "batch_control_id, attempts, updated_at) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0,?)",
                (row_id, now, arrival.listener, arrival.peer,
                 header.sending_application if header else None,
                 header.sending_facility if header else None,
                 _message_type(header), header.control_id if header else None,
                 header.version_id if header else None, header.codec if header else None,
                 len(arrival.raw), fingerprint, sealed, self._sealer.payload_format,
                 self._sealer.key_id, state, reason or None, ack_code, ack, flags,
                 arrival.batch_control_id or None, now),
            )
            return Stored(row_id, ack_code, ack, flags=flags)

        return await self._committer.run(op)

    def _allocate_id(self, conn: sqlite3.Connection) -> int:
        # The writer thread is the only writer, so ids can be handed out before the INSERT:
        # the id is part of the payload's AAD. A rolled-back transaction leaves a harmless gap.
        if self._next_id is None:
            (last,) = conn.execute(f"SELECT coalesce(max(id), 0) FROM {TABLE}").fetchone()  # noqa: S608
            self._next_id = int(last) + 1
        row_id = self._next_id
        self._next_id += 1
        return row_id


def _message_type(header: Header | None) -> str | None:
    if header is None:
        return None
    parts = [header.message_code, header.trigger_event, header.message_structure]
    while parts and not parts[-1]:
        parts.pop()
    return header.component_separator.join(parts)
