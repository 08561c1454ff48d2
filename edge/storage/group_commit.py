"""Group commit: many writers, one transaction, one fsync.

An fsync costs far more than the inserts it covers (design.md: ~4,900 commits/s one message
per commit against ~44,000 messages/s at 50 per commit). Every connection's writes are queued
to one writer thread; the thread takes whatever is waiting (up to ``max_batch``), runs each
operation inside its own SAVEPOINT so one failing operation does not sink its neighbours,
commits once, and only then resolves the callers' futures. A caller's future resolving is
therefore the promise that its write is on disk.

Two lanes: *foreground* writes (intake: a sender waits for its ACK) and *background* writes
(the processing stage, whose operations store a message's resources and take milliseconds
of CPU). A transaction takes every waiting foreground write; only when none waits does it
take one background write. An ACK therefore waits behind at most one background write, and
under saturation processing pauses (its backlog stays ``received`` on disk, visible as
pending) until the senders slow down.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from edge.storage.database import connect
from edge.storage.errors import StorageError

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


_STOP = object()


def _set_result(job: _Job[Any]) -> None:
    if job.future.done():  # the caller was cancelled; the write still happened
        return
    if job.error is not None:
        job.future.set_exception(job.error)
    else:
        job.future.set_result(job.result)


def _classify(exc: sqlite3.Error) -> StorageError:
    text = str(exc)
    # SQLITE_FULL, SQLITE_IOERR and SQLITE_BUSY/LOCKED clear up without a code change.
    retriable = isinstance(exc, sqlite3.OperationalError)
    return StorageError("commit", f"{exc.__class__.__name__}: {text}", retriable=retriable)


class GroupCommitter:
    """The single writer of the state database."""

    def __init__(self, path: Path, *, max_batch: int = 256) -> None:
        self._path = path
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._background: collections.deque[_Job[Any]] = collections.deque()
        self._waiting = threading.Semaphore(0)  # one permit per queued item, either lane
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self.stats = CommitStats()
        self.healthy = True

    def start(self) -> None:
        self._conn = connect(self._path)
        self._thread = threading.Thread(target=self._run, name="group-commit", daemon=True)
        self._thread.start()

    def submit(self, op: Operation[T], *, background: bool = False) -> asyncio.Future[T]:
        """Queue ``op`` to run in the next transaction (a background op: in one of the next,
        see the module docstring). The future resolves after COMMIT."""
        if self._thread is None:
            raise StorageError("submit", "the writer is not running", retriable=True)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        job = _Job(op, loop, future)
        if background:
            self._background.append(job)
        else:
            self._queue.put(job)
        self._waiting.release()
        return future

    async def run(self, op: Operation[T], *, background: bool = False) -> T:
        return await self.submit(op, background=background)

    def close(self) -> None:
        """Finish every queued operation, then stop the thread and close the connection."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._waiting.release()
        self._thread.join()
        self._thread = None
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self) -> None:
        stopping = False
        while True:
            if not stopping:
                self._waiting.acquire()
            batch: list[_Job[Any]] = []
            while len(batch) < self._max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _STOP:
                    stopping = True  # finish what is queued, in both lanes, then stop
                    continue
                batch.append(item)
            if not batch:
                with contextlib.suppress(IndexError):
                    batch.append(self._background.popleft())
            if not batch:
                if stopping:
                    return
                continue
            # Permits for the items taken beyond the one acquired above (a permit may lag
            # its item by a moment; an extra wake-up then finds nothing and loops).
            for _ in range(len(batch) - 1):
                self._waiting.acquire(blocking=False)
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
                    job.error = _classify(exc) if isinstance(exc, sqlite3.Error) else exc
                conn.execute("RELEASE job")
            conn.execute("COMMIT")
            self.healthy = True
        except sqlite3.Error as exc:
            error = _classify(exc)
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
