"""The sans-I/O MLLP framer: every framing case on its own, then a property that the events do
not depend on how the stream is split into reads."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.mllp.framing import (
    COMMIT_ACK,
    COMMIT_NAK,
    END_OF_STREAM,
    EndOfStream,
    Event,
    Frame,
    Framer,
    Garbage,
    NeedData,
    OversizeFrame,
    TruncatedFrame,
    encode_frame,
    is_commit_ack,
    is_commit_nak,
)

SB, EB, CR = b"\x0b", b"\x1c", b"\x0d"
MSG = b"MSH|^~\\&|LAB|HOSP|EDGE|HOSP|20240101120000||ADT^A01^ADT_A01|MSG0001|P|2.5\rPID|1\r"


def drain(framer: Framer) -> list[Event]:
    return list(framer.events())


def feed_all(framer: Framer, chunks: Iterable[bytes], *, eof: bool = True) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        framer.feed(chunk)
        events.extend(drain(framer))
    if eof:
        framer.feed_eof()
        events.extend(drain(framer))
    return events


def one_byte_chunks(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# --- single cases -------------------------------------------------------------------------


def test_one_frame_round_trips_through_encoder() -> None:
    framer = Framer(1024)
    framer.feed(encode_frame(MSG))
    assert framer.next_event() == Frame(MSG)
    assert isinstance(framer.next_event(), NeedData)
    assert framer.buffered == 0
    assert not framer.in_block


def test_encoder_writes_the_release_1_block() -> None:
    assert encode_frame(b"abc") == b"\x0babc\x1c\x0d"
    assert encode_frame(b"") == b"\x0b\x1c\x0d"


@pytest.mark.parametrize("bad", [b"a\x0bb", b"a\x1cb", b"a\x1c\x0db"])
def test_encoder_refuses_payload_with_block_bytes(bad: bytes) -> None:
    with pytest.raises(ValueError, match="0x0B or 0x1C"):
        encode_frame(bad)


def test_empty_block_is_a_frame() -> None:
    assert feed_all(Framer(10), [SB + EB + CR]) == [Frame(b""), END_OF_STREAM]


def test_garbage_before_start_is_counted_and_reported_before_the_frame() -> None:
    events = feed_all(Framer(1024), [b"\r\n  GET / HTTP/1.0" + encode_frame(MSG)])
    assert events == [Garbage(len(b"\r\n  GET / HTTP/1.0")), Frame(MSG), END_OF_STREAM]


def test_garbage_spread_over_reads_is_reported_once() -> None:
    framer = Framer(1024)
    framer.feed(b"abc")
    assert drain(framer) == []
    assert framer.pending_garbage == 3
    framer.feed(b"de")
    assert drain(framer) == []
    assert framer.pending_garbage == 5
    framer.feed(b"f" + encode_frame(b"x"))
    assert drain(framer) == [Garbage(6), Frame(b"x")]
    assert framer.pending_garbage == 0


def test_garbage_between_frames_and_trailing_garbage_at_eof() -> None:
    stream = encode_frame(b"one") + b"\n" + encode_frame(b"two") + b"\n\n"
    events = feed_all(Framer(1024), [stream])
    assert events == [Frame(b"one"), Garbage(1), Frame(b"two"), Garbage(2), END_OF_STREAM]


def test_many_frames_in_one_read() -> None:
    payloads = [MSG.replace(b"MSG0001", f"MSG{i:04d}".encode()) for i in range(50)]
    events = feed_all(Framer(1024), [b"".join(encode_frame(p) for p in payloads)])
    assert events == [*map(Frame, payloads), END_OF_STREAM]


def test_split_between_end_block_and_carriage_return() -> None:
    framer = Framer(1024)
    framer.feed(SB + b"abc" + EB)
    assert drain(framer) == []
    assert framer.in_block
    framer.feed(CR)
    assert drain(framer) == [Frame(b"abc")]


def test_frame_fed_one_byte_at_a_time() -> None:
    stream = b"xy" + encode_frame(MSG) + encode_frame(b"second")
    events = feed_all(Framer(1024), one_byte_chunks(stream))
    assert events == [Garbage(2), Frame(MSG), Frame(b"second"), END_OF_STREAM]


def test_start_byte_inside_a_frame_truncates_it_and_starts_the_next() -> None:
    stream = SB + b"MSH|half a mess" + SB + MSG + EB + CR
    events = feed_all(Framer(1024), [stream])
    assert events == [TruncatedFrame(len(b"MSH|half a mess")), Frame(MSG), END_OF_STREAM]


def test_restart_split_across_reads() -> None:
    events = feed_all(Framer(1024), [SB + b"abc", b"de", SB + b"ok", EB, CR])
    assert events == [TruncatedFrame(5), Frame(b"ok"), END_OF_STREAM]


def test_lone_end_block_is_payload() -> None:
    payload = b"OBX|1|ED|\x1cX|"
    events = feed_all(Framer(1024), [SB + payload + EB + CR])
    assert events == [Frame(payload), END_OF_STREAM]


def test_lone_end_block_decided_by_the_next_read() -> None:
    events = feed_all(Framer(1024), [SB + b"a" + EB, b"b" + EB, EB, CR])
    assert events == [Frame(b"a\x1cb\x1c"), END_OF_STREAM]


def test_end_block_then_start_block_is_a_truncation() -> None:
    # A sender that omits the CR after EB: the next SB shows the block never ended properly.
    events = feed_all(Framer(1024), [SB + b"abc" + EB + SB + b"def" + EB + CR])
    assert events == [TruncatedFrame(4), Frame(b"def"), END_OF_STREAM]


def test_eof_inside_a_frame_is_a_truncation() -> None:
    framer = Framer(1024)
    framer.feed(SB + b"abcdef" + EB)
    assert drain(framer) == []
    framer.feed_eof()
    assert framer.next_event() == TruncatedFrame(7)
    assert framer.next_event() == END_OF_STREAM
    assert framer.next_event() == END_OF_STREAM
    assert framer.buffered == 0


def test_eof_on_a_clean_boundary() -> None:
    framer = Framer(1024)
    framer.feed(encode_frame(b"a"))
    framer.feed_eof()
    assert drain(framer) == [Frame(b"a"), END_OF_STREAM]


def test_feed_after_eof_is_a_caller_bug() -> None:
    framer = Framer(1024)
    framer.feed_eof()
    with pytest.raises(RuntimeError):
        framer.feed(b"x")


def test_max_frame_bytes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        Framer(0)


# --- size limit ---------------------------------------------------------------------------


def test_frame_of_exactly_the_limit_is_accepted_and_one_more_byte_is_not() -> None:
    events = feed_all(Framer(8), [encode_frame(b"12345678") + encode_frame(b"123456789")])
    assert events == [Frame(b"12345678"), OversizeFrame(9), END_OF_STREAM]


def test_oversize_frame_then_normal_frame_in_small_reads() -> None:
    big = b"B" * 5000
    stream = encode_frame(big) + encode_frame(MSG)
    chunks = [stream[i : i + 7] for i in range(0, len(stream), 7)]
    framer = Framer(1000)
    events: list[Event] = []
    for chunk in chunks:
        framer.feed(chunk)
        events.extend(drain(framer))
        # Never more than the limit (plus a pending EB) held once the reads are drained.
        assert framer.buffered <= 1001
    framer.feed_eof()
    events.extend(drain(framer))
    assert events == [OversizeFrame(5000), Frame(MSG), END_OF_STREAM]


def test_oversize_frame_cut_by_restart_reports_its_full_length() -> None:
    stream = SB + b"A" * 300 + SB + b"ok" + EB + CR
    for chunks in ([stream], [stream[i : i + 50] for i in range(0, len(stream), 50)]):
        assert feed_all(Framer(100), chunks) == [TruncatedFrame(300), Frame(b"ok"), END_OF_STREAM]


def test_oversize_frame_with_lone_end_blocks_and_split_trailer() -> None:
    payload = (b"x" * 60 + EB) * 5  # lone EBs inside, some at read boundaries
    stream = encode_frame(b"")[:1] + payload + EB + CR + encode_frame(b"next")
    chunks = [stream[i : i + 61] for i in range(0, len(stream), 61)]
    assert feed_all(Framer(100), chunks) == [
        OversizeFrame(len(payload)),
        Frame(b"next"),
        END_OF_STREAM,
    ]


def test_eof_inside_an_oversize_frame() -> None:
    framer = Framer(10)
    framer.feed(SB + b"z" * 100)
    assert drain(framer) == []
    assert framer.buffered == 0
    framer.feed_eof()
    assert drain(framer) == [TruncatedFrame(100), END_OF_STREAM]


def test_frames_larger_than_64_kib() -> None:
    big = ("OBX|1|ED|||^AP^^Base64^" + "QUJD" * 40_000 + "\r").encode()
    assert len(big) > 64 * 1024 * 2
    stream = encode_frame(big) + encode_frame(MSG)
    chunks = [stream[i : i + 65536] for i in range(0, len(stream), 65536)]
    assert feed_all(Framer(1 << 20), chunks) == [Frame(big), Frame(MSG), END_OF_STREAM]


def test_large_frame_fed_one_byte_at_a_time() -> None:
    # Exercises the remembered scan position: each byte is looked at once, not once per feed.
    big = b"PID|" + b"0123456789" * 7000 + b"\r"
    assert feed_all(Framer(1 << 20), one_byte_chunks(encode_frame(big))) == [
        Frame(big),
        END_OF_STREAM,
    ]


def test_memory_stays_bounded_when_garbage_without_start_byte_streams_in() -> None:
    framer = Framer(1024)
    chunk = bytes(b for b in range(256) if b != 0x0B) * 256  # every byte value but SB
    for _ in range(200):
        framer.feed(chunk)
        assert drain(framer) == []
        assert framer.buffered == 0
    assert framer.pending_garbage == 200 * len(chunk)
    framer.feed(encode_frame(b"finally"))
    assert drain(framer) == [Garbage(200 * len(chunk)), Frame(b"finally")]


def test_memory_stays_bounded_inside_a_block_that_never_ends() -> None:
    framer = Framer(4096)
    framer.feed(SB)
    for _ in range(500):
        framer.feed(b"y" * 10_000)
        assert drain(framer) == []
        assert framer.buffered <= 4096
    framer.feed(EB + CR)
    assert drain(framer) == [OversizeFrame(5_000_000)]


# --- content is opaque --------------------------------------------------------------------


def test_non_ascii_payloads_pass_through_untouched() -> None:
    utf8 = "PID|1||123^^^HOSP||Müller^Zoë^Ångström||ščž 漢字 🙂\r".encode()
    latin1 = "PID|1||123^^^HOSP||Müller^Zoë\r".encode("latin-1")
    high = bytes(range(0x80, 0x100))  # every byte > 0x7F is data
    stream = b"".join(encode_frame(p) for p in (utf8, latin1, high))
    for chunks in ([stream], one_byte_chunks(stream)):
        assert feed_all(Framer(1024), chunks) == [
            Frame(utf8),
            Frame(latin1),
            Frame(high),
            END_OF_STREAM,
        ]


def test_frame_repr_hides_the_payload() -> None:
    frame = Frame(b"PID|1||SECRET^^^HOSP")
    assert "SECRET" not in repr(frame)
    assert "20 bytes" in repr(frame)
    framer = Framer(1024)
    framer.feed(SB + b"SECRET")
    assert "SECRET" not in repr(framer)


# --- MLLP Release 2 commit acknowledgements ------------------------------------------------


def test_commit_ack_and_nak_blocks() -> None:
    assert COMMIT_ACK == b"\x0b\x06\x1c\x0d"
    assert COMMIT_NAK == b"\x0b\x15\x1c\x0d"
    events = feed_all(Framer(1024), [COMMIT_ACK + encode_frame(MSG) + COMMIT_NAK])
    assert events == [Frame(b"\x06"), Frame(MSG), Frame(b"\x15"), END_OF_STREAM]
    acks = [e.payload for e in events if isinstance(e, Frame)]
    assert [is_commit_ack(p) for p in acks] == [True, False, False]
    assert [is_commit_nak(p) for p in acks] == [False, False, True]
    assert encode_frame(b"\x06") == COMMIT_ACK


# --- split invariance ---------------------------------------------------------------------


def _clean(data: bytes) -> bytes:
    """Make bytes usable as block content: no SB, and no EB CR pair."""
    return data.replace(SB, b"A").replace(EB + CR, EB + b"A")


_frame_item = st.binary(max_size=120).map(lambda b: ("frame", _clean(b)))
_trunc_item = st.binary(max_size=60).map(lambda b: ("trunc", _clean(b)))
_garbage_item = st.binary(min_size=1, max_size=30).map(lambda b: ("garbage", b.replace(SB, b"G")))
_items = st.lists(st.one_of(_frame_item, _frame_item, _trunc_item, _garbage_item), max_size=25)


def _build(items: Sequence[tuple[str, bytes]], limit: int) -> tuple[bytes, list[Event]]:
    """The wire bytes for ``items`` and the events a correct framer must produce for them."""
    wire: list[bytes] = []
    expected: list[Event] = []
    garbage = 0
    for index, (kind, data) in enumerate(items):
        if kind == "garbage":
            # Garbage right after a truncated block would be read as that block's payload.
            if index and items[index - 1][0] == "trunc":
                wire.append(SB + EB + CR)
                expected.append(Frame(b""))
            wire.append(data)
            garbage += len(data)
            continue
        if garbage:
            expected.append(Garbage(garbage))
            garbage = 0
        if kind == "frame":
            wire.append(SB + data + EB + CR)
            expected.append(Frame(data) if len(data) <= limit else OversizeFrame(len(data)))
        else:
            wire.append(SB + data)
            expected.append(TruncatedFrame(len(data)))
    if garbage:
        expected.append(Garbage(garbage))
    expected.append(END_OF_STREAM)
    return b"".join(wire), expected


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(items=_items, limit=st.integers(min_value=1, max_value=100), data=st.data())
def test_any_split_of_the_stream_gives_the_same_events(
    items: list[tuple[str, bytes]], limit: int, data: st.DataObject
) -> None:
    stream, expected = _build(items, limit)
    if data.draw(st.booleans(), label="one byte per read"):
        chunks = one_byte_chunks(stream)
    else:
        cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=30), label="cuts"))
        bounds = [0, *cuts, len(stream)]
        chunks = [stream[a:b] for a, b in itertools.pairwise(bounds)]

    whole = feed_all(Framer(limit), [stream])
    assert whole == expected

    framer = Framer(limit)
    split: list[Event] = []
    for chunk in chunks:
        framer.feed(chunk)
        split.extend(drain(framer))
        assert framer.buffered <= limit + 1  # bounded, whatever the split
    framer.feed_eof()
    split.extend(drain(framer))
    assert split == expected
    assert isinstance(split[-1], EndOfStream)
