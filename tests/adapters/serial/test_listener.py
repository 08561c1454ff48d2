"""The serial listener over real pseudo-terminals (and a socket:// serial server), with a
simulated instrument. The clock and sleep are injected: timeouts and backoff are driven by
the test, and every wait is on an event or a queue."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from adapters.base import Block
from adapters.serial.listener import SerialListener
from adapters.serial.port import describe_port
from edge.config.model import SerialListenerSettings
from edge.metrics import Metrics
from tests.adapters.serial.astm_support import (
    CHEMISTRY,
    HEMATOLOGY,
    LONG,
    ManualClock,
    frame,
    results_message,
)
from tests.adapters.serial.instrument import ACK, EOT, NAK, Instrument, Pty, SocketLine

pytestmark = pytest.mark.timeout(60)


class Store:
    """A stand-in for the intake: records messages; answers 0x06, or 0x15 when told to."""

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.fail_next = 0

    async def __call__(self, block: Block) -> bytes | None:
        self.blocks.append(block)
        if self.fail_next:
            self.fail_next -= 1
            return b"\x15"
        return b"\x06"

    @property
    def messages(self) -> list[bytes]:
        return [b.payload for b in self.blocks]


@dataclass
class Running:
    listener: SerialListener
    task: asyncio.Task[None]
    store: Store
    clock: ManualClock
    ready: list[list[str]]


@contextlib.asynccontextmanager
async def listening(port: str, *, state: str = "connected",
                    **overrides: object) -> AsyncIterator[Running]:
    settings = SerialListenerSettings.model_validate(
        {"name": "lab", "port": port, "protocol": "astm", "reconnect_initial_s": 1.0,
         "reconnect_max_s": 8.0, **overrides})
    clock = ManualClock()
    store = Store()
    listener = SerialListener(settings, Metrics(), clock=clock, sleep=clock.sleep)
    ready: list[list[str]] = []
    task = asyncio.create_task(listener.run(store, ready.append))
    try:
        await listener.wait_for_state(state)  # type: ignore[arg-type]
        yield Running(listener, task, store, clock, ready)
    finally:
        await listener.aclose(5.0)
        await asyncio.wait_for(task, 10)
    assert listener.state == "closed"


@pytest.fixture
def device(tmp_path: Path) -> Path:
    return tmp_path / "ttyLAB0"


async def test_several_results_over_a_pty_each_message_delivered_once(device: Path) -> None:
    pty = Pty(device)
    try:
        async with listening(str(device)) as run:
            assert run.ready == [[str(device)]]
            instrument = Instrument(pty)
            answers = await instrument.session(CHEMISTRY, HEMATOLOGY)
            assert set(answers) == {ACK}
            await instrument.session(LONG, split=7)  # bytes trickle in, as at 9600 baud
            await run.listener.wait_until(lambda: run.listener.counters.sessions == 2
                                          and run.listener.counters.messages == 3)
            assert run.store.messages == [CHEMISTRY, HEMATOLOGY, LONG]
            assert {b.origin.peer for b in run.store.blocks} == {f"tty:{device}"}
            info = run.listener.describe()
            assert info["kind"] == "serial" and info["state"] == "connected"
            assert info["messages"] == 3 and info["naks"] == 0 and info["reconnects"] == 0
            assert info["frames"] == CHEMISTRY.count(b"\r") + HEMATOLOGY.count(b"\r") + \
                LONG.count(b"\r")
    finally:
        pty.unplug()


async def test_checksum_errors_are_naked_and_the_retransmission_stored(device: Path) -> None:
    pty = Pty(device)
    try:
        async with listening(str(device)) as run:
            instrument = Instrument(pty)
            answers = await instrument.session(CHEMISTRY, corrupt=frozenset({1, 4, 8}))
            assert set(answers) == {ACK}
            assert instrument.replies.count(NAK) == 3
            await run.listener.wait_until(lambda: run.listener.counters.messages == 1)
            assert run.store.messages == [CHEMISTRY]
            assert run.listener.describe()["naks"] == 3
    finally:
        pty.unplug()


async def test_a_store_failure_naks_the_last_frame_and_the_retry_is_stored(device: Path,
                                                                         ) -> None:
    pty = Pty(device)
    try:
        async with listening(str(device)) as run:
            run.store.fail_next = 1
            instrument = Instrument(pty)
            assert await instrument.enq() == ACK
            frames = [frame(i + 1, r + b"\r")
                      for i, r in enumerate(HEMATOLOGY.rstrip(b"\r").split(b"\r"))]
            for data in frames[:-1]:
                assert await instrument.send_frame(data) == ACK
            assert await instrument.send_frame(frames[-1]) == NAK  # not stored: not acked
            assert await instrument.send_frame(frames[-1]) == ACK
            await pty.send(EOT)
            await run.listener.wait_until(lambda: run.listener.counters.sessions == 1
                                          and run.listener.state == "connected"
                                          and run.listener.counters.messages == 1)
            assert run.store.messages == [HEMATOLOGY, HEMATOLOGY]  # offered twice, kept once
    finally:
        pty.unplug()


async def test_timeout_mid_message_discards_it_and_nothing_partial_is_delivered(
        device: Path) -> None:
    pty = Pty(device)
    try:
        async with listening(str(device)) as run:
            instrument = Instrument(pty)
            assert await instrument.enq() == ACK
            records = CHEMISTRY.rstrip(b"\r").split(b"\r")
            for i, record in enumerate(records[:3]):
                assert await instrument.send_frame(frame(i + 1, record + b"\r")) == ACK
            # The instrument goes quiet. After 30 s (E1381 receiver timeout) the partial
            # message is dropped.
            await run.clock.wait_for_sleepers(1)
            assert run.clock.pending() == [30.0]
            run.clock.advance(30.0)
            await run.listener.wait_until(lambda: run.listener.counters.discarded == 1)
            assert run.listener.counters.timeouts == 1
            # The rest arrives late: noise on a neutral line, never appended to anything.
            for i, record in enumerate(records[3:]):
                await pty.send(frame(i + 4, record + b"\r"))
            await pty.send(EOT)
            # The instrument starts over and sends the whole message.
            assert set(await instrument.session(CHEMISTRY)) == {ACK}
            await run.listener.wait_until(lambda: run.listener.counters.messages == 1)
            assert run.store.messages == [CHEMISTRY]
    finally:
        pty.unplug()


async def test_unplugged_port_reconnects_with_backoff_and_carries_on(device: Path) -> None:
    first = Pty(device)
    async with listening(str(device)) as run:
        listener = run.listener
        assert set(await Instrument(first).session(results_message(1))) == {ACK}
        await listener.wait_until(lambda: listener.counters.messages == 1)
        # Mid-message, the USB adapter is pulled out.
        instrument = Instrument(first)
        assert await instrument.enq() == ACK
        assert await instrument.send_frame(frame(1, b"H|\\^&|||X\r")) == ACK
        first.unplug()
        await listener.wait_for_state("disconnected")
        assert listener.describe()["state"] == "disconnected"
        assert listener.counters.discarded == 1  # the half message is gone, not delivered
        await run.clock.wait_for_sleepers(1)
        assert run.clock.pending() == [1.0]
        run.clock.advance(1.0)
        # The device is not back yet: the open fails and the wait doubles.
        await run.clock.wait_for_sleepers(1)
        assert run.clock.pending() == [2.0]
        assert listener.last_error == "ENOENT"
        second = Pty(device)
        try:
            run.clock.advance(2.0)
            await listener.wait_for_state("connected")
            assert listener.reconnects == 1
            assert set(await Instrument(second).session(results_message(2))) == {ACK}
            await listener.wait_until(lambda: listener.counters.messages == 2)
            assert run.store.messages == [results_message(1), results_message(2)]
        finally:
            second.unplug()


async def test_a_missing_device_backs_off_exponentially_up_to_the_maximum(tmp_path: Path,
                                                                         ) -> None:
    async with listening(str(tmp_path / "absent"), state="disconnected") as run:
        delays = []
        for _ in range(6):
            await run.clock.wait_for_sleepers(1)
            [delay] = run.clock.pending()
            delays.append(delay)
            run.clock.advance(delay)
        assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
        assert run.listener.describe()["last_error"] == "ENOENT"
        assert run.ready  # ready at once: the line is this listener's job even when absent


async def test_a_networked_serial_server_via_socket_url(tmp_path: Path) -> None:
    connections: asyncio.Queue[SocketLine] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await connections.put(SocketLine(reader, writer))

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    host, port = server.sockets[0].getsockname()[:2]
    url = f"socket://{host}:{port}"
    try:
        async with listening(url) as run:
            line = await asyncio.wait_for(connections.get(), 20)
            assert set(await Instrument(line).session(CHEMISTRY, corrupt=frozenset({2}))) \
                == {ACK}
            await run.listener.wait_until(lambda: run.listener.counters.messages == 1)
            assert run.store.blocks[0].origin.peer == url
            line.close()  # the serial server drops the connection
            await run.listener.wait_for_state("disconnected")
            await run.clock.wait_for_sleepers(1)
            run.clock.advance(1.0)
            line = await asyncio.wait_for(connections.get(), 20)
            await run.listener.wait_for_state("connected")
            assert set(await Instrument(line).session(HEMATOLOGY)) == {ACK}
            await run.listener.wait_until(lambda: run.listener.counters.messages == 2)
            assert run.store.messages == [CHEMISTRY, HEMATOLOGY]
            assert run.listener.reconnects == 1
            line.close()
    finally:
        server.close()
        await server.wait_closed()


async def test_mllp_over_a_pty_answers_each_frame_in_order(device: Path) -> None:
    pty = Pty(device)
    answers = iter([b"ACK-1", b"ACK-2"])

    async def deliver(block: Block) -> bytes | None:
        return next(answers) if block.payload != b"quiet" else None

    settings = SerialListenerSettings(name="hl7", port=str(device), protocol="mllp")
    listener = SerialListener(settings, Metrics())
    task = asyncio.create_task(listener.run(deliver, lambda _: None))
    try:
        await listener.wait_for_state("connected")
        await pty.send(b"noise\x0bMSH|one\x1c\r\x0bquiet\x1c\r\x0bMSH|two\x1c\r")
        received = b""
        while received.count(b"\x1c\r") < 2:
            received += await pty.read()
        assert received == b"\x0bACK-1\x1c\r\x0bACK-2\x1c\r"
        assert listener.describe()["frames"] == 3
    finally:
        await listener.aclose(5.0)
        await asyncio.wait_for(task, 10)
        pty.unplug()


def test_describe_port_never_shows_url_options() -> None:
    assert describe_port("/dev/ttyUSB0") == "tty:/dev/ttyUSB0"
    assert describe_port("rfc2217://10.0.0.5:4001?logging=debug") == "rfc2217://10.0.0.5:4001"
