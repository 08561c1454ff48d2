"""Opening a serial line with pyserial and moving its bytes on the event loop.

``serial.serial_for_url`` opens device paths (``/dev/ttyUSB0``) and URLs (``socket://``,
``rfc2217://``, ``loop://``) alike. A port with a file descriptor is read with
``loop.add_reader`` and written without blocking; a URL transport without one is read by a
thread doing blocking reads. Either way the rest of the adapter sees one :class:`Port`:
``await read()`` gives the next bytes or raises :class:`PortGone`, ``await write()`` sends.

pyserial's exceptions (``SerialException``, ``OSError``) are translated here, at the boundary
(design.md, "examples to follow" 6).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from adapters.serial.errors import PortGone, PortUnavailable
from edge.config.model import SerialListenerSettings

_READ_SIZE = 4096
_THREAD_POLL_S = 0.2  # a reader thread's blocking read returns this often to see a close


class Port(Protocol):
    """An open serial line."""

    description: str

    async def read(self) -> bytes:
        """The next bytes (never empty). Raises :class:`PortGone` once the line is lost."""

    async def write(self, data: bytes) -> None:
        """Send ``data``. Raises :class:`PortGone` once the line is lost."""

    def close(self) -> None:
        """Release the port; idempotent."""


Opener = Callable[[SerialListenerSettings], Awaitable[Port]]

_PARITY = {"none": "N", "even": "E", "odd": "O", "mark": "M", "space": "S"}


def describe_port(port: str) -> str:
    """How a port is named in logs and origins: ``tty:/dev/ttyUSB0`` or the URL without its
    options (``socket://10.0.0.5:4001``)."""
    if "://" in port:
        return port.split("?", 1)[0]
    return f"tty:{port}"


async def open_port(settings: SerialListenerSettings) -> Port:
    """Open ``settings.port`` with its line settings. Raises :class:`PortUnavailable`."""
    import serial  # imported only when a serial listener is configured

    def do_open() -> Any:
        try:
            return serial.serial_for_url(
                settings.port, baudrate=settings.baudrate, bytesize=settings.bytesize,
                parity=_PARITY[settings.parity], stopbits=settings.stopbits,
                xonxoff=settings.xonxoff, rtscts=settings.rtscts, timeout=_THREAD_POLL_S,
                # A device path is locked (flock) so two daemons cannot share one line.
                exclusive=True if "://" not in settings.port else None)
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PortUnavailable(_reason(exc)) from None

    handle = await asyncio.to_thread(do_open)
    description = describe_port(settings.port)
    try:
        fd = handle.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = None
    if isinstance(fd, int) and fd >= 0:
        return FdPort(handle, fd, description)
    return ThreadPort(handle, description)


def _reason(exc: BaseException) -> str:
    """A PHI-free, path-free reason: the errno name when there is one, else the type."""
    code = getattr(exc, "errno", None)
    if isinstance(code, int) and code in errno.errorcode:
        return errno.errorcode[code]
    return type(exc).__name__


class FdPort:
    """A port with a file descriptor (a tty): reads by ``add_reader``, non-blocking writes."""

    def __init__(self, handle: Any, fd: int, description: str) -> None:
        self._handle = handle
        self._fd = fd
        self.description = description
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes | PortGone] = asyncio.Queue()
        self._gone: PortGone | None = None
        self._closed = False
        self._loop.add_reader(fd, self._on_readable)

    def _on_readable(self) -> None:
        try:
            data = os.read(self._fd, _READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:  # EIO: the other end (USB adapter, pty master) is gone
            self._lost(PortGone(_reason(exc)))
            return
        if not data:
            self._lost(PortGone("end of file"))
            return
        self._queue.put_nowait(data)

    def _lost(self, error: PortGone) -> None:
        if self._gone is None:
            self._gone = error
            self._loop.remove_reader(self._fd)
            self._queue.put_nowait(error)

    async def read(self) -> bytes:
        item = await self._queue.get()
        if isinstance(item, PortGone):
            self._queue.put_nowait(item)  # every later read fails the same way
            raise item
        return item

    async def write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._gone is not None or self._closed:
                raise self._gone or PortGone("closed")
            try:
                written = os.write(self._fd, view)
            except (BlockingIOError, InterruptedError):
                await self._writable()
                continue
            except OSError as exc:
                self._lost(PortGone(_reason(exc)))
                raise self._gone or PortGone(_reason(exc)) from None
            view = view[written:]

    async def _writable(self) -> None:
        # Flow control (XOFF, CTS low) or a full output buffer: wait until the fd drains.
        ready: asyncio.Future[None] = self._loop.create_future()

        def on_writable() -> None:
            if not ready.done():
                ready.set_result(None)

        self._loop.add_writer(self._fd, on_writable)
        try:
            await ready
        finally:
            self._loop.remove_writer(self._fd)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._gone is None:
            self._loop.remove_reader(self._fd)
        with contextlib.suppress(Exception):
            self._handle.close()


class ThreadPort:
    """A URL transport without a file descriptor: a thread does blocking reads (each returns
    within ``_THREAD_POLL_S``, so a close is seen), writes go through a worker thread."""

    def __init__(self, handle: Any, description: str) -> None:
        self._handle = handle
        self.description = description
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[bytes | PortGone] = asyncio.Queue()
        self._stop = threading.Event()
        self._gone: PortGone | None = None
        self._thread = threading.Thread(target=self._reader, name=f"serial:{description}",
                                        daemon=True)
        self._thread.start()

    def _reader(self) -> None:
        while not self._stop.is_set():
            try:
                waiting = self._handle.in_waiting
                data = self._handle.read(max(1, min(int(waiting), _READ_SIZE)))
            except Exception as exc:  # noqa: BLE001 - any failure of the transport ends it
                if not self._stop.is_set():
                    self._post(PortGone(_reason(exc)))
                return
            if data:
                self._post(bytes(data))

    def _post(self, item: bytes | PortGone) -> None:
        with contextlib.suppress(RuntimeError):  # the loop closed under us
            self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def read(self) -> bytes:
        item = await self._queue.get()
        if isinstance(item, PortGone):
            self._gone = item
            self._queue.put_nowait(item)
            raise item
        return item

    async def write(self, data: bytes) -> None:
        if self._gone is not None or self._stop.is_set():
            raise self._gone or PortGone("closed")
        try:
            await asyncio.to_thread(self._handle.write, data)
        except Exception as exc:  # noqa: BLE001 - pyserial raises several unrelated types
            raise PortGone(_reason(exc)) from None

    def close(self) -> None:
        if self._stop.is_set():
            return
        self._stop.set()
        with contextlib.suppress(Exception):
            self._handle.close()
