"""The durable part of every peer request, written for many requests at once: its JWT id
(replay protection across restarts), its AuditEvents (encrypted, ledgered) and its access
notice, committed before the request is answered.

Why batch here when the group committer already shares one transaction (one fsync) among
concurrent operations: each *operation* still pays its own fixed work on the single writer
thread, and the requests wait in line for it: finding the patient's data key, reading the
latest versions, reading the log's size and frontier, appending the leaves, a dozen SQL
statements, each a hand-off of the GIL. Requests that arrive while the writer is busy are
queued here and written by one operation: one JWT-id insert each, then one
:func:`~edge.store.ledgered.put_prepared` per patient among them (one key lookup, one log
append) and the notices. Every request still gets its own events, in its own order, and is
answered only after the transaction that holds them has committed.

A replayed JWT id (already in ``peer_jti``, e.g. used before a restart) fails only its own
request: its events are not written, the others' are.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol, TypeVar

from edge.peer.errors import PeerError
from edge.peer.notifications import enqueue
from edge.peer.schema import JTI
from edge.pickled import reduce_by_fields
from edge.store.keys import PatientRef
from edge.store.ledgered import put_prepared
from edge.store.prepared import PreparedRecord
from edge.store.resources import ResourceStore

_JTI_SWEEP_MS: Final = 1000  # expired JWT ids are deleted at most this often
_JTI_GRACE_MS: Final = 60_000  # kept this long past their expiry (clock skew)


class Replayed(PeerError):
    """The durable JWT id table already holds this id (a replay, e.g. across a restart)."""


@dataclass(frozen=True, slots=True)
class AuditWrite:
    """One request's durable record. ``events`` are prepared
    (:func:`edge.peer.audit.prepare_audit`) and sealed under ``patient``'s key (the SYSTEM
    key when None); ``notice`` is the access notification to queue, or None."""

    jti: str = field(repr=False)
    facility: str
    expires_ms: int
    now_ms: int
    events: list[PreparedRecord]
    patient: PatientRef | None
    notice: dict[str, Any] | None = field(default=None, repr=False)

    __reduce__ = reduce_by_fields


_Pending = tuple[AuditWrite, "asyncio.Future[int]"]
T = TypeVar("T")


class Committer(Protocol):
    """What is needed of :class:`edge.storage.group_commit.GroupCommitter`: run ``op`` on the
    writer's connection in a transaction; return its result once committed."""

    async def run(self, op: Callable[[sqlite3.Connection], T], *,
                  background: bool = False) -> T: ...


class AuditBatcher:
    """Writes :class:`AuditWrite` records through ``committer``, many per operation. Use it
    from one event loop."""

    def __init__(self, committer: Committer, store: ResourceStore, *,
                 on_notice: Callable[[], None] = lambda: None) -> None:
        self._committer = committer
        self._store = store
        self._on_notice = on_notice
        self._lock = threading.Lock()
        self._pending: list[_Pending] = []
        self._scheduled = False
        self._swept_ms = 0  # writer thread only
        self._tasks: set[asyncio.Task[None]] = set()
        self.operations = 0
        self.writes = 0

    async def write(self, item: AuditWrite) -> int:
        """Commit ``item``; returns the log size after its events. Raises :class:`Replayed`
        for a JWT id already stored, StorageError when the transaction failed."""
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        with self._lock:
            self._pending.append((item, future))
            start = not self._scheduled
            self._scheduled = True
        if start:
            task = asyncio.ensure_future(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _flush(self) -> None:
        taken: list[_Pending] = []
        try:
            results = await self._committer.run(lambda conn: self._op(conn, taken))
        except BaseException as exc:
            if not taken:  # the operation never ran: nothing else will take these
                with self._lock:
                    taken, self._pending, self._scheduled = self._pending, [], False
            for _, future in taken:
                if not future.done():
                    future.set_exception(exc if isinstance(exc, Exception)
                                         else asyncio.CancelledError())
            if not isinstance(exc, Exception):
                raise
            return
        notify = False
        for (item, future), result in zip(taken, results, strict=True):
            notify |= item.notice is not None and isinstance(result, int)
            if future.done():
                continue
            if isinstance(result, Replayed):
                future.set_exception(result)
            else:
                future.set_result(result)
        if notify:
            self._on_notice()

    def _op(self, conn: sqlite3.Connection, taken: list[_Pending]) -> list[int | Replayed]:
        """On the writer thread, inside the group committer's transaction."""
        with self._lock:
            taken += self._pending
            self._pending, self._scheduled = [], False
        self.operations += 1
        self.writes += len(taken)
        results: list[int | Replayed] = []
        groups: dict[PatientRef | None, list[PreparedRecord]] = {}
        now_ms = 0
        for item, _ in taken:
            now_ms = max(now_ms, item.now_ms)
            try:
                # The id is the table's primary key: a second INSERT of it is the replay.
                conn.execute(f"INSERT INTO {JTI} (jti, facility, expires_ms) "  # noqa: S608
                             "VALUES (?, ?, ?)", (item.jti, item.facility, item.expires_ms))
            except sqlite3.IntegrityError:
                results.append(Replayed("replayed jti"))
                continue
            results.append(0)
            groups.setdefault(item.patient, []).extend(item.events)
        if now_ms - self._swept_ms >= _JTI_SWEEP_MS:
            conn.execute(f"DELETE FROM {JTI} WHERE expires_ms < ?",  # noqa: S608
                         (now_ms - _JTI_GRACE_MS,))
            self._swept_ms = now_ms
        size = 0
        for patient, events in groups.items():
            _, size = put_prepared(conn, self._store, events, patient=patient)
        for (item, _), result in zip(taken, results, strict=True):
            if item.notice is not None and not isinstance(result, Replayed):
                enqueue(conn, item.notice, item.now_ms)
        # Every written request's events are in the log once this transaction commits.
        return [r if isinstance(r, Replayed) else size for r in results]
