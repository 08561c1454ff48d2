"""A simulated laboratory instrument on the far end of a pseudo-terminal (or a TCP socket
standing in for a networked serial server). It writes real ASTM E1381 byte streams and reads
the listener's one-byte replies; waits are on queues, never sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import os
import tty
from dataclasses import dataclass, field
from pathlib import Path

from tests.adapters.serial.astm_support import frame

ENQ, ACK, NAK, EOT = b"\x05", b"\x06", b"\x15", b"\x04"
REPLY_TIMEOUT_S = 20.0  # a safety net against a hung test, not a synchronisation


class Pty:
    """A pseudo-terminal pair in raw mode; ``link`` is a symlink to the slave (the "device
    path" the listener opens), so the device can be unplugged and plugged back."""

    def __init__(self, link: Path) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)  # a full pty buffer must not block the loop
        self.link = link
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        link.symlink_to(os.ttyname(self.slave))
        # The slave stays open on our side too until unplug(), so the listener's open never
        # races the pty's creation.
        self._queue: asyncio.Queue[bytes] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self.master, self._readable)
        self.closed = False

    def _readable(self) -> None:
        try:
            data = os.read(self.master, 4096)
        except OSError:
            data = b""
        if not data:
            self._loop.remove_reader(self.master)
            return
        self._queue.put_nowait(data)

    async def send(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                view = view[os.write(self.master, view):]
            except BlockingIOError:
                await self._writable()

    async def _writable(self) -> None:
        writable: asyncio.Future[None] = self._loop.create_future()

        def ready() -> None:
            if not writable.done():
                writable.set_result(None)

        self._loop.add_writer(self.master, ready)
        try:
            await asyncio.wait_for(writable, REPLY_TIMEOUT_S)
        finally:
            self._loop.remove_writer(self.master)

    async def read(self) -> bytes:
        return await asyncio.wait_for(self._queue.get(), REPLY_TIMEOUT_S)

    def unplug(self) -> None:
        """What pulling a USB adapter does: the device goes away under an open port."""
        if self.closed:
            return
        self.closed = True
        self._loop.remove_reader(self.master)
        os.close(self.master)
        os.close(self.slave)
        with contextlib.suppress(FileNotFoundError):
            self.link.unlink()


class SocketLine:
    """The instrument's side of a ``socket://`` serial server connection."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer

    async def send(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def read(self) -> bytes:
        data = await asyncio.wait_for(self._reader.read(4096), REPLY_TIMEOUT_S)
        assert data, "listener closed the connection"
        return data

    def close(self) -> None:
        self._writer.close()


@dataclass
class Instrument:
    """Speaks ASTM E1381 as the sender, one record per frame."""

    line: Pty | SocketLine
    replies: list[bytes] = field(default_factory=list)
    _pending: bytearray = field(default_factory=bytearray)

    async def reply(self) -> bytes:
        """The listener's next reply byte."""
        while not self._pending:
            self._pending += await self.line.read()
        byte = bytes(self._pending[:1])
        del self._pending[:1]
        self.replies.append(byte)
        return byte

    async def enq(self) -> bytes:
        await self.line.send(ENQ)
        return await self.reply()

    async def send_frame(self, data: bytes) -> bytes:
        await self.line.send(data)
        return await self.reply()

    async def session(self, *messages: bytes, corrupt: frozenset[int] = frozenset(),
                      split: int = 0) -> list[bytes]:
        """ENQ, every record as a frame (frames numbered in ``corrupt`` go first with a
        broken checksum and must be NAKed), EOT. ``split`` > 0 writes each frame in pieces of
        that size. Returns the replies to the frames."""
        assert await self.enq() == ACK
        answers: list[bytes] = []
        number = 1
        for message in messages:
            for record in message.rstrip(b"\r").split(b"\r"):
                good = frame(number, record + b"\r")
                if number in corrupt:
                    bad = good[:3] + bytes([good[3] ^ 0x01]) + good[4:]
                    assert await self.send_frame(bad) == NAK
                pieces = [good[i:i + split] for i in range(0, len(good), split)] if split \
                    else [good]
                for piece in pieces[:-1]:
                    await self.line.send(piece)
                answers.append(await self.send_frame(pieces[-1]))
                number += 1
        await self.line.send(EOT)
        return answers
