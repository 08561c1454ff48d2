"""An asyncio MLLP client, for operators (``hie-edge send``) and for tests.

::

    async with MLLPClient.connect("127.0.0.1", 2575, timeout=10) as client:
        ack = await client.send(message)             # the raw ACK payload (ER7 bytes)
        acks = await client.send_many(messages)      # pipelined; acks[i] answers messages[i]
    summary = parse_ack(ack)                         # MSA-1, MSA-2, MSA-3, ERR codes

MLLP answers on one connection in the order the messages were sent (the receiver must not
reorder), so the n-th frame back is the answer to the n-th message. The client only moves
bytes; framing is :class:`~adapters.mllp.framing.Framer`'s job.

Timeouts: ``timeout`` bounds connecting (TLS handshake included), each write, and the wait for
each answer (measured from when the client starts waiting for that answer). A timeout, a
framing error or a broken connection leaves the answers that are still owed unknown, so the
client refuses further sends after one (open a new connection and resend what was not
acknowledged).

Errors (all :class:`~adapters.mllp.errors.MLLPError`): :class:`MLLPTimeoutError`,
:class:`PeerClosedError`, :class:`MLLPConnectionError`, :class:`FramingError`; ``parse_ack``
raises :class:`InvalidAckError`.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import ssl as ssl_module
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Final

from adapters.mllp.errors import (
    FramingError,
    InvalidAckError,
    MLLPConnectionError,
    MLLPError,
    MLLPTimeoutError,
    PeerClosedError,
)
from adapters.mllp.framing import (
    DEFAULT_MAX_FRAME_BYTES,
    EndOfStream,
    Frame,
    Framer,
    Garbage,
    NeedData,
    OversizeFrame,
    TruncatedFrame,
    encode_frame,
)

__all__ = [
    "AckSummary",
    "FramingError",
    "InvalidAckError",
    "MLLPClient",
    "MLLPConnectionError",
    "MLLPError",
    "MLLPTimeoutError",
    "PeerClosedError",
    "parse_ack",
]

_READ_SIZE: Final = 64 * 1024
DEFAULT_TIMEOUT: Final = 30.0


class MLLPClient:
    """One MLLP connection. Sends are serialized: concurrent ``send`` calls on one client wait
    for each other, so answers are never mixed up."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
        peer: str = "",
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._timeout = timeout
        self._framer = Framer(max_frame_bytes)
        self._lock = asyncio.Lock()
        self._broken: str | None = None
        self._garbage = 0
        self.peer = peer

    def __repr__(self) -> str:
        state = f"broken: {self._broken}" if self._broken else "open"
        return f"MLLPClient(peer={self.peer!r}, {state})"

    @classmethod
    async def open(
        cls,
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> MLLPClient:
        """Connect (and with ``ssl``, handshake) within ``timeout`` seconds."""
        peer = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, ssl=ssl, server_hostname=server_hostname if ssl else None
                )
        except TimeoutError:
            raise MLLPTimeoutError(
                f"connect to {peer}: no connection within {timeout} s", stage="connect"
            ) from None
        except OSError as exc:  # refused, unreachable, TLS failures (SSLError is an OSError)
            raise MLLPConnectionError(f"connect to {peer}: {type(exc).__name__}: {exc}") from exc
        return cls(reader, writer, timeout=timeout, max_frame_bytes=max_frame_bytes, peer=peer)

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        host: str,
        port: int,
        *,
        ssl: ssl_module.SSLContext | None = None,
        server_hostname: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        max_frame_bytes: int = DEFAULT_MAX_FRAME_BYTES,
    ) -> AsyncIterator[MLLPClient]:
        """:meth:`open` as an ``async with`` block that closes the connection at its end."""
        client = await cls.open(
            host,
            port,
            ssl=ssl,
            server_hostname=server_hostname,
            timeout=timeout,
            max_frame_bytes=max_frame_bytes,
        )
        try:
            yield client
        finally:
            await client.aclose()

    @property
    def garbage_bytes(self) -> int:
        """Bytes the peer sent outside any MLLP block so far (skipped)."""
        return self._garbage

    async def send(self, message: bytes) -> bytes:
        """Send one message and return the payload of the frame that answers it."""
        (ack,) = await self.send_many((message,))
        return ack

    async def send_many(self, messages: Iterable[bytes]) -> list[bytes]:
        """Send all ``messages`` without waiting in between (pipelining) and return their
        answers in the same order.

        Writing and reading run side by side, so a long list cannot deadlock with a receiver
        that stops reading while its answers are not being read.
        """
        frames = [encode_frame(m) for m in messages]
        async with self._lock:
            self._check_usable()
            writing = asyncio.create_task(self._write_all(frames))
            acks: list[bytes] = []
            try:
                for index in range(len(frames)):
                    acks.append(
                        await self._next_answer(pending=len(frames) - index, writing=writing)
                    )
                await writing
            except BaseException as exc:
                self._broken = type(exc).__name__
                raise
            finally:
                if not writing.done():
                    writing.cancel()
                with contextlib.suppress(BaseException):
                    await writing
            return acks

    async def aclose(self) -> None:
        """Close the connection (idempotent); never raises for a peer already gone."""
        self._broken = self._broken or "closed"
        if self._writer.is_closing():
            return
        self._writer.close()
        with contextlib.suppress(OSError, TimeoutError):
            async with asyncio.timeout(self._timeout):
                await self._writer.wait_closed()

    # -- internals ------------------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._broken == "closed":
            raise MLLPConnectionError(f"connection to {self.peer} is closed")
        if self._broken:
            raise MLLPConnectionError(
                f"connection to {self.peer} is unusable after an earlier {self._broken}"
            )

    async def _write_all(self, frames: list[bytes]) -> None:
        for frame in frames:
            self._writer.write(frame)
            try:
                async with asyncio.timeout(self._timeout):
                    await self._writer.drain()
            except TimeoutError:
                raise MLLPTimeoutError(
                    f"write to {self.peer}: peer not reading for {self._timeout} s", stage="write"
                ) from None
            except OSError as exc:
                raise MLLPConnectionError(f"write to {self.peer}: {type(exc).__name__}") from exc

    async def _next_answer(self, *, pending: int, writing: asyncio.Task[None]) -> bytes:
        try:
            async with asyncio.timeout(self._timeout):
                return await self._next_frame(pending, writing)
        except TimeoutError:
            raise MLLPTimeoutError(
                f"no answer from {self.peer} within {self._timeout} s ({pending} still owed)",
                stage="ack",
                pending=pending,
            ) from None

    async def _next_frame(self, pending: int, writing: asyncio.Task[None]) -> bytes:
        framer = self._framer
        while True:
            event = framer.next_event()
            if isinstance(event, Frame):
                return event.payload
            if isinstance(event, NeedData):
                data = await self._read(writing)
                if data:
                    framer.feed(data)
                else:
                    framer.feed_eof()
            elif isinstance(event, Garbage):
                self._garbage += event.nbytes
            elif isinstance(event, TruncatedFrame):
                raise FramingError(f"answer from {self.peer} cut short after {event.nbytes} bytes")
            elif isinstance(event, OversizeFrame):
                raise FramingError(
                    f"answer from {self.peer} is {event.nbytes} bytes, over the"
                    f" {framer.max_frame_bytes}-byte limit"
                )
            elif isinstance(event, EndOfStream):
                raise PeerClosedError(
                    f"{self.peer} closed the connection with {pending} answer(s) still owed",
                    pending=pending,
                )

    async def _read(self, writing: asyncio.Task[None]) -> bytes:
        """Read from the peer; if the writer fails first, raise its error instead of waiting
        for an answer that cannot come."""
        reading = asyncio.ensure_future(self._reader.read(_READ_SIZE))
        try:
            if not writing.done():
                await asyncio.wait({reading, writing}, return_when=asyncio.FIRST_COMPLETED)
            if not reading.done() and writing.done():
                failure = writing.exception()
                if failure is not None:
                    raise failure
            return await reading
        except OSError as exc:
            raise MLLPConnectionError(f"read from {self.peer}: {type(exc).__name__}") from exc
        finally:
            if not reading.done():
                reading.cancel()
                with contextlib.suppress(BaseException):
                    await reading


@dataclass(frozen=True, slots=True)
class AckSummary:
    """What an ACK says: MSA-1, MSA-2, MSA-3 (unescaped) and the table 0357 codes of its ERR
    segments (ERR-3.1 from v2.5, ERR-1.4.1 before). ``text`` is left out of ``repr``: a
    receiver may have put message content in it."""

    code: str
    control_id: str
    text: str = field(default="", repr=False)
    err_codes: tuple[str, ...] = ()

    @property
    def accepted(self) -> bool:
        """AA or CA: the receiver took the message."""
        return self.code in ("AA", "CA")


_SEGMENT_SPLIT: Final = re.compile(r"\r\n|\r|\n")


def parse_ack(payload: bytes) -> AckSummary:
    """Read MSA and ERR from an ACK payload (ER7, as returned by :meth:`MLLPClient.send`).

    Deliberately minimal (split on MSH-1 and the segment terminators): the full ER7 tokenizer
    lives in ``edge.er7``. Raises :class:`InvalidAckError` when there is no MSH or no MSA
    (an MLLP Release 2 commit acknowledgement is not an ACK message: check it with
    :func:`~adapters.mllp.framing.is_commit_ack` first).
    """
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        text = payload.decode("latin-1")
    text = text.lstrip("\ufeff \t\r\n")
    if not text.startswith("MSH") or len(text) < 8:
        raise InvalidAckError("answer does not start with an MSH segment")
    sep = text[3]
    encoding = text[4:].split(sep, 1)[0]
    enc = encoding + "^~\\&"[len(encoding) :] if len(encoding) < 4 else encoding
    component, repetition, escape, subcomponent = enc[0], enc[1], enc[2], enc[3]

    msa: list[str] | None = None
    err_codes: list[str] = []
    for segment in _SEGMENT_SPLIT.split(text):
        fields = segment.split(sep)
        if fields[0] == "MSA" and msa is None:
            msa = fields
        elif fields[0] == "ERR":
            hl7_code = fields[3].split(component, 1)[0] if len(fields) > 3 else ""
            if hl7_code:
                err_codes.append(hl7_code)
            elif len(fields) > 1:  # before v2.5: ERR-1 repeats <seg>^<seq>^<field>^<code&...>
                for eld in fields[1].split(repetition):
                    parts = eld.split(component)
                    if len(parts) > 3 and parts[3]:
                        err_codes.append(parts[3].split(subcomponent, 1)[0])
    if msa is None or len(msa) < 2 or not msa[1]:
        raise InvalidAckError("answer has no MSA segment with an acknowledgement code")
    delimiters = {"F": sep, "S": component, "T": subcomponent, "R": repetition, "E": escape}
    return AckSummary(
        code=msa[1],
        control_id=msa[2] if len(msa) > 2 else "",
        text=_unescape(msa[3], escape, delimiters) if len(msa) > 3 else "",
        err_codes=tuple(err_codes),
    )


def _unescape(value: str, escape: str, delimiters: dict[str, str]) -> str:
    """The five delimiter escapes only (``\\F\\ \\S\\ \\T\\ \\R\\ \\E\\``); others stay as sent."""
    if escape not in value:
        return value
    e = re.escape(escape)
    return re.sub(f"{e}([FSTRE]){e}", lambda m: delimiters[m.group(1)], value)
