"""A sans-I/O MLLP framer: bytes in, events out, no sockets, no clocks.

MLLP Release 1 (HL7 v2.5 Appendix C, "Transport Specification: MLLP, Release 1") wraps each
message in a *block*::

    <SB> payload <EB><CR>        SB = 0x0B, EB = 0x1C, CR = 0x0D

MLLP Release 2 (the reliable transport) keeps the same block and adds two fixed *commit
acknowledgement* blocks, ``<SB><ACK><EB><CR>`` and ``<SB><NAK><EB><CR>`` (ACK = 0x06,
NAK = 0x15); see :data:`COMMIT_ACK`, :data:`COMMIT_NAK`, :func:`is_commit_ack`.

Use (the shape of h11: the caller owns the socket)::

    framer = Framer(max_frame_bytes=16 * 1024 * 1024)
    framer.feed(data)                     # whatever the socket returned, any size
    for event in framer.events():         # until NeedData (or EndOfStream)
        ...
    framer.feed_eof()                     # the peer closed its side
    list(framer.events())                 # flushes Garbage / TruncatedFrame, then EndOfStream

Events, in stream order:

- :class:`Frame` -- one complete payload (the bytes between SB and EB CR).
- :class:`Garbage` -- bytes seen outside any block, reported when the run of garbage ends
  (at the next SB, or at end of stream) so the count does not depend on how reads were split.
- :class:`TruncatedFrame` -- a block that never ended: an SB arrived before EB CR (the sender
  restarted mid-frame), or the stream ended. The partial payload is discarded and never ACKed.
- :class:`OversizeFrame` -- a block whose payload exceeded ``max_frame_bytes``; reported once
  its EB CR arrives. Its bytes were discarded as they came (memory stays bounded) and the
  framer carries on with the next block, so the connection stays usable (the caller answers
  with a reject ACK it can build without the payload).
- :class:`NeedData` -- nothing more can be decided until :meth:`Framer.feed` is called.
- :class:`EndOfStream` -- after :meth:`Framer.feed_eof`, once everything has been reported.

Decisions where the spec leaves room (all independent of how the stream is split):

- A 0x1C that is not followed by 0x0D is kept as payload. Release 1 says payload bytes are
  > 0x1F or CR, so a lone EB is already a sender's error; ending the block there would cut
  the message at a guess, and keeping it lets the message reach the inbox, where the ER7
  parser can reject it with an ACK the sender can act on. Only the exact pair EB CR ends a block.
- A 0x0B inside a block always starts a new block (Release 1: SB cannot occur in payload),
  so a sender that reconnects logically without closing does not lose its next message.
- Payload bytes are never interpreted: any encoding (UTF-8, ISO-8859-1, bytes > 0x7F) passes
  through untouched.

Cost: each byte is scanned once (the scan position is remembered between feeds), and bytes
are copied only into the final payload, so a stream fed one byte at a time is still O(n).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

START_BLOCK: Final = 0x0B
END_BLOCK: Final = 0x1C
CARRIAGE_RETURN: Final = 0x0D
ACK_BYTE: Final = 0x06
NAK_BYTE: Final = 0x15

_SB: Final = bytes([START_BLOCK])
_TRAILER: Final = bytes([END_BLOCK, CARRIAGE_RETURN])

# MLLP Release 2 commit acknowledgement blocks (positive and negative).
COMMIT_ACK: Final = _SB + bytes([ACK_BYTE]) + _TRAILER
COMMIT_NAK: Final = _SB + bytes([NAK_BYTE]) + _TRAILER

DEFAULT_MAX_FRAME_BYTES: Final = 16 * 1024 * 1024

# One scan finds whichever of SB / EB comes first, so no byte of a block is examined twice.
_SB_OR_EB: Final = re.compile(b"[\x0b\x1c]")


@dataclass(frozen=True, slots=True)
class Frame:
    """A complete MLLP block. ``repr`` shows the size only: the payload is PHI."""

    payload: bytes = field(repr=False)

    def __repr__(self) -> str:
        return f"Frame(<{len(self.payload)} bytes>)"


@dataclass(frozen=True, slots=True)
class OversizeFrame:
    """A complete block whose payload (``nbytes``) exceeded the limit; its bytes are gone."""

    nbytes: int


@dataclass(frozen=True, slots=True)
class TruncatedFrame:
    """A block cut short (new SB, or end of stream) after ``nbytes`` payload bytes."""

    nbytes: int


@dataclass(frozen=True, slots=True)
class Garbage:
    """``nbytes`` bytes that arrived outside any block (before an SB, or after EB CR)."""

    nbytes: int


@dataclass(frozen=True, slots=True)
class NeedData:
    """Feed more bytes (or :meth:`Framer.feed_eof`) before asking again."""


@dataclass(frozen=True, slots=True)
class EndOfStream:
    """The stream ended and every byte has been reported. Returned from then on."""


NEED_DATA: Final = NeedData()
END_OF_STREAM: Final = EndOfStream()

Event = Frame | OversizeFrame | TruncatedFrame | Garbage | NeedData | EndOfStream


def encode_frame(payload: bytes) -> bytes:
    """Wrap ``payload`` in an MLLP block.

    Raises ``ValueError`` when the payload contains SB (0x0B) or EB (0x1C): Release 1 forbids
    both in content, and a receiver would split or cut the message. (The framer tolerates a
    lone EB when *receiving*; we do not send one.)
    """
    if START_BLOCK in payload or END_BLOCK in payload:
        raise ValueError("MLLP payload must not contain 0x0B or 0x1C")
    return b"".join((_SB, payload, _TRAILER))


def is_commit_ack(payload: bytes) -> bool:
    """Whether a frame's payload is an MLLP Release 2 positive commit acknowledgement."""
    return payload == bytes([ACK_BYTE])


def is_commit_nak(payload: bytes) -> bool:
    """Whether a frame's payload is an MLLP Release 2 negative commit acknowledgement."""
    return payload == bytes([NAK_BYTE])


class Framer:
    """Incremental MLLP decoder; see the module docstring for the events and the rules.

    Memory: outside a block nothing is kept (garbage is counted and dropped); inside a block
    at most ``max_frame_bytes`` plus one fed chunk is buffered before an oversize block
    switches to counting and dropping.
    """

    __slots__ = ("_buf", "_discarded", "_ended", "_eof", "_garbage", "_in_block", "_max", "_scan")

    def __init__(self, max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        if max_frame_bytes < 1:
            raise ValueError("max_frame_bytes must be at least 1")
        self._max = max_frame_bytes
        # Inside a block: the payload so far (SB already stripped). Outside: unscanned input.
        self._buf = bytearray()
        self._in_block = False
        # Inside a block: where the next SB/EB search starts (everything before it is payload).
        self._scan = 0
        # Inside an oversize block: payload bytes already counted and dropped.
        self._discarded = 0
        # Outside a block: garbage bytes counted but not yet reported.
        self._garbage = 0
        self._eof = False
        self._ended = False

    def __repr__(self) -> str:
        state = "in-block" if self._in_block else "idle"
        return f"Framer(state={state}, buffered={len(self._buf)}, max_frame_bytes={self._max})"

    @property
    def max_frame_bytes(self) -> int:
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes currently held in memory (for tests and metrics)."""
        return len(self._buf)

    @property
    def pending_garbage(self) -> int:
        """Garbage bytes counted since the last block ended, not yet reported as an event.

        A shell may close a connection that sends only garbage once this grows too large."""
        return self._garbage

    @property
    def in_block(self) -> bool:
        """Whether an SB has been seen and its block has not ended yet."""
        return self._in_block

    def feed(self, data: bytes | bytearray | memoryview) -> None:
        """Append bytes received from the peer. Any length, including zero."""
        if self._eof:
            raise RuntimeError("Framer.feed() called after feed_eof()")
        self._buf += data

    def feed_eof(self) -> None:
        """The peer closed its sending side; pending state is flushed as events."""
        self._eof = True

    def events(self) -> Iterator[Event]:
        """Yield events until (not including) :class:`NeedData`; ends after
        :class:`EndOfStream` is yielded once."""
        while True:
            event = self.next_event()
            if isinstance(event, NeedData):
                return
            yield event
            if isinstance(event, EndOfStream):
                return

    def next_event(self) -> Event:
        """Return the next event. Never raises for anything the peer sends."""
        if self._ended:
            return END_OF_STREAM
        if not self._in_block:
            event = self._idle()
            if event is not None:
                return event
        return self._block()

    # Outside a block: find the next SB; everything before it is garbage.
    def _idle(self) -> Event | None:
        buf = self._buf
        start = buf.find(_SB)
        if start < 0:
            self._garbage += len(buf)
            buf.clear()
            if not self._eof:
                return NEED_DATA
            self._ended = True
            if self._garbage:
                garbage, self._garbage = self._garbage, 0
                return Garbage(garbage)
            return END_OF_STREAM
        del buf[: start + 1]
        self._in_block = True
        self._scan = 0
        self._discarded = 0
        garbage = self._garbage + start
        if garbage:
            self._garbage = 0
            return Garbage(garbage)
        return None

    # Inside a block: look for EB CR (end) or SB (restart); lone EBs are payload.
    def _block(self) -> Event:
        buf = self._buf
        while True:
            match = _SB_OR_EB.search(buf, self._scan)
            if match is None:
                self._scan = len(buf)
                self._shed_if_oversize(len(buf))
                return self._need_data_in_block()
            pos = match.start()
            if buf[pos] == START_BLOCK:
                # Release 1: SB never occurs in payload, so the sender restarted; the new
                # block starts here and the old one is reported cut short.
                nbytes = self._discarded + pos
                del buf[: pos + 1]
                self._scan = 0
                self._discarded = 0
                return TruncatedFrame(nbytes)
            if pos + 1 == len(buf):
                # EB is the last byte so far: the next byte decides. Keep the EB buffered.
                self._scan = pos
                self._shed_if_oversize(pos)
                return self._need_data_in_block()
            if buf[pos + 1] != CARRIAGE_RETURN:
                self._scan = pos + 1  # a lone EB is payload (see module docstring)
                continue
            nbytes = self._discarded + pos
            event: Event
            if nbytes > self._max:
                event = OversizeFrame(nbytes)
            else:
                # One copy, straight from the buffer into the payload.
                with memoryview(buf) as view, view[:pos] as part:
                    event = Frame(part.tobytes())
            del buf[: pos + 2]
            self._in_block = False
            self._scan = 0
            self._discarded = 0
            return event

    def _shed_if_oversize(self, known_payload: int) -> None:
        """Drop the first ``known_payload`` buffered bytes once the block is certainly too big."""
        if self._discarded + known_payload > self._max:
            self._discarded += known_payload
            del self._buf[:known_payload]
            self._scan -= known_payload

    def _need_data_in_block(self) -> Event:
        if not self._eof:
            return NEED_DATA
        nbytes = self._discarded + len(self._buf)
        self._buf.clear()
        self._in_block = False
        self._scan = 0
        self._discarded = 0
        self._ended = True
        return TruncatedFrame(nbytes)
