"""``hie-edge messages list|show|replay``: the inbox for operators.

``list`` and ``show`` print metadata only (ids, times, listener, peer, MSH-3/4/9/10, state,
reason): no message content. ``replay`` re-runs intake on a dead letter with the current
config, so a message refused for a setting (version, processing id) goes on after the fix.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from typing import Any

from edge.cli import exits
from edge.cli.database import database_for
from edge.cli.exits import CLIError
from edge.config import Settings
from edge.inbox.schema import TABLE

_COLUMNS = ("id", "received_at", "listener", "peer", "sending_application", "sending_facility",
            "message_type", "control_id", "version", "size", "state", "reason", "ack_code",
            "flags", "batch_control_id", "attempts", "updated_at")


def _rows(conn: sqlite3.Connection, where: str, params: tuple[Any, ...],
          limit: int) -> list[dict[str, Any]]:
    cursor = conn.execute(
        f"SELECT {', '.join(_COLUMNS)} FROM {TABLE} {where} ORDER BY id DESC LIMIT ?",  # noqa: S608
        (*params, limit))
    return [dict(zip(_COLUMNS, row, strict=True)) for row in cursor.fetchall()]


def run_messages(args: argparse.Namespace, settings: Settings) -> int:
    if args.action == "list":
        if args.limit < 1:
            raise CLIError(exits.USAGE, "hie-edge messages list: --limit must be at least 1")
        with database_for(settings, "messages list", readonly=True) as conn:
            rows = (_rows(conn, "WHERE state = ?", (args.state,), args.limit) if args.state
                    else _rows(conn, "", (), args.limit))
        if args.json:
            json.dump(rows, sys.stdout, indent=2)
            print()
        else:
            _print_table(rows)
        return exits.OK
    if args.action == "show":
        with database_for(settings, "messages show", readonly=True) as conn:
            rows = _rows(conn, "WHERE id = ?", (args.id,), 1)
        if not rows:
            raise CLIError(exits.DATAERR, f"hie-edge: no message with id {args.id}")
        row = rows[0]
        if args.show_phi:
            row["raw"] = _reveal(settings, args.id)
        if args.json:
            json.dump(row, sys.stdout, indent=2)
            print()
        else:
            raw = row.pop("raw", None)
            for key, value in row.items():
                print(f"{key:>18}: {'' if value is None else value}")
            if raw is not None:
                print(raw.replace("\r", "\n"))
        return exits.OK
    return _replay(settings, args.id)


def _reveal(settings: Settings, row_id: int) -> str | None:
    """The raw message, decrypted, after an AuditEvent of the access is committed (no record
    of it, no PHI: the operator's reading is part of the patient's accounting)."""
    import getpass
    from datetime import UTC, datetime

    from edge.crypto.keys import load_keyring
    from edge.inbox.sealing import InboxSealer
    from edge.inbox.store import PAYLOAD_VERSION
    from edge.peer.audit import Actor, AuditRecord, build_audit_event, write_audit
    from edge.store._tx import write_transaction
    from edge.store.keys import StoreKeys
    from edge.store.rekey import DROPPED_KEY_ID
    from edge.store.resources import ResourceStore

    keys = StoreKeys(lambda: load_keyring(settings.keys.kek_file))
    with database_for(settings, "messages show") as conn:
        key_id, payload, codec = conn.execute(
            f"SELECT key_id, payload, codec FROM {TABLE} WHERE id = ?",  # noqa: S608
            (row_id,)).fetchone()
        if key_id == DROPPED_KEY_ID:
            return None  # pruned by the retention policy
        record = AuditRecord(pattern="admin-read", outcome="0",
                             actor=Actor("local", settings.facility.id, getpass.getuser()),
                             recorded=datetime.now(UTC), query=f"messages show {row_id}")
        with write_transaction(conn):
            write_audit(conn, ResourceStore(keys),
                        [build_audit_event(record, facility=settings.facility.id)], None)
        raw = InboxSealer(keys, conn).open(conn, TABLE, row_id, PAYLOAD_VERSION, key_id,
                                           payload)
    return raw.decode(codec or "latin-1", errors="replace")


def _print_table(rows: list[dict[str, Any]]) -> None:
    print(f"{'ID':>8}  {'RECEIVED':<27} {'LISTENER':<10} {'TYPE':<16} {'CONTROL ID':<22} "
          f"{'STATE':<12} REASON")
    for row in rows:
        print(f"{row['id']:>8}  {row['received_at']:<27} {row['listener']:<10} "
              f"{(row['message_type'] or '-'):<16} {(row['control_id'] or '-'):<22} "
              f"{row['state']:<12} {row['reason'] or ''}")


def _replay(settings: Settings, row_id: int) -> int:
    from edge.intake.replay import ReplayError, replay

    try:
        with database_for(settings, "messages replay") as conn:
            outcome = replay(conn, settings, row_id)
    except ReplayError as exc:
        raise CLIError(exits.DATAERR, f"hie-edge: message {row_id}: {exc}") from None
    print(f"message {row_id}: {outcome}")
    return exits.OK
