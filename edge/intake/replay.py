"""Replaying a dead letter: the intake checks again, with the current config.

A message dead-lettered at intake (unreadable header, version or processing id not taken)
is decrypted, checked again with today's listener settings and, when it passes, moves to
``received`` for the later stages, with the ACK it would get now recorded, so a sender that
sends it again is answered as for a duplicate instead of storing it twice.
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime

from edge.config import Settings
from edge.crypto.keys import load_keyring
from edge.er7.errors import HeaderError
from edge.er7.header import parse_header
from edge.errors import EdgeError
from edge.inbox.schema import TABLE
from edge.inbox.sealing import InboxSealer
from edge.inbox.store import PAYLOAD_VERSION
from edge.intake.ack import ack_code, build_ack
from edge.intake.service import refusal_for
from edge.store.keys import StoreKeys


class ReplayError(EdgeError):
    fault = "config"


def replay(conn: sqlite3.Connection, settings: Settings, row_id: int) -> str:
    """Check dead letter ``row_id`` again on ``conn`` (the state database, migrated); returns
    what became of it. Raises ReplayError for a message that cannot be replayed."""
    row = conn.execute(
        f"SELECT state, listener, key_id, payload FROM {TABLE} WHERE id = ?",  # noqa: S608
        (row_id,)).fetchone()
    if row is None:
        raise ReplayError("no such message")
    state, listener_name, key_id, payload = row
    if state != "dead-letter":
        raise ReplayError(f"is {state}, not a dead letter")
    listener = next((item for item in settings.mllp if item.name == listener_name), None)
    if listener is None:
        raise ReplayError(f"listener {listener_name!r} is no longer configured")
    sealer = InboxSealer(StoreKeys(lambda: load_keyring(settings.keys.kek_file)), conn)
    raw = sealer.open(conn, TABLE, row_id, PAYLOAD_VERSION, key_id, payload)
    try:
        header = parse_header(raw, fallback_codec=listener.fallback_charset)
    except HeaderError as exc:
        reason = f"{exc.field}: {exc.reason}"
        _record(conn, row_id, "dead-letter", reason, None, None)
        return f"still a dead letter ({reason})"
    refusal = refusal_for(header, listener)
    if refusal is not None:
        _record(conn, row_id, "dead-letter", refusal.reason, None, None)
        return f"still a dead letter ({refusal.reason})"
    code = ack_code(header, "accept")
    ack = build_ack(header, code, control_id=f"A{row_id}", now=datetime.now(UTC))
    conn.execute("BEGIN IMMEDIATE")
    conn.execute(
        f"UPDATE {TABLE} SET sending_application = ?, sending_facility = ?, "  # noqa: S608
        "message_type = ?, control_id = ?, version = ?, codec = ? WHERE id = ?",
        (header.sending_application, header.sending_facility,
         header.component_separator.join(
             p for p in (header.message_code, header.trigger_event,
                         header.message_structure) if p),
         header.control_id, header.version_id, header.codec, row_id))
    _record(conn, row_id, "received", None, code.value, ack, in_transaction=True)
    return "accepted; queued for processing"


def _record(conn: sqlite3.Connection, row_id: int, state: str, reason: str | None,
            code: str | None, ack: bytes | None, *, in_transaction: bool = False) -> None:
    if not in_transaction:
        conn.execute("BEGIN IMMEDIATE")
    assignments = "state = ?, reason = ?, attempts = attempts + 1, " \
                  "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')"
    params: list[object] = [state, reason]
    if code is not None:
        assignments += ", ack_code = ?, ack = ?"
        params += [code, ack]
    conn.execute(f"UPDATE {TABLE} SET {assignments} WHERE id = ?", (*params, row_id))  # noqa: S608
    conn.execute("COMMIT")
