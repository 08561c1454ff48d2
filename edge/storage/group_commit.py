"""Group commit: many writers, one transaction, one fsync.

An fsync costs far more than the inserts it covers (design.md: ~4,900 commits/s one message
per commit against ~44,000 messages/s at 50 per commit). Every connection's writes are queued
to one writer thread; the thread takes whatever is waiting (up to ``max_batch``), runs each
operation inside its own SAVEPOINT so one failing operation does not sink its neighbours,
commits once, and only then resolves the callers' futures. A caller's future resolving is
therefore the promise that its write is on disk.

Two lanes: *foreground* writes (intake: a sender waits for its ACK) and *background* writes
(the processing stage, whose operations store messages' resources and take milliseconds of
CPU). A transaction takes every waiting foreground write; a background write runs alone,
and only once no foreground write has come for ``BACKGROUND_IDLE_S``: a sender pipelining
or sending back to back is rarely kept waiting by processing. A background operation made
of several messages asks :meth:`GroupCommitter.should_yield` between them and stops once a
foreground write has waited ``BACKGROUND_SLICE_S``, so an ACK waits behind at most that much
processing. Under sustained foreground load processing still gets a slice every
``BACKGROUND_MAX_WAIT_S`` (its backlog stays ``received`` on disk, visible as pending) and
catches up in the gaps, many messages per fsync.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from edge.storage.database import connect
from edge.storage.errors import StorageError, storage_error

T = TypeVar("T")
log = logging.getLogger(__name__)

Operation = Callable[[sqlite3.Connection], T]


@dataclass(slots=True)
class _Job(Generic[T]):
    op: Operation[T]
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[T]
    result: Any = None
    error: BaseException | None = None


@dataclass(slots=True)
class CommitStats:
    transactions: int = 0
    operations: int = 0
    failures: int = 0
    largest_batch: int = 0


# How long the foreground lane must be quiet before a background write may take the writer:
# longer than the gap between an ACK and a sender's next message on loopback or a LAN.
BACKGROUND_IDLE_S = 0.005
# Under unbroken foreground load a background write still goes at least this often, so the
# processing stage (and an on-processed sender waiting on it) is slowed, never stopped.
# Intake comes first on purpose: what it acknowledges is on disk and processing catches up
# when senders pause (bench/mllp_ingest.py, 1 connection: p99 ACK latency 2.3 ms at 50 ms,
# 1.8-1.9 ms at 100 ms; at 5 ms the ACK rate fell to a third).
BACKGROUND_MAX_WAIT_S = 0.1
_MAX_WAIT = BACKGROUND_MAX_WAIT_S
# How long a background operation may keep a waiting foreground write waiting (it always
# finishes the message in hand). Longer slices gave processing more of the writer under
# load but held the GIL from intake: 20 ms slices took the 1-connection p99 to 3-10 ms.
BACKGROUND_SLICE_S = 0.0005


def _set_result(job: _Job[Any]) -> None:
    if job.future.done():  # the caller was cancelled; the write still happened
        return
    if job.error is not None:
        job.future.set_exception(job.error)
    else:
        job.future.set_result(job.result)


class GroupCommitter:
    """The single writer of the state database."""

    def __init__(self, path: Path, *, max_batch: int = 256,
                 background_idle_s: float = BACKGROUND_IDLE_S) -> None:
        self._path = path
        self._max_batch = max_batch
        self._idle_s = background_idle_s
        self._foreground: collections.deque[_Job[Any]] = collections.deque()
        self._background: collections.deque[_Job[Any]] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._last_foreground = 0.0
        self._last_background = 0.0
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self.stats = CommitStats()
        self.healthy = True

    def start(self) -> None:
        self._conn = connect(self._path)
        # Each operation runs in a SAVEPOINT, whose undo journal (the statement sub-journal)
        # SQLite keeps in memory only up to 64 KiB, then spills to a file it creates and
        # unlinks in the temp directory: an AuditBatcher op or a processing op touches more,
        # so the writer created and wrote a temp file nearly every transaction (measured on
        # the peer bench: ~1 openat and ~65% of the daemon's pwrite calls, the rest being
        # the WAL). temp_store = MEMORY keeps sub-journals in memory (sqlite.org/tempfiles.html,
        # "Statement Journal Files"); they hold the pages one operation changed and are
        # emptied when it is released.
        self._conn.execute("PRAGMA temp_store = MEMORY")
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def submit(self, op: Operation[T], *, background: bool = False) -> asyncio.Future[T]:
        """Queue ``op`` to run in the next transaction (a background op: in one of the next,
        see the module docstring). The future resolves after COMMIT."""
        if self._thread is None:
            raise StorageError("submit", "the writer is not running", retriable=True)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._cond:
            (self._background if background else self._foreground).append(
                _Job(op, loop, future))
            self._cond.notify()
        return future

    async def run(self, op: Operation[T], *, background: bool = False) -> T:
        return await self.submit(op, background=background)

    def close(self) -> None:
        """Finish every queued operation, in both lanes, then stop the thread and close the
        connection."""
        if self._thread is None:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join()
        self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def should_yield(self, started: float) -> bool:
        """For a background operation made of parts (on the writer thread): stop after the
        current part, because a foreground write is waiting and the operation, begun at
        ``started`` (``time.monotonic()``), has had its slice."""
        return bool(self._foreground) and time.monotonic() - started >= BACKGROUND_SLICE_S

    def quiet_for(self) -> float:
        """Seconds since the last foreground write was taken (how busy intake is)."""
        return time.monotonic() - self._last_foreground

    def _next_batch(self) -> list[_Job[Any]] | None:
        """Every waiting foreground job; else one background job once the foreground lane
        has been quiet for ``background_idle_s`` (or background work has waited
        BACKGROUND_MAX_WAIT_S); None when stopped and drained."""
        with self._cond:
            while True:
                if self._foreground:
                    count = min(len(self._foreground), self._max_batch)
                    self._last_foreground = time.monotonic()
                    return [self._foreground.popleft() for _ in range(count)]
                if self._background:
                    now = time.monotonic()
                    quiet = now - self._last_foreground
                    starved = now - self._last_background
                    if self._stopping or quiet >= self._idle_s or starved >= _MAX_WAIT:
                        self._last_background = now
                        return [self._background.popleft()]
                    self._cond.wait(min(self._idle_s - quiet, _MAX_WAIT - starved))
                    continue
                if self._stopping:
                    return None
                self._cond.wait()

    def _run(self) -> None:
        while (batch := self._next_batch()) is not None:
            self._commit(batch)

    def _commit(self, batch: list[_Job[Any]]) -> None:
        conn = self._conn
        assert conn is not None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for job in batch:
                conn.execute("SAVEPOINT job")
                try:
                    job.result = job.op(conn)
                except Exception as exc:  # noqa: BLE001 - handed to the caller's future
                    conn.execute("ROLLBACK TO job")
                    job.error = storage_error(exc) if isinstance(exc, sqlite3.Error) else exc
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
            self.healthy = True
        except sqlite3.Error as exc:
            error = storage_error(exc)
            log.error("group commit failed", extra={"fields": {"operations": len(batch),
                                                               "reason": error.reason}})
            self.healthy = False
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            for job in batch:
                job.error, job.result = error, None
            self.stats.failures += len(batch)
        self.stats.transactions += 1
        self.stats.operations += len(batch)
        self.stats.largest_batch = max(self.stats.largest_batch, len(batch))
        for job in batch:
            job.loop.call_soon_threadsafe(_set_result, job)
