"""The ASTM E1381 / CLSI LIS01-A2 low-level protocol as a sans-I/O state machine.

Bytes in, events out; no ports, no clocks of its own (design.md, "examples to follow" 1 and 7).
One :class:`ASTMLink` is one end of a point-to-point line: it receives (the instrument sends
results) and can send (for tests, and for orders/queries towards an instrument later).

The protocol (LIS01-A2 section 8, E1381 section 6), as implemented here:

- **Establishment.** The sender sends ENQ; the receiver answers ACK (ready) or NAK (busy: the
  sender tries again after at least 10 s). Both sides sending ENQ at once is *contention*: the
  instrument has priority. The computer system stops trying, does not answer that ENQ, and
  answers the instrument's next one; it waits at least 20 s before its own next ENQ. The
  instrument waits at least 1 s and sends ENQ again.
- **Transfer.** Frames ``STX FN text ETB|ETX C1 C2 CR LF``: FN is the frame number, ``"1"``
  for the first frame of a session, then mod 8 (``7`` is followed by ``0``); ETB ends an
  intermediate frame, ETX the last frame of a record group; C1 C2 is the checksum, the sum of
  every byte from FN through ETB/ETX mod 256, as two uppercase hex digits (most significant
  first). Text is at most 240 bytes per frame when we send (longer records are split over
  ETB frames); as a receiver we accept longer frames up to ``max_frame_bytes``.
- **Replies.** The receiver ACKs a good frame and NAKs a bad one (malformed, checksum error,
  restricted character in the text, unexpected frame number). A frame whose number is the
  last accepted one is a retransmission after a lost ACK: it is ACKed and ignored. A sender
  retransmits on NAK or on any reply other than ACK/EOT (EOT is the receiver's interrupt
  request, taken as ACK); after six transmissions of one frame without an ACK it aborts.
- **Timeouts** (LIS01-A2 8.5). A sender waits 15 s for a reply to ENQ or to a frame, then
  ends the session with EOT (a frame timeout aborts the message: it must be sent again whole).
  A receiver waits 30 s for a frame or EOT after ACKing ENQ or replying to a frame, then
  discards the incomplete message and returns to neutral. The machine only reports
  :attr:`ASTMLink.deadline` (on the injected clock); the shell calls :meth:`ASTMLink.timeout`.
- **Termination.** EOT ends the session; the line is neutral again.

Messages. E1394 groups records into a *message* that starts with an H record and ends with
an L record. This machine joins the text of accepted frames (ETB continuations merged) and,
when an ETX frame completes an L record, emits :class:`MessageReceived` with the message's
bytes (records separated by CR, exactly as sent). That frame is *not* answered until the
caller says the message is durably stored (:meth:`ASTMLink.message_stored`, then ACK) or not
(:meth:`ASTMLink.message_failed`, then NAK: the instrument retransmits the frame, and the
message is offered again). Text left when a session ends without its L record (EOT after an
aborted transfer, a timeout) is discarded, never delivered: the instrument repeats an aborted
message from its start (LIS01-A2 8.3, "the message must be remembered").

Line noise. The 8-bit additive checksum catches any single substituted, dropped or inserted
byte in a frame (NUL, the one byte whose insertion keeps the sum, is a restricted character).
The machine keeps that guarantee end to end: it never restarts a frame or a session on a byte
that noise could have made (an STX or ENQ inside the transfer phase is refused, not obeyed),
so one corrupted byte leads to a NAK, a timeout or a discarded message, never a wrong one.

Memory is bounded: a frame longer than ``max_frame_bytes`` and a message longer than
``max_message_bytes`` are NAKed without being kept.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final, Literal

ENQ: Final = 0x05
ACK: Final = 0x06
NAK: Final = 0x15
EOT: Final = 0x04
STX: Final = 0x02
ETX: Final = 0x03
ETB: Final = 0x17
CR: Final = 0x0D
LF: Final = 0x0A

MAX_TEXT_BYTES: Final = 240  # text per frame when sending (LIS01-A2 8.3.1: frame <= 247)
SENDER_TIMEOUT_S: Final = 15.0  # waiting for a reply to ENQ or to a frame (8.5.1)
RECEIVER_TIMEOUT_S: Final = 30.0  # waiting for a frame or EOT (8.5.2)
BUSY_RETRY_S: Final = 10.0  # after a NAK to our ENQ (8.2.4)
CONTENTION_RETRY_S: Final = {"computer": 20.0, "instrument": 1.0}  # 8.2.6
MAX_ATTEMPTS: Final = 6  # transmissions of one frame before the sender aborts (8.3.5)
DEFAULT_MAX_FRAME_BYTES: Final = 64 * 1024
DEFAULT_MAX_MESSAGE_BYTES: Final = 16 * 1024 * 1024

# LIS01-A2 8.3.1: these may not appear in frame text. NUL is added: it would let an inserted
# byte pass the additive checksum unnoticed, and no E1394 text contains it.
RESTRICTED: Final = frozenset({0x00, 0x01, STX, ETX, EOT, ENQ, ACK, 0x10, NAK, 0x16, ETB, LF,
                               0x11, 0x12, 0x13, 0x14})
_HEX: Final = b"0123456789ABCDEFabcdef"

Role = Literal["computer", "instrument"]
Clock = Callable[[], float]
RejectReason = Literal["malformed", "checksum", "restricted-character", "frame-number",
                       "frame-too-large", "message-too-large", "not-stored"]
EndReason = Literal["eot", "timeout", "aborted", "interrupted"]


# -- events ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Transmit:
    """Write these bytes to the line, in order with other Transmit events."""

    data: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"Transmit(<{len(self.data)} bytes>)"


@dataclass(frozen=True, slots=True)
class SessionStarted:
    """A transfer phase began; ``as_sender`` tells which side we are."""

    as_sender: bool


@dataclass(frozen=True, slots=True)
class SessionEnded:
    reason: EndReason


@dataclass(frozen=True, slots=True)
class FrameRejected:
    """We answered a frame with NAK (``reason`` says why; never the content)."""

    number: int | None
    reason: RejectReason


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A complete H..L message. Answer with :meth:`ASTMLink.message_stored` or
    :meth:`ASTMLink.message_failed` before anything else is read."""

    text: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"MessageReceived(<{len(self.text)} bytes>)"


@dataclass(frozen=True, slots=True)
class MessageDiscarded:
    """Text of an unfinished message was dropped (never delivered)."""

    reason: EndReason
    nbytes: int


@dataclass(frozen=True, slots=True)
class Contention:
    """Both sides sent ENQ; ``yielded`` when we gave way (we are the computer system)."""

    yielded: bool


@dataclass(frozen=True, slots=True)
class MessageSent:
    """Every frame of our oldest queued message was acknowledged."""


@dataclass(frozen=True, slots=True)
class SendFailed:
    """Our oldest queued message was abandoned (``reason``); it left the queue."""

    reason: Literal["too-many-naks", "timeout"]


Event = (Transmit | SessionStarted | SessionEnded | FrameRejected | MessageReceived
         | MessageDiscarded | Contention | MessageSent | SendFailed)


class State(enum.Enum):
    NEUTRAL = "neutral"
    RECEIVING = "receiving"  # transfer phase as receiver, waiting for a frame or EOT
    DELIVERING = "delivering"  # a message is out for storage; its frame is not answered yet
    AWAIT_ENQ_REPLY = "await-enq-reply"
    AWAIT_FRAME_REPLY = "await-frame-reply"


class LinkError(Exception):
    """A caller's mistake (never the peer's: nothing the peer sends raises)."""


# -- frames ----------------------------------------------------------------------------------

def checksum(body: bytes | bytearray | memoryview) -> bytes:
    """C1 C2 for ``body`` = the bytes from FN through ETB/ETX inclusive (LIS01-A2 8.3.2)."""
    return b"%02X" % (sum(body) % 256)


def encode_frame(number: int, text: bytes, *, final: bool) -> bytes:
    """One frame: ``STX FN text ETB|ETX C1 C2 CR LF``. ``number`` is taken mod 8."""
    bad = RESTRICTED.intersection(text)
    if bad:
        raise LinkError(f"frame text holds restricted byte 0x{min(bad):02X}")
    body = b"%d" % (number % 8) + text + bytes([ETX if final else ETB])
    return b"\x02" + body + checksum(body) + b"\r\n"


def split_records(message: bytes, max_text: int = MAX_TEXT_BYTES) -> list[tuple[bytes, bool]]:
    """Frame texts for ``message`` as we send it: each record (ending in CR) gets its own
    frames, the last one ETX (``True``), longer records continue over ETB frames."""
    if max_text < 1:
        raise LinkError("max_text must be at least 1")
    records = [r + b"\r" for r in message.rstrip(b"\r").split(b"\r")] if message else []
    frames: list[tuple[bytes, bool]] = []
    for record in records:
        chunks = [record[i:i + max_text] for i in range(0, len(record), max_text)]
        frames += [(chunk, i == len(chunks) - 1) for i, chunk in enumerate(chunks)]
    return frames


def split_messages(text: bytes) -> tuple[list[bytes], bytes]:
    """Cut complete H..L messages off the front of ``text`` (records separated by CR; the
    text ends at a record boundary). Returns the messages and the text left over.

    The field delimiter is the H record's second byte (E1394 7.1.1); without an H record at
    the start, ``|``. An L record is ``L`` followed by that delimiter (or nothing)."""
    messages: list[bytes] = []
    start = 0
    delimiter = _delimiter_at(text, 0)
    pos = 0
    while pos < len(text):
        end = text.find(b"\r", pos)
        record_end = len(text) if end < 0 else end + 1
        if text[pos:pos + 1] == b"L" and (record_end - pos == 1
                                          or text[pos + 1:pos + 2] in (delimiter, b"\r")):
            messages.append(text[start:record_end])
            start = record_end
            delimiter = _delimiter_at(text, start)
        pos = record_end
    return messages, text[start:]


def _delimiter_at(text: bytes, pos: int) -> bytes:
    if text[pos:pos + 1] == b"H" and len(text) > pos + 1:
        return text[pos + 1:pos + 2]
    return b"|"


# -- the machine -------------------------------------------------------------------------------

@dataclass(slots=True)
class LinkCounters:
    """PHI-free counts for status and metrics."""

    sessions: int = 0
    frames: int = 0  # frames accepted (received) or acknowledged (sent)
    naks_sent: int = 0
    naks_received: int = 0
    duplicates: int = 0  # repeated frames ACKed and ignored
    noise_bytes: int = 0  # bytes outside any frame, or in a frame cut short by a new STX
    messages: int = 0  # messages stored (received) or acknowledged (sent)
    discarded: int = 0  # unfinished messages dropped
    contentions: int = 0
    timeouts: int = 0


@dataclass(slots=True)
class _Pending:
    """The ETX frame whose answer waits for storage."""

    number: int
    rollback: bytes
    rest: bytes
    messages: deque[bytes]


class ASTMLink:
    """One end of an ASTM E1381 line; see the module docstring.

    Use::

        link = ASTMLink("computer", clock=loop.time)
        events = link.receive_data(data)     # each read, any size
        events = link.timeout()              # when link.deadline has passed
        events = link.message_stored()       # after a MessageReceived was made durable
        events = link.message_failed()       # ... or could not be

    Every method returns the events it caused, in order; write :class:`Transmit` data out.
    """

    def __init__(self, role: Role, *, clock: Clock,
                 max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
                 max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        if role not in ("computer", "instrument"):
            raise LinkError("role must be 'computer' or 'instrument'")
        self.role: Role = role
        self._clock = clock
        self._max_frame = max_frame_bytes
        self._max_message = max_message_bytes
        self.state = State.NEUTRAL
        self.counters = LinkCounters()
        self._deadline: float | None = None
        self._input = bytearray()
        # receiving
        self._frame: bytearray | None = None
        self._frame_overlong = False
        self._last_number = 0  # last accepted frame number (0 before frame 1: never a dup)
        self._accepted_any = False
        self._text = bytearray()
        self._pending: _Pending | None = None
        # sending
        self._outbox: deque[bytes] = deque()
        self._frames: list[tuple[bytes, bool]] = []
        self._frame_index = 0
        self._send_number = 1
        self._attempts = 0
        self._retry_at: float | None = None

    def __repr__(self) -> str:
        return (f"ASTMLink(role={self.role}, state={self.state.value}, "
                f"buffered={len(self._text)}, queued={len(self._outbox)})")

    # -- inputs -------------------------------------------------------------------------------

    @property
    def deadline(self) -> float | None:
        """When :meth:`timeout` has something to do (on the injected clock), or None."""
        return self._deadline

    @property
    def queued(self) -> int:
        """Messages waiting to be sent (the one in transfer included)."""
        return len(self._outbox)

    @property
    def partial_bytes(self) -> int:
        """Text of an unfinished message held so far (0 between messages)."""
        return len(self._text)

    def receive_data(self, data: bytes | bytearray | memoryview) -> list[Event]:
        """Bytes read from the line. Never raises for anything the peer sends."""
        self._input += data
        events: list[Event] = []
        self._run(events)
        return events

    def timeout(self) -> list[Event]:
        """Act on an expired deadline; a call before the deadline does nothing."""
        events: list[Event] = []
        if self._deadline is None or self._clock() < self._deadline:
            return events
        self._deadline = None
        state = self.state
        if state is State.RECEIVING:
            self.counters.timeouts += 1
            self._end_receiving(events, "timeout")
        elif state is State.AWAIT_ENQ_REPLY:
            # 8.5.1: no reply to ENQ -> termination phase; try again later.
            self.counters.timeouts += 1
            events += [Transmit(bytes([EOT])), SessionEnded("timeout")]
            self._neutral(retry_after=BUSY_RETRY_S)
        elif state is State.AWAIT_FRAME_REPLY:
            self.counters.timeouts += 1
            self._abort_send(events, "timeout")
        elif state is State.NEUTRAL and self._retry_at is not None:
            self._retry_at = None
            if self._outbox:
                self._establish(events)
        self._run(events)
        return events

    def message_stored(self) -> list[Event]:
        """The last :class:`MessageReceived` is durable: go on (ACK once all are stored)."""
        pending = self._require_pending()
        pending.messages.popleft()
        self.counters.messages += 1
        events: list[Event] = []
        if pending.messages:
            events.append(MessageReceived(pending.messages[0]))
            return events
        self._pending = None
        self._text = bytearray(pending.rest)
        self._accept_number(pending.number)
        self._reply(events, ACK)
        self._run(events)
        return events

    def message_failed(self) -> list[Event]:
        """The last :class:`MessageReceived` could not be stored: NAK its frame, so the
        sender retransmits it and the message is offered again."""
        pending = self._require_pending()
        self._pending = None
        self._text = bytearray(pending.rollback)
        events: list[Event] = []
        self._nak(events, pending.number, "not-stored")
        self._run(events)
        return events

    def send(self, message: bytes) -> list[Event]:
        """Queue ``message`` (records separated by CR) for sending; starts establishment
        when the line is neutral. Raises :class:`LinkError` for restricted bytes."""
        frames = split_records(message)
        if not frames:
            raise LinkError("cannot send an empty message")
        for text, _ in frames:
            bad = RESTRICTED.intersection(text)
            if bad:
                raise LinkError(f"message holds restricted byte 0x{min(bad):02X}")
        self._outbox.append(message)
        events: list[Event] = []
        if self.state is State.NEUTRAL and self._retry_at is None:
            self._establish(events)
        return events

    # -- the loop -------------------------------------------------------------------------------

    def _run(self, events: list[Event]) -> None:
        while self._input:
            state = self.state
            if state is State.DELIVERING:
                return  # nothing is read until the pending frame is answered
            if state is State.RECEIVING:
                self._receive_frames(events)
                continue
            byte = self._input[0]
            del self._input[0]
            if state is State.NEUTRAL:
                self._neutral_byte(byte, events)
            elif state is State.AWAIT_ENQ_REPLY:
                self._enq_reply(byte, events)
            else:
                self._frame_reply(byte, events)

    def _neutral_byte(self, byte: int, events: list[Event]) -> None:
        if byte == ENQ:
            self._start_receiving(events)
        else:
            self.counters.noise_bytes += 1  # a neutral line carries nothing but ENQ

    def _start_receiving(self, events: list[Event]) -> None:
        self.counters.sessions += 1
        self.state = State.RECEIVING
        self._frame = None
        self._frame_overlong = False
        self._last_number = 0
        self._accepted_any = False
        self._text = bytearray()
        events.append(SessionStarted(as_sender=False))
        self._reply(events, ACK)

    # -- receiving ------------------------------------------------------------------------------

    def _receive_frames(self, events: list[Event]) -> None:
        buf = self._input
        if self._frame is None:
            # Between frames only STX and EOT mean anything; the rest is line noise.
            skip = 0
            while skip < len(buf) and buf[skip] not in (STX, EOT):
                skip += 1
            if skip:
                self.counters.noise_bytes += skip
                del buf[:skip]
                return
            byte = buf[0]
            del buf[0]
            if byte == STX:
                self._frame = bytearray(b"\x02")
                self._frame_overlong = False
            else:
                self._end_receiving(events, "eot")
            return
        # Inside a frame, only LF (its end) and EOT (the sender gave up on it: after a lost
        # LF it times out and ends the session, 8.5.1) are acted on. Any other control byte,
        # an STX or ENQ included, is kept and makes the frame fail validation (NAK). Taking
        # an inner STX or ENQ as a restart would let one corrupted byte splice the tail of a
        # message onto a new session: frame numbers restart at 1, and a sender whose frame
        # was numbered 0 would see its next frame ("1") accepted.
        end = _find_any(buf, LF, EOT)
        if end >= 0 and buf[end] == EOT:
            self.counters.noise_bytes += len(self._frame) + end
            del buf[:end + 1]
            self._frame = None
            self._frame_overlong = False
            self._end_receiving(events, "eot")
            return
        chunk_end = len(buf) if end < 0 else end + 1
        if not self._frame_overlong and len(self._frame) + chunk_end > self._max_frame:
            self._frame_overlong = True  # keep scanning for its end, keep nothing
            self._frame = bytearray(b"\x02")
        if not self._frame_overlong:
            self._frame += buf[:chunk_end]
        del buf[:chunk_end]
        if end < 0:
            return
        frame, overlong = bytes(self._frame), self._frame_overlong
        self._frame = None
        self._frame_overlong = False
        self._on_frame(frame, overlong, events)

    def _on_frame(self, frame: bytes, overlong: bool, events: list[Event]) -> None:
        if overlong:
            self._nak(events, None, "frame-too-large")
            return
        # frame = STX FN text term C1 C2 CR LF
        if (len(frame) < 7 or frame[-2] != CR or frame[-5] not in (ETX, ETB)
                or not 0x30 <= frame[1] <= 0x37 or frame[-4] not in _HEX
                or frame[-3] not in _HEX):
            self._nak(events, None, "malformed")
            return
        number = frame[1] - 0x30
        if int(frame[-4:-2], 16) != sum(frame[1:-4]) % 256:
            self._nak(events, None, "checksum")
            return
        text = frame[2:-5]
        if not RESTRICTED.isdisjoint(text):
            self._nak(events, number, "restricted-character")
            return
        if number != (self._last_number + 1) % 8:
            if self._accepted_any and number == self._last_number:
                # 8.3.4: our ACK was lost and the sender repeated the frame.
                self.counters.duplicates += 1
                self._reply(events, ACK)
            else:
                self._nak(events, number, "frame-number")
            return
        if len(self._text) + len(text) > self._max_message:
            self._nak(events, number, "message-too-large")
            return
        self.counters.frames += 1
        if frame[-5] == ETB:
            self._text += text
            self._accept_number(number)
            self._reply(events, ACK)
            return
        combined = bytes(self._text) + text
        messages, rest = split_messages(combined)
        if not messages:
            self._text = bytearray(combined)
            self._accept_number(number)
            self._reply(events, ACK)
            return
        self._pending = _Pending(number, bytes(self._text), rest, deque(messages))
        self.state = State.DELIVERING
        self._deadline = None
        events.append(MessageReceived(messages[0]))

    def _accept_number(self, number: int) -> None:
        self._last_number = number
        self._accepted_any = True

    def _reply(self, events: list[Event], byte: int) -> None:
        events.append(Transmit(bytes([byte])))
        self.state = State.RECEIVING
        self._deadline = self._clock() + RECEIVER_TIMEOUT_S

    def _nak(self, events: list[Event], number: int | None, reason: RejectReason) -> None:
        self.counters.naks_sent += 1
        events.append(FrameRejected(number, reason))
        self._reply(events, NAK)

    def _end_receiving(self, events: list[Event], reason: EndReason) -> None:
        leftover = len(self._text) + (len(self._frame) if self._frame else 0)
        if self._text:
            self.counters.discarded += 1
            events.append(MessageDiscarded(reason, leftover))
        self._text = bytearray()
        self._frame = None
        events.append(SessionEnded(reason))
        retry_at = self._retry_at
        self._neutral()
        if self._outbox:
            if retry_at is not None and retry_at > self._clock():
                # Still inside the wait that followed contention or a busy NAK (8.2.4-8.2.6).
                self._retry_at = self._deadline = retry_at
            else:
                # The line is ours to ask for now (8.2.1: either side may bid when neutral).
                self._establish(events)

    def _require_pending(self) -> _Pending:
        if self.state is not State.DELIVERING or self._pending is None:
            raise LinkError("no message is waiting for a storage outcome")
        return self._pending

    # -- sending --------------------------------------------------------------------------------

    def _establish(self, events: list[Event]) -> None:
        events.append(Transmit(bytes([ENQ])))
        self.state = State.AWAIT_ENQ_REPLY
        self._deadline = self._clock() + SENDER_TIMEOUT_S

    def _enq_reply(self, byte: int, events: list[Event]) -> None:
        if byte == ACK:
            self.counters.sessions += 1
            events.append(SessionStarted(as_sender=True))
            self._send_number = 1
            self._load_message()
            self._transmit_frame(events, first_attempt=True)
        elif byte == NAK:
            self._neutral(retry_after=BUSY_RETRY_S)  # 8.2.4: receiver busy
        elif byte == ENQ:
            self.counters.contentions += 1
            yielded = self.role == "computer"
            events.append(Contention(yielded=yielded))
            # 8.2.6: the computer gives way and answers the instrument's *next* ENQ; the
            # instrument keeps priority and bids again after 1 s. Neither answers this ENQ.
            self._neutral(retry_after=CONTENTION_RETRY_S[self.role])
        else:
            self.counters.noise_bytes += 1  # anything else is not a reply to ENQ

    def _load_message(self) -> None:
        self._frames = split_records(self._outbox[0])
        self._frame_index = 0

    def _transmit_frame(self, events: list[Event], *, first_attempt: bool) -> None:
        self._attempts = 1 if first_attempt else self._attempts + 1
        text, final = self._frames[self._frame_index]
        events.append(Transmit(encode_frame(self._send_number, text, final=final)))
        self.state = State.AWAIT_FRAME_REPLY
        self._deadline = self._clock() + SENDER_TIMEOUT_S

    def _frame_reply(self, byte: int, events: list[Event]) -> None:
        if byte in (ACK, EOT):  # EOT = the receiver asks us to stop soon; it is an ACK
            self.counters.frames += 1
            self._send_number = (self._send_number + 1) % 8
            self._frame_index += 1
            if self._frame_index < len(self._frames):
                self._transmit_frame(events, first_attempt=True)
                return
            self._outbox.popleft()
            self.counters.messages += 1
            events.append(MessageSent())
            if self._outbox and byte == ACK:
                self._load_message()
                self._transmit_frame(events, first_attempt=True)
                return
            events += [Transmit(bytes([EOT])),
                       SessionEnded("eot" if byte == ACK else "interrupted")]
            self._neutral(retry_after=CONTENTION_RETRY_S[self.role] if self._outbox else None)
            return
        self.counters.naks_received += 1  # NAK, or any other byte, means "send it again"
        if self._attempts >= MAX_ATTEMPTS:
            self._abort_send(events, "too-many-naks")
        else:
            self._transmit_frame(events, first_attempt=False)

    def _abort_send(self, events: list[Event], reason: Literal["too-many-naks", "timeout"],
                    ) -> None:
        self._outbox.popleft()
        events += [SendFailed(reason), Transmit(bytes([EOT])), SessionEnded("aborted")]
        self._neutral(retry_after=BUSY_RETRY_S if self._outbox else None)

    def _neutral(self, retry_after: float | None = None) -> None:
        self.state = State.NEUTRAL
        self._frame = None
        if retry_after is None:
            self._retry_at = None
            self._deadline = None
        else:
            self._retry_at = self._deadline = self._clock() + retry_after


def _find_any(buf: bytearray, first: int, second: int) -> int:
    """Index of the first occurrence of either byte, or -1."""
    a = buf.find(first)
    b = buf.find(second)
    if a < 0:
        return b
    if b < 0:
        return a
    return min(a, b)
