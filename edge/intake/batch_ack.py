"""The response to a block of several messages (HL7 v2.5 section 2.10.3, batch protocol).

The acknowledgements of a batch travel as a batch: ``BHS`` (BHS-12 references the received
batch's control id), one ACK per message in order, ``BTS`` with the count; with ``FHS``/``FTS``
around it when the sender used them. *We* acknowledge every message, not only failures
(2.10.3.2 allows either), so a sender can match each MSA-2. A block of several messages
without a batch envelope is answered the same way: one MLLP response per block.
"""

from __future__ import annotations

from datetime import datetime

from edge.er7.batch import Batch, BatchHeader

_DEFAULT_SEP, _DEFAULT_ENC = "|", "^~\\&"


def _dtm(now: datetime) -> str:
    return now.strftime("%Y%m%d%H%M%S") + (now.strftime("%z") if now.tzinfo else "")


def _header_segment(seg_id: str, received: BatchHeader | None, control_id: str,
                    now: datetime) -> str:
    sep = received.field_separator if received else _DEFAULT_SEP
    enc = received.encoding_characters if received else _DEFAULT_ENC
    # Sender and receiver swap, as in an ACK's MSH; -11 is ours, -12 names theirs.
    fields = [seg_id, enc,
              received.receiving_application if received else "",
              received.receiving_facility if received else "",
              received.sending_application if received else "",
              received.sending_facility if received else "",
              _dtm(now), "", "", "", control_id,
              received.control_id if received else ""]
    while fields and not fields[-1]:
        fields.pop()
    return sep.join(fields)


def wrap_batch_response(received: Batch, acks: list[bytes], *, control_id: str,
                        now: datetime) -> bytes:
    """``acks`` are the ER7 ACK messages (CR-terminated segments, in the same codec)."""
    bhs = received.batch_headers[0] if received.batch_headers else None
    fhs = received.file_header
    envelope = bhs or fhs
    sep = envelope.field_separator if envelope is not None else _DEFAULT_SEP
    lines: list[str] = []
    if fhs is not None:
        lines.append(_header_segment("FHS", fhs, control_id, now))
    lines.append(_header_segment("BHS", bhs, control_id, now))
    head = "".join(line + "\r" for line in lines).encode("ascii", errors="replace")
    tail = f"BTS{sep}{len(acks)}\r"
    if fhs is not None:
        tail += f"FTS{sep}1\r"
    return head + b"".join(acks) + tail.encode("ascii")
