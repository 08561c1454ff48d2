"""Access notifications: a PHI-minimal notice to the configured webhook for every disclosure
(issue 8), through an outbox with retry.

The notice is queued (``peer_notifications``) in the same transaction as the AuditEvent of
the disclosure, so a disclosure is never without its notice, and a crash only delays it. It
says which facility, when, for what purpose, which data classes, whether it was break-glass,
and the patient's logical id here (an opaque UUID the facility's portal maps to the patient);
never a name, an identifier, a birth date or a record.

Delivery: ``POST`` of the JSON body with ``X-Hie-Edge-Delivery: <notice id>`` (receivers
de-duplicate on it: delivery is at least once) and ``X-Hie-Edge-Signature: sha256=<hex
HMAC-SHA256 of the body under the shared secret>``. A 2xx answer is a delivery; anything
else, or no answer within ``timeout_s``, is retried after 1 s doubling to 10 min (with
jitter) until ``max_attempts``, then the notice is ``failed`` (visible in ``/status``).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge.peer.schema import NOTIFICATIONS
from edge.storage.database import connect
from edge.storage.group_commit import GroupCommitter
from ledger_client.waiting import sleep_or_wake

log = logging.getLogger(__name__)

# (url, body, headers, timeout) -> HTTP status; raises OSError/TimeoutError when unreachable.
Post = Callable[[str, bytes, Mapping[str, str], float], Awaitable[int]]

_BACKOFF_INITIAL_S = 1.0
_BACKOFF_MAX_S = 600.0
_BATCH = 32


def enqueue(conn: sqlite3.Connection, notice: Mapping[str, Any], now_ms: int) -> int:
    """Queue ``notice`` in the caller's transaction; returns its id."""
    cursor = conn.execute(
        f"INSERT INTO {NOTIFICATIONS} (created_ms, body, state, attempts, next_attempt_ms) "  # noqa: S608
        "VALUES (?, ?, 'pending', 0, ?)", (now_ms, json.dumps(dict(notice)), now_ms))
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def sign(secret: bytes, body: bytes) -> str:
    """The ``X-Hie-Edge-Signature`` value for ``body``."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class OutboxCounts:
    pending: int
    sent: int
    failed: int


async def aiohttp_post(url: str, body: bytes, headers: Mapping[str, str],
                       timeout: float) -> int:
    """The real transport (aiohttp, imported on first use)."""
    import aiohttp

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
            session.post(url, data=body, headers=dict(headers)) as response:
        await response.read()
        return response.status


class WebhookSender:
    """Delivers queued notices until :meth:`stop`. Writes go through the group committer;
    reads use a connection of its own. Clock, sleep, jitter and transport are injectable."""

    def __init__(self, db_path: Path, committer: GroupCommitter, *, url: str,
                 secret_file: Path, timeout_s: float, max_attempts: int,
                 post: Post = aiohttp_post, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 jitter: Callable[[], float] = random.random) -> None:
        self._db_path = db_path
        self._committer = committer
        self._url = url
        self._secret_file = secret_file
        self._timeout = timeout_s
        self._max_attempts = max_attempts
        self._post = post
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._wake = asyncio.Event()
        self._stopping = False
        self.last_error: str | None = None

    def wake(self) -> None:
        """A notice was committed: deliver now."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    @property
    def stopping(self) -> bool:
        return self._stopping

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def deliver_due(self, reader: sqlite3.Connection) -> int:
        """One round: try every notice whose time has come; returns how many were sent."""
        rows = await asyncio.to_thread(lambda: reader.execute(
            f"SELECT id, body, attempts FROM {NOTIFICATIONS} WHERE state = 'pending' "  # noqa: S608
            "AND next_attempt_ms <= ? ORDER BY id LIMIT ?",
            (self._now_ms(), _BATCH)).fetchall())
        if not rows:
            return 0
        secret = self._secret_file.read_bytes().strip()
        sent = 0
        for notice_id, body, attempts in rows:
            data = body.encode("utf-8")
            headers = {"Content-Type": "application/json",
                       "X-Hie-Edge-Delivery": str(notice_id),
                       "X-Hie-Edge-Signature": sign(secret, data)}
            try:
                status = await self._post(self._url, data, headers, self._timeout)
                error = None if 200 <= status < 300 else f"http-{status}"
            except (OSError, TimeoutError) as exc:
                error = type(exc).__name__
            except Exception as exc:  # noqa: BLE001 - any transport fault is retried
                error = type(exc).__name__
            await self._record(int(notice_id), int(attempts) + 1, error)
            sent += error is None
        return sent

    async def _record(self, notice_id: int, attempts: int, error: str | None) -> None:
        if error is None:
            state, delay = "sent", 0.0
        else:
            self.last_error = error
            log.warning("access notification not delivered; will retry",
                        extra={"fields": {"notice": notice_id, "attempt": attempts,
                                          "error": error}})
            step = min(_BACKOFF_INITIAL_S * 2 ** (attempts - 1), _BACKOFF_MAX_S)
            delay = step * (0.5 + 0.5 * self._jitter())
            state = "failed" if attempts >= self._max_attempts else "pending"
        due = self._now_ms() + int(delay * 1000)
        # The background lane: bookkeeping never delays an ACK or a peer's answer.
        await self._committer.run(lambda conn: conn.execute(
            f"UPDATE {NOTIFICATIONS} SET state = ?, attempts = ?, next_attempt_ms = ?, "  # noqa: S608
            "last_error = ? WHERE id = ?", (state, attempts, due, error, notice_id)),
            background=True)

    def _next_wait_s(self, reader: sqlite3.Connection) -> float:
        (due,) = reader.execute(
            f"SELECT min(next_attempt_ms) FROM {NOTIFICATIONS} "  # noqa: S608
            "WHERE state = 'pending'").fetchone()
        if due is None:
            return 3600.0
        return max(int(due) - self._now_ms(), 0) / 1000

    async def run(self) -> None:
        """Deliver until :meth:`stop`."""
        reader = connect(self._db_path, readonly=True)
        try:
            while not self._stopping:
                try:
                    await self.deliver_due(reader)
                    wait = self._next_wait_s(reader)
                except (sqlite3.Error, OSError) as exc:
                    self.last_error = type(exc).__name__
                    wait = 5.0
                if self.stopping:
                    break
                if wait > 0:
                    await self._wait(wait)
        finally:
            reader.close()

    async def _wait(self, seconds: float) -> None:
        await sleep_or_wake(self._wake, seconds, self._sleep)


def outbox_counts(conn: sqlite3.Connection) -> OutboxCounts:
    counts = dict(conn.execute(
        f"SELECT state, count(*) FROM {NOTIFICATIONS} GROUP BY state").fetchall())  # noqa: S608
    return OutboxCounts(int(counts.get("pending", 0)), int(counts.get("sent", 0)),
                        int(counts.get("failed", 0)))
