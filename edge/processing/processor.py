"""The processing stage: committed inbox messages → FHIR resources in the store → leaves in
the Merkle log, each message in one transaction.

A message is ``received`` until this stage finishes it; then it is ``processed`` (resources
stored and their leaves appended, the raw payload re-keyed to the patient's key), ``unsupported``
(a structure with no map: kept, not converted) or ``dead-letter`` (the path and reason that
failed). Everything is driven from the database, so a restart picks up where the last
transaction left off: nothing acknowledged is skipped, nothing is stored twice.

Conversion runs in worker processes (:mod:`edge.processing.worker`); storing runs on the
group-commit writer, so the resource rows, their leaves and the message's new state commit
together.

Messages convert concurrently but commit in the order they were claimed (inbox order): an
A08 received after an A01 must leave the Patient as the A08 says, whichever conversion
finishes first. When a message fails for a reason that is not its content (a worker died,
the disk), the messages claimed after it do not commit either: all of them stay ``received``
and are retried in order.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

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
from edge.storage.group_commit import (
    BACKGROUND_IDLE_S,
    BACKGROUND_MAX_WAIT_S,
    GroupCommitter,
)
from edge.store.keys import PatientRef, StoreKeys
from edge.store.ledgered import put_prepared
from edge.store.rekey import rekey_inbox_message
from edge.store.resources import ResourceStore

log = logging.getLogger(__name__)

_BATCH = 64  # messages read and converted per round
MAX_ATTEMPTS = 5  # rounds a message may fail for a non-content reason before dead-lettering


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
        self._claims: dict[int, asyncio.Future[Processed]] = {}
        # Resolves (True: committed) when the most recently claimed message is done.
        self._tail: asyncio.Future[bool] | None = None
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
        """Process every ``received`` message, then wait to be woken; until :meth:`stop`."""
        reader = connect(self._db_path, readonly=True)
        loop = asyncio.get_running_loop()
        backoff = 0.0
        try:
            while not self._stopping:
                # Conversion and storage use CPU the intake needs while senders are sending:
                # a round starts only once intake has been quiet briefly (the writer's
                # background lane waits the same way), and catches up in the gaps.
                deadline = loop.time() + BACKGROUND_MAX_WAIT_S
                while ((quiet := self._committer.quiet_for()) < BACKGROUND_IDLE_S
                       and loop.time() < deadline):
                    await self._sleep(BACKGROUND_IDLE_S - quiet)
                # Cleared before looking, so a wake() during the query is not lost.
                self._wake.clear()
                # On the loop's thread, like the payload reads below: one sqlite3 connection
                # must not be used from two threads at once.
                rows = _pending(reader, _BATCH)
                mine = [row for row in rows if row.id not in self._claims]
                if mine:
                    results = await asyncio.gather(
                        *(self._claim(row.id, row.payload, row.message_type, row.listener,
                                      reader=reader, key_id=row.key_id)
                          for row in mine), return_exceptions=True)
                    failures = [r for r in results if isinstance(r, BaseException)]
                    if not failures:
                        backoff = 0.0
                        continue
                    await self._count_failures(
                        [row.id for row, r in zip(mine, results, strict=True)
                         if isinstance(r, Exception) and not isinstance(r, ProcessingOrderError)],
                        failures)
                    # Our fault or the environment's (disk, a worker died): the messages stay
                    # ``received`` and are tried again after a pause that grows to a minute.
                    self.last_error = type(failures[0]).__name__
                    log.error("processing round failed; will retry", exc_info=failures[0],
                              extra={"fields": {"failed": len(failures)}})
                    backoff = min(max(backoff * 2, 1.0), 60.0)
                    await self._sleep(backoff)
                    continue
                if len(rows) < _BATCH:
                    await self._wake.wait()
        finally:
            reader.close()

    async def _count_failures(self, row_ids: list[int], failures: list[BaseException]) -> None:
        """A message that keeps failing for a reason that is not its content (a bug, a worker
        crashing on it) is dead-lettered after MAX_ATTEMPTS rounds, so it cannot hold back
        the messages after it forever; its reason names the exception type only."""
        kind = type(failures[0]).__name__

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
        if claimed is not None:
            return await asyncio.shield(claimed)
        return await self._claim(row_id, raw, message_type, listener)

    async def _claim(self, row_id: int, payload: bytes, message_type: str | None,
                     listener: str, *, reader: sqlite3.Connection | None = None,
                     key_id: str | None = None) -> Processed:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Processed] = loop.create_future()
        self._claims[row_id] = future
        previous, turn = self._tail, loop.create_future()
        self._tail = turn
        try:
            # Decrypting a payload takes microseconds; it stays on this thread because the
            # reader connection is shared by every claim.
            raw = payload if reader is None or key_id is None else self._sealer.open(
                reader, INBOX, row_id, PAYLOAD_VERSION, key_id, payload)
            outcome = await loop.run_in_executor(
                self._executor, convert, raw, kind_of(message_type), self._context,
                self._profiles.get(listener))
            if previous is not None and not await asyncio.shield(previous):
                raise ProcessingOrderError(row_id)
            result = await self._committer.run(self._record(row_id, outcome), background=True)
            turn.set_result(True)
            if not result.already_done:
                self.counts[result.state] += 1
            if result.log_size:
                self._on_appended(result.log_size)
            if result.state != "processed":
                log.warning("message not converted", extra={"fields": {
                    "row": row_id, "state": result.state, "reason": result.reason}})
            future.set_result(result)
            return result
        except BaseException as exc:
            # Stays ``received``: retried on the next round or after a restart.
            if not turn.done():
                if previous is None or previous.done():
                    turn.set_result(False)
                else:  # resolve only after the one before, to keep the chain in order
                    previous.add_done_callback(lambda _: _fail_turn(turn))
            if not future.done():
                future.set_exception(exc)
                future.exception()  # marks it retrieved: the caller gets it from the raise
            raise
        finally:
            self._claims.pop(row_id, None)

    def _record(self, row_id: int, outcome: Outcome) -> Callable[[sqlite3.Connection], Processed]:
        def op(conn: sqlite3.Connection) -> Processed:
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
                # of this transaction (edge.fhirapi.preconditions).
                refusal = failed_precondition(conn, self._store, outcome.preconditions)
                if refusal is not None:
                    _set_state(conn, row_id, "dead-letter", refusal)
                    return Processed(row_id, "dead-letter", refusal)
            size, versions = self._store_resources(conn, row_id, outcome)
            _set_state(conn, row_id, "processed", "")
            return Processed(row_id, "processed", resources=len(outcome.records),
                             log_size=size, versions=versions)

        return op

    def _store_resources(self, conn: sqlite3.Connection, row_id: int,
                         message: Converted) -> tuple[int, tuple[Version, ...]]:
        patient = (PatientRef(*parse_identifier_token(message.patient_key))
                   if message.patient_key else None)
        stored, size = put_prepared(conn, self._store, message.records, patient=patient)
        if patient is not None:
            rekey_inbox_message(conn, self._keys, row_id, patient)
        return size, tuple((v.type, v.id, v.version) for v in stored)


class _Row(NamedTuple):
    id: int
    key_id: str
    payload: bytes
    message_type: str | None
    listener: str


def _fail_turn(turn: asyncio.Future[bool]) -> None:
    if not turn.done():
        turn.set_result(False)


class ProcessingOrderError(EdgeError):
    """An earlier message did not commit, so this one waits for the retry (inbox order)."""

    fault = "environment"
    retriable = True

    def __init__(self, row_id: int) -> None:
        super().__init__(f"inbox row {row_id}: an earlier message failed; retried in order")


def _pending(reader: sqlite3.Connection, limit: int) -> list[_Row]:
    rows = reader.execute(
        f"SELECT id, key_id, payload, message_type, listener FROM {INBOX} "  # noqa: S608
        "WHERE state = 'received' ORDER BY id LIMIT ?", (limit,)).fetchall()
    return [_Row(*row) for row in rows]


def _set_state(conn: sqlite3.Connection, row_id: int, state: str, reason: str) -> None:
    conn.execute(
        f"UPDATE {INBOX} SET state = ?, reason = ?, "  # noqa: S608
        "updated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = ?",
        (state, reason or None, row_id))
