"""The processing stage: committed inbox messages → FHIR resources in the store → leaves in
the Merkle log, each message in one transaction.

A message is ``received`` until this stage finishes it; then it is ``processed`` (resources
stored and their leaves appended, the raw payload re-keyed to the patient's key), ``unsupported``
(a structure with no map: kept, not converted) or ``dead-letter`` (the path and reason that
failed). Everything is driven from the database, so a restart picks up where the last
transaction left off: nothing acknowledged is skipped, nothing is stored twice.

Conversion runs in worker processes (:mod:`edge.processing.worker`); storing runs on the
group-commit writer, so the resource rows, their leaves and the message's new state commit
together. Every converted message at the head of the claim order goes into one writer
operation, each in its own savepoint: a backlog drains at a fraction of an fsync per message.

Messages convert concurrently but commit in the order they were claimed (inbox order): an
A08 received after an A01 must leave the Patient as the A08 says, whichever conversion
finishes first. When a message fails for a reason that is not its content (a worker died,
the disk), the messages claimed after it do not commit either: all of them stay ``received``
and are retried in order.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from edge.astm.profile import DeviceProfile
from edge.crypto.blind_index import parse_identifier_token
from edge.errors import EdgeError
from edge.fhirapi.preconditions import failed_precondition
from edge.inbox.schema import TABLE as INBOX
from edge.inbox.sealing import InboxSealer
from edge.inbox.store import PAYLOAD_VERSION
from edge.normalize.context import NormalizeContext
from edge.processing.worker import Converted, Failed, Outcome, convert, kind_of
from edge.storage.database import connect
from edge.storage.errors import storage_error
from edge.storage.group_commit import BACKGROUND_IDLE_S, BACKGROUND_MAX_WAIT_S, GroupCommitter
from edge.store.keys import PatientRef, StoreKeys
from edge.store.ledgered import put_prepared
from edge.store.rekey import rekey_inbox_message
from edge.store.resources import ResourceStore

log = logging.getLogger(__name__)

_IN_FLIGHT = 64  # messages claimed (converting or waiting to commit) at once
_PER_OPERATION = 64  # most messages one writer operation records
MAX_ATTEMPTS = 5  # times a message may fail for a non-content reason before dead-lettering


Version = tuple[str, str, int]  # (resource type, logical id, version id) as stored


@dataclass(frozen=True, slots=True)
class Processed:
    row_id: int
    state: str  # processed | unsupported | dead-letter
    reason: str = ""
    resources: int = 0
    log_size: int = 0  # the Merkle log's size after this message's leaves
    versions: tuple[Version, ...] = ()
    already_done: bool = False  # another caller had processed it


class Processor:
    def __init__(self, db_path: Path, committer: GroupCommitter, keys: StoreKeys,
                 sealer: InboxSealer, context: NormalizeContext, executor: Executor, *,
                 profiles: Mapping[str, DeviceProfile] | None = None,
                 on_appended: Callable[[int], None] = lambda size: None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        self._db_path = db_path
        self._committer = committer
        self._keys = keys
        self._store = ResourceStore(keys)
        self._sealer = sealer
        self._context = context
        self._executor = executor
        self._profiles = dict(profiles or {})  # ASTM device profile per serial listener
        self._on_appended = on_appended
        self._wake = asyncio.Event()
        self._claims: dict[int, _Claim] = {}
        self._queue: collections.deque[_Claim] = collections.deque()  # claim order
        self._committing: asyncio.Task[None] | None = None
        self._stopping = False
        self._sleep = sleep
        self.last_error = ""
        self.counts = {"processed": 0, "unsupported": 0, "dead-letter": 0}

    def update(self, context: NormalizeContext,
               profiles: Mapping[str, DeviceProfile] | None = None) -> None:
        self._context = context
        self._profiles = dict(profiles or {})

    def wake(self) -> None:
        """Intake committed something: look for work now."""
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._wake.set()

    async def run(self) -> None:
        """Process every ``received`` message, then wait to be woken; until :meth:`stop`,
        which lets the claimed messages finish.

        Up to _IN_FLIGHT messages are claimed at once, and more are claimed as they finish,
        so the workers convert while the writer stores: conversion and storage overlap
        instead of taking turns."""
        reader = connect(self._db_path, readonly=True)
        running: set[asyncio.Future[Processed]] = set()
        backoff = 0.0
        try:
            while not self._stopping or running:
                caught_up = False
                if not self._stopping and len(running) <= _IN_FLIGHT // 2:
                    await self._yield_to_intake()
                    # Cleared before looking, so a wake() during the query is not lost.
                    self._wake.clear()
                    room = _IN_FLIGHT - len(running)
                    # On the loop's thread, like the payload reads in _claim: one sqlite3
                    # connection must not be used from two threads at once.
                    rows = _pending(reader, self._claims, room)
                    running.update(self._claim(row.id, row.payload, row.message_type,
                                               row.listener, reader=reader, key_id=row.key_id)
                                   for row in rows)
                    caught_up = len(rows) < room
                if not running:
                    await self._wake.wait()
                    continue
                # New work is looked for when enough claims finish, or at once when every
                # pending message was claimed and intake wakes us.
                waits: set[asyncio.Future[Any]] = set(running)
                woken = asyncio.ensure_future(self._wake.wait()) if caught_up else None
                if woken is not None:
                    waits.add(woken)
                done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                if woken is not None:
                    woken.cancel()
                finished: list[asyncio.Future[Processed]] = [
                    f for f in done if f is not woken]
                running.difference_update(finished)
                failures = [exc for f in finished if (exc := f.exception()) is not None]
                if not failures:
                    if finished:
                        backoff = 0.0
                    continue
                # Every claim after a failure fails too (inbox order); wait for them all,
                # then start over from the oldest ``received`` message.
                rest = await asyncio.gather(*running, return_exceptions=True)
                running.clear()
                failures += [r for r in rest if isinstance(r, BaseException)]
                cause = _root_cause(failures)
                await self._count_failures(failures, cause)
                # Our fault or the environment's (disk, a worker died): the messages stay
                # ``received`` and are tried again after a pause that grows to a minute.
                self.last_error = type(cause).__name__
                log.error("processing failed; will retry", exc_info=cause,
                          extra={"fields": {"failed": len(failures)}})
                backoff = min(max(backoff * 2, 1.0), 60.0)
                if not self._stopping:
                    await self._sleep(backoff)
        finally:
            reader.close()

    async def _yield_to_intake(self) -> None:
        """Conversion and storage use CPU the intake needs while senders are sending: claim
        new work once intake has been quiet briefly (the writer's background lane waits the
        same way), or after BACKGROUND_MAX_WAIT_S under unbroken intake."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + BACKGROUND_MAX_WAIT_S
        while ((quiet := self._committer.quiet_for()) < BACKGROUND_IDLE_S
               and loop.time() < deadline):
            await self._sleep(BACKGROUND_IDLE_S - quiet)

    async def _count_failures(self, failures: list[BaseException],
                              cause: BaseException) -> None:
        """A message that keeps failing for a reason that is not its content (a bug, a worker
        crashing on it) is dead-lettered after MAX_ATTEMPTS rounds, so it cannot hold back
        the messages after it forever; its reason names the exception type only. Only the
        message that failed counts an attempt, not the ones after it that waited."""
        row_ids = [exc.row_id for exc in failures
                   if isinstance(exc, ClaimFailed) and not isinstance(exc, ProcessingOrderError)]
        kind = type(cause).__name__

        def op(conn: sqlite3.Connection) -> None:
            for row_id in row_ids:
                conn.execute(
                    f"UPDATE {INBOX} SET attempts = attempts + 1, "  # noqa: S608
                    "state = CASE WHEN attempts + 1 >= ? THEN 'dead-letter' ELSE state END, "
                    "reason = CASE WHEN attempts + 1 >= ? THEN ? ELSE reason END "
                    "WHERE id = ? AND state = 'received'",
                    (MAX_ATTEMPTS, MAX_ATTEMPTS,
                     f"processing failed {MAX_ATTEMPTS} times ({kind}); replay after a fix",
                     row_id))

        if row_ids:
            await self._committer.run(op, background=True)

    async def process(self, row_id: int, raw: bytes, message_type: str | None = None,
                      listener: str = "") -> Processed:
        """Process one message now (``ack = "on-processed"``, the FHIR API) and return what
        became of it; waits for the outcome when the background loop already has it."""
        claimed = self._claims.get(row_id)
        future = (claimed.result if claimed is not None
                  else self._claim(row_id, raw, message_type, listener))
        try:
            return await asyncio.shield(future)
        except ClaimFailed as exc:
            if exc.cause is None:
                raise
            raise exc.cause from None

    def _claim(self, row_id: int, payload: bytes, message_type: str | None,
               listener: str, *, reader: sqlite3.Connection | None = None,
               key_id: str | None = None) -> asyncio.Future[Processed]:
        """Start converting a message; it commits after every message claimed before it.
        The future fails with :class:`ClaimFailed` when the message stays ``received``."""
        loop = asyncio.get_running_loop()
        converted: asyncio.Future[Outcome]
        try:
            # Decrypting a payload takes microseconds; it stays on this thread because the
            # reader connection is shared by every claim.
            raw = payload if reader is None or key_id is None else self._sealer.open(
                reader, INBOX, row_id, PAYLOAD_VERSION, key_id, payload)
            converted = loop.run_in_executor(
                self._executor, convert, raw, kind_of(message_type), self._context,
                self._profiles.get(listener))
        except Exception as exc:  # noqa: BLE001 - failed in its place in the order, below
            # Queued like any claim, so the messages claimed after it wait for its retry
            # instead of committing ahead of it.
            converted = loop.create_future()
            converted.set_exception(exc)
        converted.add_done_callback(_retrieved)  # a failed claim may never look at it
        claim = _Claim(row_id, converted, loop.create_future())
        self._claims[row_id] = claim
        self._queue.append(claim)
        if self._committing is None or self._committing.done():
            self._committing = asyncio.create_task(self._commit_in_order(),
                                                   name="processor-commits")
        return claim.result

    async def _commit_in_order(self) -> None:
        """Commit the claimed messages in claim order, every converted one at the head of
        the queue in one writer operation: a backlog drains at a fraction of an fsync per
        message instead of one each."""
        try:
            while self._queue:
                head = self._queue[0]
                await asyncio.wait((head.converted,))
                batch: list[tuple[int, Outcome]] = []
                for claim in self._queue:
                    if (len(batch) == _PER_OPERATION or not claim.converted.done()
                            or claim.converted.cancelled()
                            or claim.converted.exception() is not None):
                        break
                    batch.append((claim.row_id, claim.converted.result()))
                if not batch:  # the head's conversion failed (a worker died)
                    self._fail_queue(_conversion_error(head.converted))
                    continue
                try:
                    recorded = await self._committer.run(self._record_in_order(batch),
                                                         background=True)
                except Exception as exc:  # noqa: BLE001 - the commit failed: none stored
                    self._fail_queue(exc)
                    continue
                for result in recorded.results:
                    self._finish(self._queue.popleft(), result)
                if recorded.error is not None:
                    self._fail_queue(recorded.error)
        except BaseException as exc:  # cancelled at shutdown: the claims stay received
            self._fail_queue(exc)
            raise

    def _finish(self, claim: _Claim, result: Processed) -> None:
        self._claims.pop(claim.row_id, None)
        if not result.already_done:
            self.counts[result.state] += 1
        if result.log_size:
            self._on_appended(result.log_size)
        if result.state != "processed":
            log.warning("message not converted", extra={"fields": {
                "row": claim.row_id, "state": result.state, "reason": result.reason}})
        if not claim.result.done():
            claim.result.set_result(result)

    def _fail_queue(self, exc: BaseException) -> None:
        """The head of the queue failed with ``exc``; every claim after it waits for the
        retry, in order. All of them stay ``received``."""
        first = True
        while self._queue:
            claim = self._queue.popleft()
            self._claims.pop(claim.row_id, None)
            _fail(claim.result, ClaimFailed(claim.row_id, exc) if first
                  else ProcessingOrderError(claim.row_id))
            first = False

    def _record_in_order(self, batch: list[tuple[int, Outcome]]
                         ) -> Callable[[sqlite3.Connection], _Recorded]:
        """One writer operation recording consecutive messages, each in its own savepoint;
        it stops at the first that fails, and yields the writer early when intake is
        waiting (the rest go in the next operation)."""
        def op(conn: sqlite3.Connection) -> _Recorded:
            results: list[Processed] = []
            started = time.monotonic()
            for row_id, outcome in batch:
                if results and self._committer.should_yield(started):
                    break
                conn.execute("SAVEPOINT message")
                try:
                    results.append(self._record(conn, row_id, outcome))
                except Exception as exc:  # noqa: BLE001 - this message fails; earlier commit
                    conn.execute("ROLLBACK TO message")
                    conn.execute("RELEASE message")
                    return _Recorded(results, storage_error(exc)
                                     if isinstance(exc, sqlite3.Error) else exc)
                conn.execute("RELEASE message")
            return _Recorded(results, None)

        return op

    def _record(self, conn: sqlite3.Connection, row_id: int, outcome: Outcome) -> Processed:
        # Checked in the writing transaction: a row the background loop read just before
        # an on-processed caller finished it must not be stored twice.
        (state, reason) = conn.execute(
            f"SELECT state, coalesce(reason, '') FROM {INBOX} WHERE id = ?",  # noqa: S608
            (row_id,)).fetchone()
        if state != "received":
            return Processed(row_id, state, reason, already_done=True)
        if isinstance(outcome, Failed):
            _set_state(conn, row_id, outcome.state, outcome.reason)
            return Processed(row_id, outcome.state, outcome.reason)
        if outcome.preconditions:
            # If-Match / If-None-Exist from the FHIR API, checked before the first write
            # of this message (edge.fhirapi.preconditions).
            refusal = failed_precondition(conn, self._store, outcome.preconditions)
            if refusal is not None:
                _set_state(conn, row_id, "dead-letter", refusal)
                return Processed(row_id, "dead-letter", refusal)
        size, versions = self._store_resources(conn, row_id, outcome)
        _set_state(conn, row_id, "processed", "")
        return Processed(row_id, "processed", resources=len(outcome.records),
                         log_size=size, versions=versions)

    def _store_resources(self, conn: sqlite3.Connection, row_id: int,
                         message: Converted) -> tuple[int, tuple[Version, ...]]:
        patient = (PatientRef(*parse_identifier_token(message.patient_key))
                   if message.patient_key else None)
        stored, size = put_prepared(conn, self._store, message.records, patient=patient)
        if patient is not None:
            rekey_inbox_message(conn, self._keys, row_id, patient)
        return size, tuple((v.type, v.id, v.version) for v in stored)


@dataclass(slots=True, eq=False)
class _Claim:
    row_id: int
    converted: asyncio.Future[Outcome]  # the worker's conversion
    result: asyncio.Future[Processed]  # resolved once committed (or failed)


class _Recorded(NamedTuple):
    results: list[Processed]  # the batch's first messages, committed in order
    error: BaseException | None  # why the next one was not (None: all, or yielded early)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _fail(future: asyncio.Future[Processed], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
        future.exception()  # marks it retrieved: a caller gets it when it awaits


def _root_cause(failures: list[BaseException]) -> BaseException:
    """What went wrong, not the claims that waited behind it."""
    first = next((f for f in failures if not isinstance(f, ProcessingOrderError)), failures[0])
    return first.cause if isinstance(first, ClaimFailed) and first.cause else first


def _conversion_error(converted: asyncio.Future[Outcome]) -> BaseException:
    if converted.cancelled():
        return asyncio.CancelledError()
    error = converted.exception()
    assert error is not None
    return error


class _Row(NamedTuple):
    id: int
    key_id: str
    payload: bytes
    message_type: str | None
    listener: str


class ClaimFailed(EdgeError):
    """A claimed message did not commit (its conversion or its write failed, for a reason
    that is not its content); it stays ``received`` and is retried. ``cause`` says why."""

    fault = "environment"
    retriable = True

    def __init__(self, row_id: int, cause: BaseException | None,
                 text: str = "processing failed; retried") -> None:
        super().__init__(f"inbox row {row_id}: {text}")
        self.row_id = row_id
        self.cause = cause


class ProcessingOrderError(ClaimFailed):
    """An earlier message did not commit, so this one waits for the retry (inbox order)."""

    def __init__(self, row_id: int) -> None:
        super().__init__(row_id, None, "an earlier message failed; retried in order")


def _pending(reader: sqlite3.Connection, claimed: Collection[int], room: int) -> list[_Row]:
    """Up to ``room`` of the oldest ``received`` messages not claimed already. Ids first, so
    the claimed rows' payloads are not read again."""
    ids = [row_id for (row_id,) in reader.execute(
        f"SELECT id FROM {INBOX} WHERE state = 'received' ORDER BY id LIMIT ?",  # noqa: S608
        (len(claimed) + room,)) if row_id not in claimed][:room]
    if not ids:
        return []
    rows = reader.execute(
        f"SELECT id, key_id, payload, message_type, listener FROM {INBOX} "  # noqa: S608
        f"WHERE id IN ({', '.join('?' * len(ids))}) ORDER BY id", ids).fetchall()
    return [_Row(*row) for row in rows]


def _set_state(conn: sqlite3.Connection, row_id: int, state: str, reason: str) -> None:
    conn.execute(
        f"UPDATE {INBOX} SET state = ?, reason = ?, "  # noqa: S608
        "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
        (state, reason or None, row_id))
