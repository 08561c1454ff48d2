"""The anchorer: turns the log's growth into signed checkpoints published to a backend.

Every ``interval_s`` (and sooner once ``max_pending_leaves`` leaves wait) it signs a
checkpoint of the current log size and puts it in an outbox, the ``ledger_checkpoints``
table; then it publishes the newest pending checkpoint. A newer checkpoint supersedes older
pending ones (anchoring size n also covers every smaller size). Failures are retried with
exponential backoff and jitter; a retriable failure (node down) marks the backend
unreachable until a publish succeeds. Publishing is idempotent on every backend, so a crash
between "published" and "recorded as published" only costs a republish after restart.

The anchorer never holds a write transaction while it talks to the backend: its writes are
single autocommit statements on its own connection, so intake appends never wait on it. Give
it a connection of its own (``db``), not the intake's: a statement on a connection that is
inside the intake's transaction would join that transaction.

Time comes from the injected ``clock`` (seconds since the epoch) and waits from the injected
``sleep``, so tests drive it without waiting.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ledger_client.backends.base import AnchorRef, LedgerBackend
from ledger_client.checkpoint import Checkpoint, NoteSigner, SignedCheckpoint, sign_checkpoint
from ledger_client.errors import AnchorConflict, BackendUnavailable, LedgerError
from ledger_client.log import MerkleLog
from ledger_client.waiting import sleep_or_wake

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS ledger_checkpoints (
    tree_size       INTEGER PRIMARY KEY,
    root_hash       BLOB NOT NULL,
    timestamp_ms    INTEGER NOT NULL,
    note            TEXT NOT NULL,            -- the signed checkpoint note
    state           TEXT NOT NULL CHECK (state IN ('pending', 'anchored', 'superseded',
                                                   'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_ms INTEGER NOT NULL,
    last_error      TEXT,                     -- error class and kind, never content
    anchor          TEXT                      -- AnchorRef JSON once anchored
)
"""


@dataclass(frozen=True, slots=True)
class AnchorPolicy:
    """When to checkpoint and how to retry."""

    interval_s: float = 10.0
    max_pending_leaves: int = 10_000
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0
    publish_timeout_s: float = 120.0


@dataclass(frozen=True, slots=True)
class AnchorStatus:
    """What ``/status`` and the metrics show about anchoring."""

    log_size: int
    last_anchored_size: int
    last_anchored_at: float | None  # seconds since the epoch (the checkpoint's timestamp)
    leaves_pending: int  # leaves not yet covered by an anchored checkpoint
    checkpoints_pending: int
    backend: str
    backend_reachable: bool | None  # None until the first attempt or probe
    last_error: str | None


@dataclass(frozen=True, slots=True)
class LocalAnchor:
    """A checkpoint this facility signed and saw anchored (from the outbox table)."""

    checkpoint: Checkpoint
    note: str
    anchor: AnchorRef


def latest_anchored(conn: sqlite3.Connection, facility: str) -> LocalAnchor | None:
    """The newest of ``facility``'s checkpoints known to be anchored, read on ``conn`` (in a
    reader's snapshot, it is the one that snapshot's receipts can be proven against); None
    before the first, or before any anchorer created the outbox table."""
    return _anchored(conn, facility, "ORDER BY tree_size DESC LIMIT 1", ())


def anchored_at(conn: sqlite3.Connection, facility: str, size: int) -> LocalAnchor | None:
    """``facility``'s anchored checkpoint of tree size ``size``, read on ``conn``; None when
    there is none (or no anchorer created the outbox table yet)."""
    return _anchored(conn, facility, "AND tree_size = ?", (size,))


def _anchored(conn: sqlite3.Connection, facility: str, clause: str,
              params: tuple[int, ...]) -> LocalAnchor | None:
    try:
        row = conn.execute(
            f"SELECT {_ANCHOR_COLUMNS} FROM ledger_checkpoints "  # noqa: S608
            f"WHERE state = 'anchored' {clause}", params).fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise  # locked, unreadable: not the same as "no checkpoint"
        return None  # no anchorer has run on this database yet
    return None if row is None else _local_anchor(facility, row)


_ANCHOR_COLUMNS = "tree_size, root_hash, timestamp_ms, note, anchor"


def _local_anchor(facility: str, row: tuple[Any, ...]) -> LocalAnchor:
    """A ``ledger_checkpoints`` row of :data:`_ANCHOR_COLUMNS` as a LocalAnchor."""
    size, root, ts, note, anchor = row
    return LocalAnchor(Checkpoint(facility, size, bytes(root), ts), note,
                       AnchorRef.from_json(json.loads(anchor)))


class Anchorer:
    """Publishes signed checkpoints of ``merkle_log`` to ``backend``."""

    def __init__(
        self,
        merkle_log: MerkleLog,
        backend: LedgerBackend,
        signer: NoteSigner,
        facility: str,
        *,
        db: sqlite3.Connection | str | Path | None = None,
        policy: AnchorPolicy | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._log = merkle_log
        self._backend = backend
        self._signer = signer
        self._facility = facility
        if db is None:
            self._conn = merkle_log.connection
        elif isinstance(db, sqlite3.Connection):
            self._conn = db
        else:
            self._conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA busy_timeout = 5000")
        self._conn.execute(SCHEMA)
        self.policy = policy or AnchorPolicy()
        self._clock = clock
        self._sleep = sleep
        self._jitter = jitter
        self._wake = asyncio.Event()
        self._stopping = False
        self._reachable: bool | None = None
        self._last_error: str | None = None
        # The largest tree size queued so far, or less (None: not read yet): notify() runs on
        # every append (each peer request's AuditEvents), so it reads this, not the table.
        self._queued_size: int | None = None
        if signer.name != Checkpoint(facility, 0, bytes(32), 0).origin:
            raise LedgerError("signer name does not match the facility's checkpoint origin")

    def __repr__(self) -> str:
        return f"Anchorer(backend={self._backend.name!r})"

    # -- queries ---------------------------------------------------------------------------

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    def latest_anchored(self) -> LocalAnchor | None:
        """The newest checkpoint known to be anchored (what receipts point at)."""
        return latest_anchored(self._conn, self._facility)

    def anchored(self) -> list[LocalAnchor]:
        """Every anchored checkpoint, oldest first (for consistency checks between them)."""
        rows = self._conn.execute(
            f"SELECT {_ANCHOR_COLUMNS} FROM ledger_checkpoints "  # noqa: S608
            "WHERE state = 'anchored' ORDER BY tree_size").fetchall()
        return [_local_anchor(self._facility, row) for row in rows]

    def status(self) -> AnchorStatus:
        size = self._log.size
        last = self.latest_anchored()
        (pending,) = self._conn.execute(
            "SELECT count(*) FROM ledger_checkpoints WHERE state = 'pending'").fetchone()
        anchored_size = last.checkpoint.tree_size if last else 0
        return AnchorStatus(
            log_size=size,
            last_anchored_size=anchored_size,
            last_anchored_at=last.checkpoint.timestamp_ms / 1000 if last else None,
            leaves_pending=max(size - anchored_size, 0),
            checkpoints_pending=int(pending),
            backend=self._backend.name,
            backend_reachable=self._reachable,
            last_error=self._last_error,
        )

    async def probe(self) -> bool:
        """Ask the backend whether it is reachable now and remember the answer. A backend
        that comes back cuts short the backoff of pending checkpoints, so the backlog is
        anchored as soon as the node answers again, not minutes later."""
        was = self._reachable
        self._reachable = await self._backend.reachable()
        if self._reachable and was is False:
            self._conn.execute(
                "UPDATE ledger_checkpoints SET next_attempt_ms = ? WHERE state = 'pending'",
                (self._now_ms(),))
            self._wake.set()
        return self._reachable

    # -- the work --------------------------------------------------------------------------

    def notify(self, log_size: int) -> None:
        """Intake calls this after an append (cheap, never blocks): wakes the anchorer early
        when enough leaves wait. Call it from the anchorer's event loop thread.

        The size queued last is remembered, not read per call: this process's anchorer is
        the one that queues checkpoints (make_checkpoint), and a row queued elsewhere (the
        CLI) is caught up with at the next tick. The remembered size is never above the
        table's, so a wake is never missed; at worst one comes early, and the tick it starts
        decides from the table (_checkpoint_due)."""
        if self._queued_size is None:
            self._queued_size = self._conn.execute(
                "SELECT max(tree_size) FROM ledger_checkpoints").fetchone()[0] or 0
        if log_size - self._queued_size >= self.policy.max_pending_leaves:
            self._wake.set()

    def _queued(self, size: int) -> None:
        self._queued_size = max(self._queued_size or 0, size)

    def _checkpoint_due(self, size: int, now_ms: int) -> bool:
        row = self._conn.execute(
            "SELECT tree_size, timestamp_ms FROM ledger_checkpoints "
            "WHERE state != 'failed' ORDER BY tree_size DESC LIMIT 1").fetchone()
        if row is None:
            return size > 0
        last_size, last_ms = int(row[0]), int(row[1])
        self._queued(last_size)
        if size <= last_size:
            return False
        return (now_ms - last_ms >= self.policy.interval_s * 1000
                or size - last_size >= self.policy.max_pending_leaves)

    def make_checkpoint(self) -> SignedCheckpoint | None:
        """Sign a checkpoint of the current log size and queue it (superseding older pending
        ones). None when the log is empty or that size is already queued or anchored."""
        size = self._log.size
        if size == 0:
            return None
        if self._conn.execute("SELECT 1 FROM ledger_checkpoints WHERE tree_size = ?",
                              (size,)).fetchone():
            return None
        now_ms = self._now_ms()
        signed = sign_checkpoint(Checkpoint(self._facility, size, self._log.root(size), now_ms),
                                 self._signer)
        # Two statements, each atomic; a crash between them leaves an older pending row
        # that the next call supersedes.
        self._conn.execute(
            "INSERT INTO ledger_checkpoints (tree_size, root_hash, timestamp_ms, note, state,"
            " next_attempt_ms) VALUES (?, ?, ?, ?, 'pending', ?)",
            (size, signed.checkpoint.root_hash, now_ms, signed.note, now_ms))
        self._queued(size)
        self._conn.execute(
            "UPDATE ledger_checkpoints SET state = 'superseded' "
            "WHERE state = 'pending' AND tree_size < ?", (size,))
        log.info("checkpoint queued", extra={"tree_size": size})
        return signed

    def _backoff_s(self, attempts: int) -> float:
        step = self.policy.backoff_initial_s * 2.0 ** (attempts - 1)
        base = min(step, self.policy.backoff_max_s)
        return base * (0.5 + 0.5 * self._jitter())  # jitter: 50-100 % of the step

    async def publish_pending(self) -> AnchorRef | None:
        """Publish the newest pending checkpoint whose retry time has come."""
        now_ms = self._now_ms()
        row = self._conn.execute(
            "SELECT tree_size, root_hash, timestamp_ms, note, attempts, next_attempt_ms"
            " FROM ledger_checkpoints WHERE state = 'pending' ORDER BY tree_size DESC LIMIT 1"
        ).fetchone()
        if row is None or row[5] > now_ms:
            return None
        size, root, ts, note, attempts, _ = row
        signed = SignedCheckpoint(Checkpoint(self._facility, size, bytes(root), ts), note)
        try:
            try:
                ref = await asyncio.wait_for(self._backend.publish(signed),
                                             self.policy.publish_timeout_s)
            except TimeoutError:
                raise BackendUnavailable("publish timed out") from None
        except AnchorConflict as exc:
            # Another root is anchored at this size: the log was rewritten. Never retried.
            self._record_failure(size, attempts, exc, final=True)
            log.error("anchor conflict: log differs from its anchor",
                      extra={"tree_size": size})
            return None
        except LedgerError as exc:
            self._record_failure(size, attempts, exc, final=False)
            return None
        self._reachable = True
        self._last_error = None
        self._conn.execute(
            "UPDATE ledger_checkpoints SET state = 'anchored', attempts = ?, anchor = ?, "
            "last_error = NULL WHERE tree_size = ?",
            (attempts + 1, json.dumps(ref.to_json()), size))
        log.info("checkpoint anchored", extra={"tree_size": size, "backend": ref.backend})
        return ref

    def _record_failure(self, size: int, attempts: int, exc: LedgerError, *, final: bool) -> None:
        kind = getattr(exc, "reason", None) or exc.__class__.__name__
        self._last_error = f"{exc.__class__.__name__}: {kind}"
        if exc.retriable:
            self._reachable = False
        delay = self._backoff_s(attempts + 1) if exc.retriable else self.policy.backoff_max_s
        self._conn.execute(
            "UPDATE ledger_checkpoints SET state = ?, attempts = ?, next_attempt_ms = ?,"
            " last_error = ? WHERE tree_size = ?",
            ("failed" if final else "pending", attempts + 1,
             self._now_ms() + int(delay * 1000), self._last_error, size))
        log.warning("anchor attempt failed", extra={
            "tree_size": size, "error": self._last_error, "retry_in_s": round(delay, 3)})

    async def tick(self) -> None:
        """One round: queue a checkpoint when one is due, then publish what is pending."""
        if self._checkpoint_due(self._log.size, self._now_ms()):
            self.make_checkpoint()
        await self.publish_pending()

    def _next_wake_s(self) -> float:
        now_ms = self._now_ms()
        wake = now_ms + int(self.policy.interval_s * 1000)
        row = self._conn.execute(
            "SELECT min(next_attempt_ms) FROM ledger_checkpoints WHERE state = 'pending'"
        ).fetchone()
        if row[0] is not None:
            wake = min(wake, int(row[0]))
        return max(wake - now_ms, 0) / 1000

    async def _wait(self, seconds: float) -> None:
        await sleep_or_wake(self._wake, seconds, self._sleep)

    async def run(self) -> None:
        """Anchor until ``stop()``; survives any backend failure. Cancel-safe."""
        self._stopping = False
        while not self._stopping:
            try:
                await self.tick()
            except (LedgerError, sqlite3.Error) as exc:
                # Keep anchoring through trouble; the error is visible in status.
                self._last_error = exc.__class__.__name__
                log.warning("anchor round failed", extra={"error": self._last_error})
            if self.stopping:
                break
            await self._wait(self._next_wake_s())

    @property
    def stopping(self) -> bool:
        return self._stopping

    def stop(self) -> None:
        """Make ``run()`` return after its current round."""
        self._stopping = True
        self._wake.set()
