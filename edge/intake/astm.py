"""Intake of ASTM E1394 messages (from a ``protocol = "astm"`` serial listener).

ASTM has no application acknowledgement: the only answer is the link layer's ACK/NAK of the
frame that completed the message (LIS01-A2 8.3). So the contract is simply *stored or not*:
:func:`store_astm` returns True once the raw message is committed to the inbox (the link then
ACKs), False when the commit failed (the link NAKs and the instrument retransmits).

The inbox row gets ``message_type = "ASTM^E1394"`` and PHI-free metadata from the H record,
carried in an :class:`~edge.er7.header.Header` so the inbox's duplicate detection applies
unchanged: ``sending_application`` = H-5 (instrument name ^ version ^ serial number),
``control_id`` = H-3 (message control id) or, when the instrument leaves it empty, H-14 (the
message's date and time), ``processing_id`` = H-12, ``version_id`` = H-13. An instrument that
repeats a whole message (its ACK for the last frame was lost and it timed out) therefore gets
no second row.

A message is still stored when it cannot be read or is refused, as a dead letter with a
PHI-free reason (its record position and field path), and the link ACKs it: NAKing would only
make the instrument send it again, six times per session, forever. Accepted rows carry
``ack_code`` "CA" (a commit-level accept), dead letters "CR", and ``ack`` = the ACK byte.
"""

from __future__ import annotations

import codecs
import logging
from datetime import datetime

from edge.astm.errors import RecordError
from edge.astm.records import Header as ASTMHeader
from edge.astm.records import parse_message
from edge.config.model import SerialListenerSettings
from edge.er7.header import Header
from edge.inbox.store import Arrival, InboxStore, Stored
from edge.storage.errors import StorageError

log = logging.getLogger(__name__)

MESSAGE_CODE = "ASTM"
TRIGGER_EVENT = "E1394"
LINK_ACK = b"\x06"


def header_for(message: ASTMHeader | None, codec: str) -> Header:
    """The inbox metadata of an ASTM message (``message_type`` ASTM^E1394), from its H record
    when it could be read."""

    def text(get: str) -> str:
        return str(getattr(message, get)) if message is not None else ""

    sender = message.raw(5) if message is not None else ""
    control_id = text("message_control_id") or text("timestamp")
    processing = (message.components(12) or ("",))[0] if message is not None else ""
    return Header(
        field_separator=message.delimiters.field if message is not None else "|",
        encoding_characters="^~\\&",  # joins message_type as ASTM^E1394 whatever was sent
        sending_application=sender, sending_facility="", receiving_application="",
        receiving_facility="", message_datetime=text("timestamp"), message_code=MESSAGE_CODE,
        trigger_event=TRIGGER_EVENT, message_structure="", control_id=control_id,
        processing_id=processing, version_id=text("version"), accept_ack_type="",
        application_ack_type="", character_sets=(), codec=codecs.lookup(codec).name)


def refusal_reason(header: Header, listener: SerialListenerSettings) -> str:
    """Why a readable message is not accepted on this listener, or ``""``."""
    # An empty H-12 counts as P, as an empty MSH-11 does for HL7 listeners.
    if (header.processing_id or "P") not in listener.processing_ids:
        return "H-12: processing id not accepted by this listener"
    return ""


async def store_astm(inbox: InboxStore, raw: bytes, listener: SerialListenerSettings,
                     peer: str, now: datetime) -> Stored | None:
    """Commit one H..L message; None when it could not be stored (the link NAKs)."""
    reason = ""
    parsed: ASTMHeader | None = None
    try:
        parsed = parse_message(raw, codec=listener.fallback_charset).header
    except RecordError as exc:
        reason = f"{exc.location}: {exc.reason}"
    header = header_for(parsed, listener.fallback_charset)
    if not reason:
        reason = refusal_reason(header, listener)
    state = "dead-letter" if reason else "received"
    code = "CR" if reason else "CA"
    arrival = Arrival(raw, listener.name, peer, now, header)
    try:
        stored = await inbox.store(arrival, state=state, reason=reason,
                                   ack_for=lambda _row: (code, LINK_ACK))
    except StorageError as exc:
        log.error("ASTM message not stored", extra={"fields": {
            "listener": listener.name, "peer": peer, "size": len(raw), "reason": exc.reason}})
        return None
    log.info("ASTM message stored", extra={"fields": {
        "listener": listener.name, "peer": peer, "row": stored.row_id, "size": len(raw),
        "state": state, "duplicate": stored.duplicate, "reason": reason or None}})
    return stored
