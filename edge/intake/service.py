"""From a framed block to its acknowledgement: the intake rules of HL7 v2.5 chapter 2.

For each message in a block (one message, several, or a batch, see :mod:`edge.er7.batch`):

1. Read MSH (:func:`~edge.er7.header.parse_header`). Unreadable → dead letter, AR.
2. Refuse what this listener does not take: MSH-12 not in ``versions`` (ERR-3 203), MSH-11
   not in ``processing_ids`` (202) → dead letter, AR (CR in enhanced mode).
3. Commit the raw bytes (group commit). Only then answer AA (CA in enhanced mode). A message
   already stored with the same MSH-3/4/10 and bytes gets its first ACK again, not a new row.
   When the commit fails (disk full, I/O error), nothing was stored: AR (CE) with ERR-3 207,
   and the sender must retry.
4. With ``ack = "on-processed"`` the answer waits for the processing stage (normalization to
   FHIR, storage, ledger); a message that does not convert is answered AE with ERR and stays
   stored as a dead letter (or ``unsupported``: ERR-3 200).

Nothing here raises to the listener: every outcome is an answer.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from adapters.base import Block
from edge.config import Settings
from edge.config.model import MLLPListenerSettings, SerialListenerSettings
from edge.er7 import batch as er7_batch
from edge.er7.errors import ER7Error, HeaderError
from edge.er7.header import Header, parse_header
from edge.inbox.schema import TABLE
from edge.inbox.store import Arrival, InboxStore, Stored
from edge.intake.ack import (
    AckCode,
    AckError,
    ErrorCode,
    ErrorLocation,
    ack_code,
    best_effort_control_id,
    build_ack,
    build_unparsed_ack,
    should_send_accept_ack,
)
from edge.intake.batch_ack import wrap_batch_response
from edge.metrics import Metrics
from edge.processing.processor import Processor
from edge.storage.errors import StorageError
from edge.storage.group_commit import GroupCommitter

log = logging.getLogger(__name__)

COMMIT_ACK_PAYLOAD = b"\x06"  # MLLP Release 2 commit acknowledgement block content
COMMIT_NAK_PAYLOAD = b"\x15"

Clock = Callable[[], datetime]
# Listeners whose blocks are HL7 v2: the same ACK rules over TCP and over a serial line.
HL7Listener = MLLPListenerSettings | SerialListenerSettings


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a readable message is not accepted: the ERR to send and the dead-letter reason."""

    error: AckError
    reason: str


class IntakeService:
    def __init__(self, settings: Settings, inbox: InboxStore, committer: GroupCommitter,
                 metrics: Metrics, processor: Processor, *, clock: Clock = _utc_now) -> None:
        self._settings = settings
        self._listeners, self._astm = _listeners_by_name(settings)
        self._inbox = inbox
        self._committer = committer
        self._metrics = metrics
        self._processor = processor
        self._clock = clock
        self._reject_counter = 0
        self.duplicates = 0

    def update(self, settings: Settings) -> None:
        self._settings = settings
        self._listeners, self._astm = _listeners_by_name(settings)

    async def aclose(self) -> None:
        return None

    # -- the block ----------------------------------------------------------------------

    async def deliver(self, block: Block) -> bytes | None:
        astm = self._astm.get(block.origin.listener)
        if astm is not None:
            return await self._deliver_astm(block, astm)
        listener = self._listeners.get(block.origin.listener)
        if listener is None:  # removed by a reload while a connection was open
            return self._unparsed_reject(ErrorCode.APPLICATION_INTERNAL_ERROR, "listener removed")
        if block.dropped_bytes:
            log.warning("oversize block refused",
                        extra={"fields": {"listener": listener.name, "peer": block.origin.peer,
                                          "bytes": block.dropped_bytes}})
            self._metrics.acks.labels(listener.name, "AR").inc()
            return self._unparsed_reject(
                ErrorCode.APPLICATION_INTERNAL_ERROR,
                f"message larger than {listener.max_frame_bytes} bytes")
        try:
            parts = er7_batch.split(block.payload)
        except ER7Error as exc:
            # Not even the message boundaries can be found: keep the block for the operator.
            return await self._dead_letter_block(block, listener, exc)
        if not parts.messages:
            self._metrics.acks.labels(listener.name, "AR").inc()
            return self._unparsed_reject(ErrorCode.SEGMENT_SEQUENCE_ERROR, "empty message")
        batch_id = parts.batch_headers[0].control_id if parts.batch_headers else ""
        answers = await asyncio.gather(*(self._one(raw, block, listener, batch_id)
                                         for raw in parts.messages))
        if listener.commit_acks:
            ok = all(answer[1] for answer in answers)
            return COMMIT_ACK_PAYLOAD if ok else COMMIT_NAK_PAYLOAD
        acks = [answer[0] for answer in answers if answer[0] is not None]
        if not parts.is_batch and len(parts.messages) == 1:
            return acks[0] if acks else None
        return wrap_batch_response(parts, acks, control_id=self._next_reject_id(),
                                   now=self._clock())

    async def _deliver_astm(self, block: Block, listener: SerialListenerSettings) -> bytes:
        """An ASTM E1394 message: the link's answer is 0x06 once stored, 0x15 when not."""
        from edge.intake.astm import store_astm

        self._metrics.message_received(listener.name)
        stored = await store_astm(self._inbox, block.payload, listener, block.origin.peer,
                                  self._clock())
        if stored is None:
            return COMMIT_NAK_PAYLOAD
        self._count(listener, stored, dead=stored.ack_code == "CR")
        if not stored.duplicate and stored.ack_code != "CR":
            self._processor.wake()
        return COMMIT_ACK_PAYLOAD

    async def _one(self, raw: bytes, block: Block, listener: HL7Listener,
                   batch_id: str) -> tuple[bytes | None, bool]:
        """Returns (the ACK to send or None, whether the message is safely stored)."""
        self._metrics.message_received(listener.name)
        now = self._clock()
        try:
            header = parse_header(raw, fallback_codec=listener.fallback_charset)
        except HeaderError as exc:
            return await self._store_unreadable(raw, block, listener, batch_id, exc, now)
        arrival = Arrival(raw, listener.name, block.origin.peer, now, header, batch_id)
        refusal = refusal_for(header, listener)
        if refusal is not None:
            code = ack_code(header, "reject")
            stored = await self._store(arrival, "dead-letter", refusal.reason,
                                       lambda rid: (code, self._ack(header, code, rid, now,
                                                                   refusal.error)))
            self._count(listener, stored, dead=True)
            ack = stored.ack if stored else self._ack(header, code, None, now, refusal.error)
            return ack, stored is not None
        code = ack_code(header, "accept")
        stored = await self._store(arrival, "received", "",
                                   lambda rid: (code, self._ack(header, code, rid, now)))
        if stored is None:
            # Nothing was stored: AR/CE tells the sender to try again (v2.5 section 2.9.2).
            failed = AckCode.CE if header.enhanced_mode else AckCode.AR
            error = AckError(ErrorCode.APPLICATION_INTERNAL_ERROR,
                             location=ErrorLocation("MSH", field=10),
                             diagnostic="message could not be stored; retry later")
            self._metrics.acks.labels(listener.name, failed.value).inc()
            return self._ack(header, failed, None, now, error), False
        self._count(listener, stored, dead=False)
        if not stored.duplicate:
            if listener.ack == "on-processed":
                return await self._process(stored, raw, header, listener, now), True
            self._processor.wake()
        if not should_send_accept_ack(header, AckCode(stored.ack_code)):
            return None, True
        return stored.ack, True

    async def _process(self, stored: Stored, raw: bytes, header: Header,
                       listener: HL7Listener, now: datetime) -> bytes:
        """``on-processed``: the answer waits for the processing stage (v2.5 section 2.9.2:
        AE when the content cannot be processed; the message stays stored)."""
        result = await self._processor.process(stored.row_id, raw)
        if result.state == "processed":
            code = ack_code(header, "accept")
            ack = self._ack(header, code, stored.row_id, now)
        else:
            error_code = (ErrorCode.UNSUPPORTED_MESSAGE_TYPE if result.state == "unsupported"
                          else ErrorCode.DATA_TYPE_ERROR)
            code = ack_code(header, "error")
            ack = self._ack(header, code, stored.row_id, now,
                            AckError(error_code, diagnostic=result.reason))
            self._metrics.dead_letters.labels(listener.name).inc()
        # The ACK a duplicate of this message will get.
        await self._committer.run(_set_ack(stored.row_id, code, ack))
        return ack

    # -- storing ------------------------------------------------------------------------

    async def _store(self, arrival: Arrival, state: str, reason: str,
                     ack_for: Callable[[int], tuple[str, bytes]]) -> Stored | None:
        try:
            return await self._inbox.store(arrival, state=state, reason=reason, ack_for=ack_for)
        except StorageError as exc:
            log.error("message not stored", extra={"fields": {
                "listener": arrival.listener, "control_id": arrival.header.control_id
                if arrival.header else "?", "reason": exc.reason}})
            return None

    async def _store_unreadable(self, raw: bytes, block: Block, listener: HL7Listener,
                                batch_id: str, exc: HeaderError, now: datetime,
                                ) -> tuple[bytes, bool]:
        error = _header_error(exc)
        reason = f"{exc.field}: {exc.reason}"
        received_id = best_effort_control_id(raw)
        arrival = Arrival(raw, listener.name, block.origin.peer, now, None, batch_id)

        def ack_for(row_id: int) -> tuple[str, bytes]:
            return "AR", build_unparsed_ack(control_id=f"E{row_id}", now=now, error=error,
                                            received_control_id=received_id)

        stored = await self._store(arrival, "dead-letter", reason, ack_for)
        row = stored.row_id if stored else None
        log.warning("unreadable message dead-lettered",
                    extra={"fields": {"listener": listener.name, "peer": block.origin.peer,
                                      "field": exc.field, "row": row}})
        self._metrics.acks.labels(listener.name, "AR").inc()
        if stored is None:
            return build_unparsed_ack(control_id=self._next_reject_id(), now=now, error=error,
                                      received_control_id=received_id), False
        self._metrics.dead_letters.labels(listener.name).inc()
        return stored.ack, True

    async def _dead_letter_block(self, block: Block, listener: HL7Listener,
                                 exc: ER7Error) -> bytes:
        header_error = HeaderError(exc.location, exc.reason, err_code=exc.err_code)
        ack, _ = await self._store_unreadable(block.payload, block, listener, "", header_error,
                                              self._clock())
        return ack

    # -- helpers ------------------------------------------------------------------------

    def _ack(self, header: Header, code: AckCode, row_id: int | None, now: datetime,
             error: AckError | None = None) -> bytes:
        # Our MSH-10: the inbox row id makes it unique and lets an operator find the message.
        control_id = f"A{row_id}" if row_id is not None else self._next_reject_id()
        return build_ack(header, code, control_id=control_id, now=now,
                         errors=(error,) if error else ())

    def _unparsed_reject(self, code: ErrorCode, diagnostic: str) -> bytes:
        error = AckError(code, location=ErrorLocation("MSH"), diagnostic=diagnostic)
        return build_unparsed_ack(control_id=self._next_reject_id(), now=self._clock(),
                                  error=error)

    def _next_reject_id(self) -> str:
        # For answers with no row behind them. Time-based so ids stay unique across restarts.
        self._reject_counter += 1
        return f"R{int(self._clock().timestamp() * 1000):x}{self._reject_counter:x}"

    def _count(self, listener: HL7Listener, stored: Stored | None, *,
               dead: bool) -> None:
        if stored is None:
            return
        if stored.duplicate:
            self.duplicates += 1
            self._metrics.duplicates.labels(listener.name).inc()
        elif dead:
            self._metrics.dead_letters.labels(listener.name).inc()
        self._metrics.acks.labels(listener.name, stored.ack_code).inc()

    async def counts(self) -> dict[str, Any]:
        """Inbox totals for /status, from the database (they survive restarts)."""

        def query(conn: sqlite3.Connection) -> dict[str, Any]:
            by_state = dict(conn.execute(
                f"SELECT state, count(*) FROM {TABLE} GROUP BY state").fetchall())  # noqa: S608
            by_code = dict(conn.execute(
                f"SELECT ack_code, count(*) FROM {TABLE} GROUP BY ack_code").fetchall())  # noqa: S608
            return {
                "received": sum(by_state.values()),
                "acknowledged": {code: n for code, n in by_code.items() if code},
                "duplicates": self.duplicates,
                "dead_letters": by_state.get("dead-letter", 0),
                "pending": by_state.get("received", 0),
            }

        counts = await self._committer.run(query)
        self._metrics.inbox_pending.set(counts["pending"])
        self._metrics.inbox_dead.set(counts["dead_letters"])
        return counts


def _listeners_by_name(settings: Settings) -> tuple[dict[str, HL7Listener],
                                                    dict[str, SerialListenerSettings]]:
    """HL7 listeners (MLLP over TCP or serial) and ASTM serial listeners, by name."""
    hl7: dict[str, HL7Listener] = {item.name: item for item in settings.mllp}
    hl7.update((item.name, item) for item in settings.serial if item.protocol == "mllp")
    astm = {item.name: item for item in settings.serial if item.protocol == "astm"}
    return hl7, astm


def refusal_for(header: Header, listener: HL7Listener) -> Refusal | None:
    if header.version_id not in listener.versions:
        return Refusal(AckError(ErrorCode.UNSUPPORTED_VERSION_ID,
                                location=ErrorLocation("MSH", field=12)),
                       "MSH-12: version not accepted by this listener")
    # An empty MSH-11 counts as P: feeds that leave it out (it is required, yet many public
    # health senders omit it) are production feeds; a listener without P still refuses them.
    if (header.processing_id or "P") not in listener.processing_ids:
        return Refusal(AckError(ErrorCode.UNSUPPORTED_PROCESSING_ID,
                                location=ErrorLocation("MSH", field=11)),
                       "MSH-11: processing id not accepted by this listener")
    return None


def _header_error(exc: HeaderError) -> AckError:
    code = ErrorCode(exc.err_code) if exc.err_code in ErrorCode._value2member_map_ \
        else ErrorCode.DATA_TYPE_ERROR
    field = exc.field.removeprefix("MSH-")
    location = ErrorLocation("MSH", field=int(field)) if field.isdigit() else ErrorLocation("MSH")
    return AckError(code, location=location, diagnostic=exc.reason)


def _set_ack(row_id: int, code: AckCode, ack: bytes) -> Callable[[sqlite3.Connection], None]:
    def op(conn: sqlite3.Connection) -> None:
        conn.execute(f"UPDATE {TABLE} SET ack_code = ?, ack = ? WHERE id = ?",  # noqa: S608
                     (code.value, ack, row_id))

    return op
