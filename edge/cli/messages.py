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
from edge.cli.database import open_database
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
        with open_database(settings, readonly=True) as conn:
            rows = (_rows(conn, "WHERE state = ?", (args.state,), args.limit) if args.state
                    else _rows(conn, "", (), args.limit))
        if args.json:
            json.dump(rows, sys.stdout, indent=2)
            print()
        else:
            _print_table(rows)
        return exits.OK
    if args.action == "show":
        with open_database(settings, readonly=True) as conn:
            rows = _rows(conn, "WHERE id = ?", (args.id,), 1)
        if not rows:
            raise CLIError(exits.DATAERR, f"hie-edge: no message with id {args.id}")
        if args.json:
            json.dump(rows[0], sys.stdout, indent=2)
            print()
        else:
            for key, value in rows[0].items():
                print(f"{key:>18}: {'' if value is None else value}")
        return exits.OK
    return _replay(settings, args.id)


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
        outcome = replay(settings, row_id)
    except ReplayError as exc:
        raise CLIError(exits.DATAERR, f"hie-edge: message {row_id}: {exc}") from None
    print(f"message {row_id}: {outcome}")
    return exits.OK
