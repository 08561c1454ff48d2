"""Test helpers for the ASTM link: a manual clock, sample E1394 messages, and a simulated
wire between an instrument and the computer system that can corrupt what it carries.

The sample messages are written for these tests after the record layouts of E1394/LIS2-A2
(sections 7-13); the people, ids and values are made up.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

from adapters.serial import astm_link
from adapters.serial.astm_link import ASTMLink

CHEMISTRY = (
    b"H|\\^&|||CHEM-ANALYZER^2.1^SN4711|||||LIS||P|LIS2-A2|20260315083000\r"
    b"P|1||PID-1001||DOE^JANE^Q||19700101|F\r"
    b"O|1|SPEC-5001||^^^GLU\\^^^K\\^^^NA|R|20260315080000|20260315074500||||N||||SERUM\r"
    b"R|1|^^^GLU^Glucose|98|mg/dL|70 to 105|N||F||OPER1|20260315082000|20260315082500|CHEM1\r"
    b"R|2|^^^K^Potassium|5.9|mmol/L|3.5 to 5.1|H||F||OPER1|20260315082000|20260315082500|CHEM1\r"
    b"C|1|I|Hemolyzed sample^possible elevated potassium|G\r"
    b"R|3|^^^NA^Sodium|140|mmol/L|136 to 145|N||F||OPER1|20260315082000|20260315082500|CHEM1\r"
    b"L|1|N\r"
)

# Another instrument with other delimiters (field '!', repeat '~', component '`', escape '%').
HEMATOLOGY = (
    b"H!~`%!!!HEMA-9^1.0!!!!!!!P!E1394-97!20260316101500\r"
    b"P!1!!PID-2002!!ROE`RICHARD!!19851224!M\r"
    b"O!1!SPEC-6002!!```WBC~```HGB!R!!20260316100000\r"
    b"R!1!```WBC!7.2!10*3/uL!4.0 to 10.0!N!!F\r"
    b"R!2!```HGB!11.1!g/dL!13.5 to 17.5!L!!F\r"
    b"L!1!N\r"
)

# A long comment record: more than 240 characters, so it travels in ETB frames.
LONG = (
    b"H|\\^&|||URINE-1\r"
    b"P|1||PID-3003\r"
    b"O|1|SPEC-7003||^^^UA\r"
    b"R|1|^^^COLOR|YELLOW\r"
    b"C|1|I|" + b"sediment microscopy remark " * 20 + b"|G\r"
    b"L|1|N\r"
)

SAMPLES = (CHEMISTRY, HEMATOLOGY, LONG)


def results_message(index: int, results: int = 3) -> bytes:
    """A small distinct message (its specimen id carries ``index``)."""
    lines = [b"H|\\^&|||CHEM-ANALYZER\r", b"P|1||PID-%d\r" % index,
             b"O|1|SPEC-%d||^^^GLU|R\r" % index]
    lines += [b"R|%d|^^^T%d|%d.%d|mmol/L||N||F\r" % (n, n, index, n)
              for n in range(1, results + 1)]
    return b"".join(lines) + b"L|1|N\r"


def frame(number: int, text: bytes, *, final: bool = True) -> bytes:
    """A frame built by hand, independent of the code under test: STX FN text ETX|ETB C1C2
    CR LF, the checksum the sum of FN..ETX mod 256 in two uppercase hex digits."""
    body = str(number % 8).encode() + text + (b"\x03" if final else b"\x17")
    total = 0
    for byte in body:
        total = (total + byte) & 0xFF
    return b"\x02" + body + f"{total:02X}".encode() + b"\r\n"


class ManualClock:
    """A clock the test moves by hand; ``sleep`` waits until it has been moved far enough."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self._changed = asyncio.Condition()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleepers.append((self.now + delay, future))
        async with self._changed:
            self._changed.notify_all()
        await future

    def pending(self) -> list[float]:
        """Delays (from now) of the sleeps still waiting."""
        return [when - self.now for when, f in self._sleepers if not f.done()]

    async def wait_for_sleepers(self, count: int = 1) -> None:
        async with self._changed:
            await self._changed.wait_for(lambda: len(self.pending()) >= count)

    def advance(self, seconds: float) -> None:
        self.now += seconds
        for when, future in self._sleepers:
            if when <= self.now and not future.done():
                future.set_result(None)
        self._sleepers = [(w, f) for w, f in self._sleepers if not f.done()]


class StepClock:
    """A plain number for the sans-I/O machine tests."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


Mutation = Callable[[int, bytes], bytes]  # (transmission number, bytes) -> bytes on the wire


@dataclass
class WireResult:
    stored: list[bytes] = field(default_factory=list)
    sent: int = 0
    failed: int = 0
    discarded: int = 0
    naks: int = 0
    steps: int = 0


def converse(instrument: ASTMLink, computer: ASTMLink, clock: StepClock, *,
             to_computer: Mutation | None = None, to_instrument: Mutation | None = None,
             store: Callable[[bytes], bool] | None = None,
             first: list[astm_link.Event] | None = None, max_steps: int = 20_000,
             ) -> WireResult:
    """Run two links against each other until both are idle: bytes move whole (one Transmit
    at a time, possibly mutated); when nothing moves, the clock jumps to the next deadline."""
    result = WireResult()
    outbound: list[tuple[str, bytes]] = []
    counts = {"instrument": 0, "computer": 0}
    links = {"instrument": instrument, "computer": computer}

    def take(events: list[astm_link.Event], source: str) -> None:
        for event in events:
            if isinstance(event, astm_link.Transmit):
                outbound.append((source, event.data))
            elif isinstance(event, astm_link.MessageReceived):
                ok = store(event.text) if store else True
                if ok:
                    result.stored.append(event.text)
                link = links[source]
                take(link.message_stored() if ok else link.message_failed(), source)
            elif isinstance(event, astm_link.MessageSent):
                result.sent += 1
            elif isinstance(event, astm_link.SendFailed):
                result.failed += 1
            elif isinstance(event, astm_link.MessageDiscarded):
                result.discarded += 1
            elif isinstance(event, astm_link.FrameRejected):
                result.naks += 1

    take(first or [], "instrument")
    while result.steps < max_steps:
        result.steps += 1
        if outbound:
            source, data = outbound.pop(0)
            counts[source] += 1
            if source == "instrument":
                data = to_computer(counts[source], data) if to_computer else data
                take(computer.receive_data(data), "computer")
            else:
                data = to_instrument(counts[source], data) if to_instrument else data
                take(instrument.receive_data(data), "instrument")
            continue
        deadlines = [d for d in (instrument.deadline, computer.deadline) if d is not None]
        if not deadlines:
            break
        clock.now = max(clock.now, min(deadlines))
        take(instrument.timeout(), "instrument")
        take(computer.timeout(), "computer")
    return result
