"""atheris target: the ASTM E1381 link state machine and E1394 records
(:mod:`adapters.serial.astm_link`, :mod:`edge.astm.records`, :func:`normalize_astm`).

Declared errors: none from the link for anything on the wire (``receive_data`` and
``timeout`` never raise); :class:`edge.astm.errors.ASTMError` from record parsing;
:class:`edge.normalize.NormalizeError` from conversion.
"""

from __future__ import annotations

import contextlib

import _harness
import atheris  # type: ignore[import-untyped]  # no complete stubs

with atheris.instrument_imports():
    from adapters.serial.astm_link import ASTMLink, MessageReceived, encode_frame
    from edge.astm.errors import ASTMError
    from edge.astm.profile import DeviceProfile
    from edge.astm.records import parse_message
    from edge.normalize import NormalizeContext, NormalizeError
    from edge.normalize.astm import normalize_astm

CONTEXT = NormalizeContext("fuzz-facility")
PROFILE = DeviceProfile()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _records(text: bytes) -> None:
    with contextlib.suppress(ASTMError):
        parse_message(text)
    with contextlib.suppress(NormalizeError):
        normalize_astm(text, context=CONTEXT, profile=PROFILE)


def one_input(data: bytes) -> None:
    """First byte: bit 0 picks the records parser (0) or the link (1); bits 1-6 the read
    size (1-64 bytes); bit 7 whether the deadline passes after every third read."""
    if not data:
        return
    head, stream = data[0], data[1:]
    if head & 1 == 0:
        _records(stream)
        return
    step = 1 + (head >> 1) % 64
    clock = Clock()
    link = ASTMLink("computer", clock=clock, max_frame_bytes=512, max_message_bytes=4096)
    for index, start in enumerate(range(0, len(stream), step)):
        for event in link.receive_data(stream[start:start + step]):
            if isinstance(event, MessageReceived):
                _records(event.text)
                if index % 5:
                    link.message_stored()
                else:
                    link.message_failed()
        assert link.partial_bytes <= 4096 + 512
        if head & 0x80 and index % 3 == 2 and link.deadline is not None:
            clock.now = max(clock.now, link.deadline)
            link.timeout()


def seeds() -> list[bytes]:
    message = (b"H|\\^&|||ANALYZER\rP|1||PID-1\rO|1|SPEC-1||^^^GLU|R\r"
               b"R|1|^^^GLU|98|mg/dL|70 to 105|N||F\rL|1|N\r")
    wire = b"\x05" + encode_frame(1, message, final=True) + b"\x04"
    return [b"\x00" + message, b"\x01" + wire, b"\x1f" + wire, b"\x81" + wire]


if __name__ == "__main__":
    _harness.main("astm", one_input, max_len=16 * 1024, seeds=seeds)
