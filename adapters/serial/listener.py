"""The serial listener: an asyncio shell that moves bytes between a serial line and a
protocol machine (design.md, "examples to follow" 2 and 3).

- ``protocol = "mllp"``: the MLLP :class:`~adapters.mllp.framing.Framer`; each frame goes to
  ``deliver`` and its answer is written back framed, exactly as over TCP.
- ``protocol = "astm"``: the ASTM E1381 :class:`~adapters.serial.astm_link.ASTMLink` as the
  computer system; each complete E1394 message goes to ``deliver``, and the frame that
  completed it is ACKed only when ``deliver`` answers 0x06 (stored), NAKed otherwise.

The line is not a connection: it is opened once and kept. When it cannot be opened, or fails
while open (a USB adapter unplugged: EIO or end of file; a serial server's socket closed),
the listener closes it, reports ``disconnected`` in :meth:`SerialListener.describe`, and
opens it again after a backoff (``reconnect_initial_s``, doubling up to ``reconnect_max_s``).
Whatever was half received is dropped, never delivered. ``run`` ends only on ``aclose``.

The clock and the sleep are injected (design.md, "examples to follow" 7): the ASTM
machine's deadlines and the backoff use them, so tests drive timeouts without waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol

from adapters.base import Block, Deliver, Origin, Ready
from adapters.mllp.framing import (
    Frame,
    Framer,
    Garbage,
    OversizeFrame,
    TruncatedFrame,
    encode_frame,
)
from adapters.serial import astm_link
from adapters.serial.astm_link import ASTMLink
from adapters.serial.errors import PortGone, PortUnavailable
from adapters.serial.port import Opener, Port, describe_port, open_port
from edge.config.model import SerialListenerSettings
from edge.metrics import Metrics

log = logging.getLogger(__name__)

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]
PortState = Literal["starting", "connected", "disconnected", "closed"]
STORED = b"\x06"  # deliver's answer for an ASTM message once it is durable


class _Driver(Protocol):
    """One protocol on one open port."""

    @property
    def deadline(self) -> float | None: ...

    async def received(self, data: bytes) -> None: ...

    async def timed_out(self) -> None: ...

    def lost(self) -> None: ...


class SerialListener:
    """A ``[[serial]]`` listener; see the module docstring."""

    def __init__(self, settings: SerialListenerSettings, metrics: Metrics, *,
                 opener: Opener = open_port, clock: Clock | None = None,
                 sleep: Sleep = asyncio.sleep) -> None:
        self.name = settings.name
        self._settings = settings
        self._metrics = metrics
        self._opener = opener
        self._clock = clock
        self._sleep = sleep
        self._closing = asyncio.Event()
        self._idle = asyncio.Event()  # set while no message is being delivered
        self._idle.set()
        self.state: PortState = "starting"
        self.last_error = ""
        self.reconnects = 0
        self.counters = astm_link.LinkCounters()  # ASTM counts (frames, naks, ...) over time
        self.mllp_frames = 0
        self._driver: _Driver | None = None
        self._state_changed = asyncio.Condition()

    # -- Adapter interface -------------------------------------------------------------

    async def run(self, deliver: Deliver, ready: Ready) -> None:
        clock = self._clock or asyncio.get_running_loop().time
        settings = self._settings
        # Ready at once: a line whose device is missing at boot is still this listener's job
        # (it keeps trying), and /status shows the port's state.
        ready([settings.port])
        log.info("serial listener started", extra={"fields": {
            "listener": self.name, "port": describe_port(settings.port),
            "protocol": settings.protocol}})
        backoff = settings.reconnect_initial_s
        opened_before = False
        while not self._closing.is_set():
            try:
                port = await self._opener(settings)
            except PortUnavailable as exc:
                await self._set_state("disconnected", exc.reason)
                log.warning("serial port unavailable; retrying", extra={"fields": {
                    "listener": self.name, "port": describe_port(settings.port),
                    "reason": exc.reason, "retry_s": backoff}})
                await self._pause(backoff)
                backoff = min(backoff * 2, settings.reconnect_max_s)
                continue
            if opened_before:
                self.reconnects += 1
            opened_before = True
            backoff = settings.reconnect_initial_s
            reason = await self._serve(port, deliver, clock)
            if self._closing.is_set():
                break
            await self._set_state("disconnected", reason)
            log.warning("serial port lost; reopening", extra={"fields": {
                "listener": self.name, "port": port.description, "reason": reason}})
            await self._pause(backoff)
            backoff = min(backoff * 2, settings.reconnect_max_s)
        await self._set_state("closed", self.last_error)

    async def aclose(self, timeout: float) -> None:
        """Stop reading; a message being delivered finishes (up to ``timeout`` s) first."""
        self._closing.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout)

    def describe(self) -> dict[str, object]:
        settings = self._settings
        info: dict[str, object] = {
            "kind": "serial", "port": describe_port(settings.port),
            "protocol": settings.protocol, "state": self.state,
            "reconnects": self.reconnects}
        if self.last_error:
            info["last_error"] = self.last_error
        if settings.protocol == "astm":
            c = self.counters
            info.update(frames=c.frames, naks=c.naks_sent, duplicates=c.duplicates,
                        messages=c.messages, discarded=c.discarded, noise_bytes=c.noise_bytes,
                        timeouts=c.timeouts, sessions=c.sessions)
        else:
            info.update(frames=self.mllp_frames)
        return info

    async def wait_for_state(self, state: PortState) -> None:
        """Until the port is in ``state`` (for tests and tooling; no polling)."""
        await self.wait_until(lambda: self.state == state)

    async def wait_until(self, predicate: Callable[[], bool]) -> None:
        """Until ``predicate()`` holds; checked after every state change and every chunk of
        bytes or timeout handled (for tests and tooling; no polling)."""
        async with self._state_changed:
            await self._state_changed.wait_for(predicate)

    async def _stepped(self) -> None:
        async with self._state_changed:
            self._state_changed.notify_all()

    # -- internals ---------------------------------------------------------------------

    async def _set_state(self, state: PortState, error: str = "") -> None:
        async with self._state_changed:
            self.state = state
            self.last_error = error
            self._metrics.connections.labels(self.name).set(1 if state == "connected" else 0)
            self._state_changed.notify_all()

    async def _pause(self, delay: float) -> None:
        """Sleep ``delay`` (injected sleep) unless the listener is closed first."""
        sleeper = asyncio.ensure_future(self._sleep(delay))
        closing = asyncio.ensure_future(self._closing.wait())
        await asyncio.wait({sleeper, closing}, return_when=asyncio.FIRST_COMPLETED)
        for task in (sleeper, closing):
            task.cancel()
        await asyncio.gather(sleeper, closing, return_exceptions=True)

    async def _serve(self, port: Port, deliver: Deliver, clock: Clock) -> str:
        """Move bytes until the port fails (returns why) or the listener closes."""
        origin = Origin(self.name, port.description)
        driver: _Driver
        if self._settings.protocol == "astm":
            driver = _ASTMDriver(self, port, deliver, origin, clock)
        else:
            driver = _MLLPDriver(self, port, deliver, origin)
        self._driver = driver
        await self._set_state("connected")
        log.info("serial port open", extra={"fields": {"listener": self.name,
                                                       "port": port.description}})
        closing = asyncio.ensure_future(self._closing.wait())
        reason = "closed"
        try:
            while not self._closing.is_set():
                read = asyncio.ensure_future(port.read())
                waiters: set[asyncio.Future[Any]] = {read, closing}
                timer: asyncio.Future[None] | None = None
                deadline = driver.deadline
                if deadline is not None:
                    timer = asyncio.ensure_future(self._sleep(max(0.0, deadline - clock())))
                    waiters.add(timer)
                done, _ = await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
                for waiter in (read, timer):
                    if waiter is not None and waiter not in done:
                        waiter.cancel()
                try:
                    if read in done:
                        data = read.result()
                        self._idle.clear()
                        try:
                            await driver.received(data)
                        finally:
                            self._idle.set()
                    elif timer is not None and timer in done:
                        self._idle.clear()
                        try:
                            await driver.timed_out()
                        finally:
                            self._idle.set()
                except PortGone as exc:
                    reason = exc.reason
                    driver.lost()
                    break
                await self._stepped()
        finally:
            closing.cancel()
            self._driver = None
            port.close()
        return reason


class _MLLPDriver:
    """HL7 v2 in MLLP blocks over the line: one frame at a time, answered in order."""

    def __init__(self, owner: SerialListener, port: Port, deliver: Deliver,
                 origin: Origin) -> None:
        self._owner = owner
        self._port = port
        self._deliver = deliver
        self._origin = origin
        self._framer = Framer(owner._settings.max_frame_bytes)
        self._metrics = owner._metrics

    @property
    def deadline(self) -> float | None:
        return None

    async def received(self, data: bytes) -> None:
        name = self._owner.name
        self._framer.feed(data)
        for event in self._framer.events():
            block: Block | None = None
            if isinstance(event, Frame):
                block = Block(event.payload, self._origin)
            elif isinstance(event, OversizeFrame):
                self._metrics.frame_errors.labels(name, "oversize").inc()
                block = Block(b"", self._origin, dropped_bytes=event.nbytes)
            elif isinstance(event, Garbage):
                self._metrics.frame_errors.labels(name, "garbage").inc()
                log.warning("bytes outside any MLLP block skipped", extra={"fields": {
                    "listener": name, "peer": self._origin.peer, "bytes": event.nbytes}})
            elif isinstance(event, TruncatedFrame):
                self._metrics.frame_errors.labels(name, "truncated").inc()
                log.warning("truncated MLLP block discarded", extra={"fields": {
                    "listener": name, "peer": self._origin.peer, "bytes": event.nbytes}})
            if block is None:
                continue
            self._owner.mllp_frames += 1
            answer = await self._deliver(block)
            if answer is not None:
                await self._port.write(encode_frame(answer))

    async def timed_out(self) -> None:
        return None

    def lost(self) -> None:
        if self._framer.in_block:
            self._metrics.frame_errors.labels(self._owner.name, "truncated").inc()


class _ASTMDriver:
    """ASTM E1381 as the computer system: the link decides, this writes and delivers."""

    def __init__(self, owner: SerialListener, port: Port, deliver: Deliver, origin: Origin,
                 clock: Clock) -> None:
        self._owner = owner
        self._port = port
        self._deliver = deliver
        self._origin = origin
        self._link = ASTMLink("computer", clock=clock,
                              max_message_bytes=owner._settings.max_frame_bytes)
        # The listener's counters outlive a port: the link counts into them.
        self._link.counters = owner.counters

    @property
    def deadline(self) -> float | None:
        return self._link.deadline

    async def received(self, data: bytes) -> None:
        await self._handle(self._link.receive_data(data))

    async def timed_out(self) -> None:
        await self._handle(self._link.timeout())

    def lost(self) -> None:
        # Nothing half received is delivered: the instrument repeats the message whole.
        if self._link.partial_bytes:
            self._owner.counters.discarded += 1
            log.warning("ASTM session cut by the port's loss; partial message dropped",
                        extra={"fields": {"listener": self._owner.name,
                                          "peer": self._origin.peer}})

    async def _handle(self, events: list[astm_link.Event]) -> None:
        name, peer = self._owner.name, self._origin.peer
        queue = deque(events)
        while queue:
            event = queue.popleft()
            if isinstance(event, astm_link.Transmit):
                await self._port.write(event.data)
            elif isinstance(event, astm_link.MessageReceived):
                queue.extend(await self._store(event.text))
            elif isinstance(event, astm_link.FrameRejected):
                self._owner._metrics.frame_errors.labels(name, f"astm-{event.reason}").inc()
                log.warning("ASTM frame refused (NAK)", extra={"fields": {
                    "listener": name, "peer": peer, "frame": event.number,
                    "reason": event.reason}})
            elif isinstance(event, astm_link.MessageDiscarded):
                self._owner._metrics.frame_errors.labels(name, "astm-discarded").inc()
                log.warning("unfinished ASTM message discarded", extra={"fields": {
                    "listener": name, "peer": peer, "reason": event.reason,
                    "bytes": event.nbytes}})
            elif isinstance(event, astm_link.SessionEnded) and event.reason != "eot":
                log.info("ASTM session ended", extra={"fields": {
                    "listener": name, "peer": peer, "reason": event.reason}})

    async def _store(self, text: bytes) -> list[astm_link.Event]:
        try:
            answer = await self._deliver(Block(text, self._origin))
        except Exception as exc:  # noqa: BLE001 - the frame must get an answer whatever happened
            # The exception's text may quote data: only its type is logged.
            log.error("ASTM delivery failed", extra={"fields": {
                "listener": self._owner.name, "peer": self._origin.peer,
                "error": type(exc).__name__}})
            answer = None
        if answer == STORED:
            return self._link.message_stored()
        return self._link.message_failed()
