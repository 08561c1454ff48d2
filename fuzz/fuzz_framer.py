"""atheris target: the MLLP framer (:mod:`adapters.mllp.framing`).

Declared errors: none. Any byte stream, split into reads anywhere, must give events without
raising; a frame never holds SB and never exceeds the limit; what is buffered never exceeds
the limit plus one read (the framer's memory contract); after EOF the events end with
EndOfStream.
"""

from __future__ import annotations

import _harness
import atheris  # type: ignore[import-untyped]  # no complete stubs

with atheris.instrument_imports():
    from adapters.mllp.framing import EndOfStream, Frame, Framer, encode_frame

LIMIT = 4096  # small, so oversize frames are reached often


def one_input(data: bytes) -> None:
    fdp = atheris.FuzzedDataProvider(data)
    reads = fdp.ConsumeIntInRange(1, 64)
    stream = fdp.ConsumeBytes(fdp.remaining_bytes())
    framer = Framer(LIMIT)
    step = max(1, len(stream) // reads)
    for start in range(0, len(stream), step):
        chunk = stream[start:start + step]
        framer.feed(chunk)
        for event in framer.events():
            if isinstance(event, Frame):
                assert b"\x0b" not in event.payload and len(event.payload) <= LIMIT
        assert framer.buffered <= LIMIT + len(chunk) + 2, framer
    framer.feed_eof()
    events = list(framer.events())
    assert events and isinstance(events[-1], EndOfStream)


def seeds() -> list[bytes]:
    messages = _harness.corpus_messages()
    frames = [encode_frame(m) for m in messages
              if b"\x0b" not in m and b"\x1c" not in m]
    # A read count byte first, then the stream: two frames with noise between them.
    return [b"\x08" + f + b"noise" + f[: len(f) // 2] + f for f in frames[:200]]


if __name__ == "__main__":
    _harness.main("framer", one_input, max_len=3 * LIMIT, seeds=seeds)
