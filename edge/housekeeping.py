"""Periodic duties of a running daemon that no message triggers: feeds gone quiet and the
retention of raw messages (issue 10)."""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from edge.config import Settings
from edge.inbox.schema import TABLE as INBOX
from edge.metrics import Metrics
from edge.store.rekey import DROPPED_FORMAT, DROPPED_KEY_ID

log = logging.getLogger(__name__)

_PRUNE_BATCH = 500


def check_silence(settings: Settings, metrics: Metrics, started: float,
                  now: float | None = None) -> list[str]:
    """Set ``hie_edge_listener_silent`` per listener and warn for each one that has just gone
    silent. Returns the names of the silent listeners. A listener that never received a
    message is measured from the daemon's start."""
    now = time.time() if now is None else now
    silent = []
    for listener in (*settings.mllp, *settings.serial):
        limit = listener.silence_warning_s
        if not limit:
            continue
        last = metrics.last_message_at.get(listener.name, started)
        if now - last >= limit:
            silent.append(listener.name)
            if listener.name not in metrics.silent_listeners:
                log.warning("no messages on listener", extra={"fields": {
                    "listener": listener.name, "silent_s": round(now - last)}})
            metrics.silent_listeners.add(listener.name)
        else:
            metrics.silent_listeners.discard(listener.name)
        metrics.silent.labels(listener.name).set(1 if listener.name in
                                                 metrics.silent_listeners else 0)
    return silent


def prune_raw_messages(days: int, now: datetime | None = None,
                       ) -> Callable[[sqlite3.Connection], int]:
    """A group-commit operation dropping the raw payload of processed messages received
    more than ``days`` ago (a batch at a time). Metadata rows stay, so the history of what
    came in is kept; dead letters keep their payload for replay."""
    cutoff = ((now or datetime.now(UTC)) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S")

    def op(conn: sqlite3.Connection) -> int:
        cursor = conn.execute(
            f"UPDATE {INBOX} SET payload = x'', payload_format = ?, key_id = ? "  # noqa: S608
            f"WHERE id IN (SELECT id FROM {INBOX} WHERE state = 'processed' "
            "AND key_id != ? AND received_at < ? ORDER BY id LIMIT ?)",
            (DROPPED_FORMAT, DROPPED_KEY_ID, DROPPED_KEY_ID, cutoff, _PRUNE_BATCH))
        return int(cursor.rowcount)

    return op
