"""atheris target: the ASTM E1381 link state machine and E1394 records
(:mod:`adapters.serial.astm_link`, :mod:`edge.astm.records`, :func:`normalize_astm`).

Declared errors: none from the link for anything on the wire (``receive_data`` and
``timeout`` never raise); :class:`edge.astm.errors.ASTMError` from record parsing;
:class:`edge.normalize.NormalizeError` from conversion.
"""

from __future__ import annotations

import _harness
import atheris

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
    try:
        parse_message(text)
    except ASTMError:
        pass
    try:
        normalize_astm(text, context=CONTEXT, profile=PROFILE)
    except NormalizeError:
        pass


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    mode = fdp.ConsumeIntInRange(0, 1)
    if mode == 0:
        _records(fdp.ConsumeBytes(fdp.remaining_bytes()))
        return
    clock = Clock()
    link = ASTMLink("computer", clock=clock, max_frame_bytes=512, max_message_bytes=4096)
    while fdp.remaining_bytes():
        action = fdp.ConsumeIntInRange(0, 7)
        if action == 0:  # time passes to the deadline
            if link.deadline is not None:
                clock.now = max(clock.now, link.deadline)
            link.timeout()
            continue
        for event in link.receive_data(fdp.ConsumeBytes(fdp.ConsumeIntInRange(1, 64))):
            if isinstance(event, MessageReceived):
                _records(event.message)
                if fdp.ConsumeBool():
                    link.message_stored()
                else:
                    link.message_failed()
        assert link.partial_bytes <= 4096 + 512


def seeds() -> list[bytes]:
    message = (b"H|\\^&|||ANALYZER\rP|1||PID-1\rO|1|SPEC-1||^^^GLU|R\r"
               b"R|1|^^^GLU|98|mg/dL|70 to 105|N||F\rL|1|N\r")
    wire = b"\x05" + encode_frame(1, message, final=True) + b"\x04"
    # mode 1, then (action, length) pairs driving the bytes in.
    driven = b"\x01" + b"".join(bytes([3, 16]) + wire[i:i + 16] for i in range(0, len(wire), 16))
    return [b"\x00" + message, driven]


if __name__ == "__main__":
    _harness.main("astm", one_input, max_len=16 * 1024, seeds=seeds)
