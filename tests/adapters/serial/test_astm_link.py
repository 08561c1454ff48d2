"""The ASTM E1381 link state machine, without ports (design.md, "examples to follow" 1)."""

from __future__ import annotations

from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.serial import astm_link
from adapters.serial.astm_link import (
    ACK,
    ENQ,
    EOT,
    NAK,
    ASTMLink,
    LinkError,
    State,
    checksum,
    encode_frame,
    split_messages,
    split_records,
)
from tests.adapters.serial.astm_support import (
    CHEMISTRY,
    HEMATOLOGY,
    LONG,
    SAMPLES,
    Mutation,
    StepClock,
    converse,
    frame,
    results_message,
)

E = TypeVar("E")
B_ACK, B_NAK, B_ENQ, B_EOT = bytes([ACK]), bytes([NAK]), bytes([ENQ]), bytes([EOT])


def sent(events: list[astm_link.Event]) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, astm_link.Transmit))


def of(kind: type[E], events: list[astm_link.Event]) -> list[E]:
    return [e for e in events if isinstance(e, kind)]


def computer(clock: StepClock | None = None, **kwargs: int) -> ASTMLink:
    return ASTMLink("computer", clock=clock or StepClock(), **kwargs)


def record_frames(message: bytes, start: int = 1) -> list[bytes]:
    """Frames as instruments commonly send them: one record per frame, numbered from
    ``start``; built with the independent :func:`frame` helper."""
    records = [r + b"\r" for r in message.rstrip(b"\r").split(b"\r")]
    return [frame(start + i, r) for i, r in enumerate(records)]


def state_of(link: ASTMLink) -> State:
    return link.state  # read through a call: mypy would keep an earlier assert's narrowing


def open_session(link: ASTMLink) -> None:
    assert sent(link.receive_data(B_ENQ)) == B_ACK


# -- frames and checksums ------------------------------------------------------------------

def test_checksum_is_the_sum_from_fn_through_etx_in_uppercase_hex() -> None:
    assert checksum(b"1A\x03") == b"75"  # 0x31 + 0x41 + 0x03
    assert checksum(bytes([0xFF, 0x02])) == b"01"  # mod 256
    assert encode_frame(1, b"A", final=True) == b"\x021A\x0375\r\n"
    assert encode_frame(9, b"L|1\r", final=False) == frame(1, b"L|1\r", final=False)
    assert encode_frame(8, b"x", final=True)[1:2] == b"0"  # frame numbers are mod 8


def test_encode_frame_refuses_restricted_characters() -> None:
    for byte in (0x02, 0x03, 0x04, 0x05, 0x0A, 0x17, 0x00):
        with pytest.raises(LinkError):
            encode_frame(1, b"ab" + bytes([byte]), final=True)


def test_split_records_puts_each_record_in_its_own_frames_at_most_240_bytes() -> None:
    frames = split_records(LONG)
    assert b"".join(text for text, _ in frames) == LONG
    assert all(len(text) <= 240 for text, _ in frames)
    assert [final for _, final in frames].count(True) == LONG.count(b"\r")
    assert any(not final for _, final in frames)  # the long comment continues over ETB
    for text, final in frames:
        assert final == text.endswith(b"\r")


def test_split_messages_cuts_at_l_records_using_each_messages_field_delimiter() -> None:
    both = CHEMISTRY + HEMATOLOGY + b"H|\\^&|||X\rP|1\r"
    messages, rest = split_messages(both)
    assert messages == [CHEMISTRY, HEMATOLOGY]
    assert rest == b"H|\\^&|||X\rP|1\r"
    # "L" alone, or a record that merely starts with L in another field layout.
    assert split_messages(b"H|\\^&\rL\r") == ([b"H|\\^&\rL\r"], b"")
    assert split_messages(b"H|\\^&\rLX|1\r") == ([], b"H|\\^&\rLX|1\r")
    assert split_messages(b"H!~`%\rL|1\r") == ([], b"H!~`%\rL|1\r")


# -- receiving ------------------------------------------------------------------------------

def test_a_session_is_acknowledged_frame_by_frame_and_the_message_only_once_stored() -> None:
    link = computer()
    events = link.receive_data(B_ENQ)
    assert sent(events) == B_ACK and of(astm_link.SessionStarted, events)
    frames = record_frames(CHEMISTRY)
    for data in frames[:-1]:
        assert sent(link.receive_data(data)) == B_ACK
    events = link.receive_data(frames[-1])
    assert sent(events) == b""  # the L frame waits for the store
    assert [e.text for e in of(astm_link.MessageReceived, events)] == [CHEMISTRY]
    assert link.state is State.DELIVERING and link.deadline is None
    assert sent(link.message_stored()) == B_ACK
    events = link.receive_data(B_EOT)
    assert of(astm_link.SessionEnded, events) == [astm_link.SessionEnded("eot")]
    assert state_of(link) is State.NEUTRAL
    assert link.counters.messages == 1 and link.counters.frames == len(frames)


def test_a_message_sent_in_one_frame_or_split_mid_record_over_etb_frames() -> None:
    link = computer()
    open_session(link)
    events = link.receive_data(frame(1, CHEMISTRY))
    assert [e.text for e in of(astm_link.MessageReceived, events)] == [CHEMISTRY]
    link.message_stored()
    # Frames cut anywhere, ETB continuations, numbers wrapping 7 -> 0.
    chunks = [CHEMISTRY[i:i + 37] for i in range(0, len(CHEMISTRY), 37)]
    for i, chunk in enumerate(chunks):
        events = link.receive_data(frame(2 + i, chunk, final=i == len(chunks) - 1))
    assert [e.text for e in of(astm_link.MessageReceived, events)] == [CHEMISTRY]
    assert sent(link.message_stored()) == B_ACK


def test_bytes_arriving_while_a_message_is_stored_wait_for_the_answer() -> None:
    link = computer()
    open_session(link)
    frames = [*record_frames(HEMATOLOGY), B_EOT]
    events = link.receive_data(b"".join(frames))
    assert len(of(astm_link.MessageReceived, events)) == 1
    assert not of(astm_link.SessionEnded, events)  # EOT not read yet
    events = link.message_stored()
    assert sent(events) == B_ACK and of(astm_link.SessionEnded, events)


def test_checksum_error_is_naked_and_the_retransmission_accepted() -> None:
    link = computer()
    open_session(link)
    good = frame(1, b"H|\\^&|||X\r")
    bad = good[:5] + b"Y" + good[6:]
    events = link.receive_data(bad)
    assert sent(events) == B_NAK
    assert of(astm_link.FrameRejected, events) == [astm_link.FrameRejected(None, "checksum")]
    assert sent(link.receive_data(good)) == B_ACK
    events = link.receive_data(frame(2, b"L|1|N\r"))
    assert [e.text for e in of(astm_link.MessageReceived, events)] == [b"H|\\^&|||X\rL|1|N\r"]


@pytest.mark.parametrize(("data", "reason"), [
    (frame(2, b"H|\\^&\r"), "frame-number"),
    (frame(1, b"H|\\^&\x05\r"), "restricted-character"),
    (frame(1, b"H|\\^&\x02\r"), "restricted-character"),
    (b"\x021H|\\^&\r\x03GG\r\n", "malformed"),
    (b"\x02\r\n", "malformed"),
    (b"\x029H|\r\x03" + checksum(b"9H|\r\x03") + b"\r\n", "malformed"),
])
def test_bad_frames_are_naked_with_a_reason(data: bytes, reason: str) -> None:
    link = computer()
    open_session(link)
    events = link.receive_data(data)
    assert sent(events) == B_NAK
    assert [e.reason for e in of(astm_link.FrameRejected, events)] == [reason]
    assert link.state is State.RECEIVING


def test_a_repeated_frame_is_acked_and_ignored() -> None:
    link = computer()
    open_session(link)
    first = frame(1, b"H|\\^&|||X\r")
    assert sent(link.receive_data(first)) == B_ACK
    assert sent(link.receive_data(first)) == B_ACK  # our ACK was lost; sender repeated
    assert link.counters.duplicates == 1
    events = link.receive_data(frame(2, b"L|1|N\r"))
    assert [e.text for e in of(astm_link.MessageReceived, events)] == [b"H|\\^&|||X\rL|1|N\r"]
    link.message_stored()
    # The L frame repeated after its ACK was lost: not delivered a second time.
    events = link.receive_data(frame(2, b"L|1|N\r"))
    assert sent(events) == B_ACK and not of(astm_link.MessageReceived, events)


def test_a_store_failure_naks_and_the_retransmitted_frame_offers_the_message_again() -> None:
    link = computer()
    open_session(link)
    frames = record_frames(CHEMISTRY)
    for data in frames[:-1]:
        link.receive_data(data)
    first = of(astm_link.MessageReceived, link.receive_data(frames[-1]))
    events = link.message_failed()
    assert sent(events) == B_NAK
    assert of(astm_link.FrameRejected, events)[0].reason == "not-stored"
    again = of(astm_link.MessageReceived, link.receive_data(frames[-1]))
    assert [e.text for e in again] == [e.text for e in first] == [CHEMISTRY]


def test_two_messages_in_one_frame_are_both_stored_before_the_ack() -> None:
    link = computer()
    open_session(link)
    events = link.receive_data(frame(1, CHEMISTRY + HEMATOLOGY))
    assert [e.text for e in of(astm_link.MessageReceived, events)] == [CHEMISTRY]
    events = link.message_stored()
    assert sent(events) == b""
    assert [e.text for e in of(astm_link.MessageReceived, events)] == [HEMATOLOGY]
    assert sent(link.message_stored()) == B_ACK


def test_receiver_timeout_mid_message_discards_it() -> None:
    clock = StepClock()
    link = computer(clock)
    open_session(link)
    assert link.deadline == 30.0
    frames = record_frames(CHEMISTRY)
    for data in frames[:3]:
        link.receive_data(data)
    clock.now = link.deadline - 0.001
    assert link.timeout() == []  # early calls do nothing
    clock.now += 0.001
    events = link.timeout()
    assert of(astm_link.MessageDiscarded, events)[0].reason == "timeout"
    assert link.state is State.NEUTRAL and link.partial_bytes == 0
    # What came late is noise; the next session starts clean.
    link.receive_data(b"".join(frames[3:]))
    open_session(link)
    events = link.receive_data(frame(1, HEMATOLOGY))
    assert [e.text for e in of(astm_link.MessageReceived, events)] == [HEMATOLOGY]


def test_eot_before_the_l_record_discards_the_partial_message() -> None:
    link = computer()
    open_session(link)
    for data in record_frames(CHEMISTRY)[:4]:
        link.receive_data(data)
    events = link.receive_data(B_EOT)
    assert [type(e) for e in events] == [astm_link.MessageDiscarded, astm_link.SessionEnded]
    assert link.counters.discarded == 1


def test_eot_inside_a_frame_ends_the_session_without_an_answer() -> None:
    link = computer()
    open_session(link)
    link.receive_data(frame(1, b"H|\\^&\r"))
    events = link.receive_data(b"\x022P|1" + B_EOT)
    assert sent(events) == b"" and of(astm_link.MessageDiscarded, events)
    assert link.state is State.NEUTRAL


def test_enq_during_transfer_is_not_obeyed() -> None:
    link = computer()
    open_session(link)
    link.receive_data(frame(1, b"H|\\^&\r"))
    assert sent(link.receive_data(B_ENQ)) == b""
    assert link.state is State.RECEIVING and link.partial_bytes > 0


def test_oversize_frames_and_messages_are_refused_without_being_kept() -> None:
    link = computer(max_frame_bytes=64, max_message_bytes=100)
    open_session(link)
    events = link.receive_data(frame(1, b"H|" + b"x" * 100 + b"\r"))
    assert [e.reason for e in of(astm_link.FrameRejected, events)] == ["frame-too-large"]
    for i in range(1, 4):
        assert sent(link.receive_data(frame(i, b"R|" + b"y" * 30 + b"\r"))) == B_ACK
    events = link.receive_data(frame(4, b"R|" + b"y" * 30 + b"\r"))
    assert [e.reason for e in of(astm_link.FrameRejected, events)] == ["message-too-large"]


def test_noise_on_a_neutral_line_is_ignored() -> None:
    link = computer()
    assert link.receive_data(b"\x00\xff garbage \x06\x15") == []
    assert link.counters.noise_bytes == 13 and link.state is State.NEUTRAL


# -- sending, contention -------------------------------------------------------------------

def test_instrument_and_computer_exchange_every_sample() -> None:
    clock = StepClock()
    instrument = ASTMLink("instrument", clock=clock)
    receiver = computer(clock)
    first = [e for m in SAMPLES for e in instrument.send(m)]
    result = converse(instrument, receiver, clock, first=first)
    assert result.stored == list(SAMPLES)
    assert result.sent == len(SAMPLES) and result.failed == 0
    assert instrument.state is receiver.state is State.NEUTRAL


def test_sender_retransmits_on_nak_and_gives_up_after_six_attempts() -> None:
    clock = StepClock()
    link = ASTMLink("instrument", clock=clock)
    assert sent(link.send(b"H|\\^&\rL|1\r")) == B_ENQ
    first = sent(link.receive_data(B_ACK))
    assert first == frame(1, b"H|\\^&\r")
    for _ in range(5):
        assert sent(link.receive_data(B_NAK)) == first
    events = link.receive_data(b"?")  # any other reply counts as a NAK
    assert of(astm_link.SendFailed, events) == [astm_link.SendFailed("too-many-naks")]
    assert sent(events) == B_EOT and link.queued == 0


def test_sender_timeout_aborts_the_message() -> None:
    clock = StepClock()
    link = ASTMLink("instrument", clock=clock)
    link.send(b"H|\\^&\rL|1\r")
    link.receive_data(B_ACK)
    clock.now = 15.0
    events = link.timeout()
    assert of(astm_link.SendFailed, events) == [astm_link.SendFailed("timeout")]
    assert sent(events) == B_EOT


def test_busy_receiver_nak_to_enq_retries_after_ten_seconds() -> None:
    clock = StepClock()
    link = ASTMLink("instrument", clock=clock)
    link.send(b"H|\\^&\rL|1\r")
    assert link.receive_data(B_NAK) == []
    assert link.deadline == 10.0
    clock.now = 10.0
    assert sent(link.timeout()) == B_ENQ


def test_contention_the_computer_yields_then_answers_the_instruments_next_enq() -> None:
    clock = StepClock()
    link = computer(clock)
    assert sent(link.send(b"H|\\^&|||LIS\rQ|1|^SPEC-1\rL|1|N\r")) == B_ENQ
    events = link.receive_data(B_ENQ)  # the instrument bid at the same moment
    assert of(astm_link.Contention, events) == [astm_link.Contention(yielded=True)]
    assert sent(events) == b""  # that ENQ is not answered
    clock.now = 1.0
    assert sent(link.receive_data(B_ENQ)) == B_ACK  # its next one is
    events = link.receive_data(frame(1, HEMATOLOGY))
    assert [e.text for e in of(astm_link.MessageReceived, events)] == [HEMATOLOGY]
    link.message_stored()
    assert sent(link.receive_data(B_EOT)) == b""  # still inside the 20 s wait
    clock.now = 20.0
    assert sent(link.timeout()) == B_ENQ


def test_contention_the_instrument_keeps_priority_and_bids_again_after_one_second() -> None:
    clock = StepClock()
    link = ASTMLink("instrument", clock=clock)
    link.send(CHEMISTRY)
    events = link.receive_data(B_ENQ)
    assert of(astm_link.Contention, events) == [astm_link.Contention(yielded=False)]
    assert link.deadline == 1.0
    clock.now = 1.0
    assert sent(link.timeout()) == B_ENQ


def test_contention_between_two_links_delivers_both_ways() -> None:
    clock = StepClock()
    instrument = ASTMLink("instrument", clock=clock)
    host = computer(clock)
    query = b"H|\\^&|||LIS\rQ|1|^SPEC-5001||^^^ALL\rL|1|N\r"
    host_enq = host.send(query)
    inst_enq = instrument.send(CHEMISTRY)
    # Both ENQs cross on the line.
    crossed = host.receive_data(sent(inst_enq)) + instrument.receive_data(sent(host_enq))
    assert [e.yielded for e in of(astm_link.Contention, crossed)] == [True, False]
    result = converse(instrument, host, clock)
    # The instrument's results first; after its 20 s wait the computer's query goes the
    # other way.
    assert result.stored == [CHEMISTRY, query]
    assert clock.now >= 20.0


def test_link_refuses_caller_mistakes() -> None:
    link = computer()
    with pytest.raises(LinkError):
        link.message_stored()
    with pytest.raises(LinkError):
        link.send(b"")
    with pytest.raises(LinkError):
        link.send(b"H|\\^&\x03\r")
    with pytest.raises(LinkError):
        ASTMLink("printer", clock=StepClock())  # type: ignore[arg-type]


def test_reprs_show_no_content() -> None:
    event = astm_link.MessageReceived(CHEMISTRY)
    assert b"DOE".decode() not in repr(event) and str(len(CHEMISTRY)) in repr(event)
    assert "DOE" not in repr(astm_link.Transmit(CHEMISTRY))


# -- properties ------------------------------------------------------------------------------

def session_bytes(messages: list[bytes]) -> bytes:
    """What an instrument sends for ``messages`` when every reply is ACK."""
    frames = [f for m in messages for f in split_records(m)]
    return B_ENQ + b"".join(encode_frame(i + 1, text, final=final)
                            for i, (text, final) in enumerate(frames)) + B_EOT


def run_receiver(chunks: list[bytes]) -> tuple[bytes, list[bytes], list[str]]:
    link = computer()
    replies = bytearray()
    stored: list[bytes] = []
    kinds: list[str] = []
    for chunk in chunks:
        pending = link.receive_data(chunk)
        while pending:
            event = pending.pop(0)
            kinds.append(type(event).__name__)
            if isinstance(event, astm_link.Transmit):
                replies += event.data
            elif isinstance(event, astm_link.MessageReceived):
                stored.append(event.text)
                pending += link.message_stored()
    return bytes(replies), stored, kinds


@settings(max_examples=150, deadline=None)
@given(st.lists(st.sampled_from(SAMPLES), min_size=1, max_size=3), st.data())
def test_any_split_of_the_stream_gives_the_same_outcome(messages: list[bytes],
                                                        data: st.DataObject) -> None:
    stream = session_bytes(messages)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=40)))
    chunks = [stream[a:b] for a, b in zip([0, *cuts], [*cuts, len(stream)], strict=True)]
    whole = run_receiver([stream])
    assert run_receiver(chunks) == whole
    replies, stored, _ = whole
    assert stored == messages
    assert set(replies) == {ACK}


Corruption = tuple[str, int, int]  # (kind, position, byte)


def corrupt(plan: dict[int, Corruption], *, replies: bool = False) -> Mutation:
    """Transmission number -> at most one byte substituted, dropped or inserted. On the reply
    path a substitution never makes ACK or EOT: E1381 has no protection there (a stray ACK
    makes the sender skip a frame), and that is not what this property is about."""

    def mutate(number: int, data: bytes) -> bytes:
        if number not in plan or not data:
            return data
        kind, position, value = plan[number]
        at = position % len(data)
        if kind == "substitute":
            new = data[at] ^ (value or 1)
            if replies and new in (ACK, EOT):
                new = NAK if data[at] != NAK else 0x3F
            return data[:at] + bytes([new]) + data[at + 1:]
        if kind == "drop":
            return data[:at] + data[at + 1:]
        return data[:at] + bytes([value]) + data[at:]

    return mutate


def corruptions(kinds: list[str]) -> st.SearchStrategy[dict[int, Corruption]]:
    return st.dictionaries(
        st.integers(1, 60),
        st.tuples(st.sampled_from(kinds), st.integers(0, 10_000), st.integers(0, 255)),
        max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(0, 50), min_size=1, max_size=4, unique=True),
       corruptions(["substitute", "drop", "insert"]), corruptions(["substitute", "drop"]))
def test_line_noise_never_stores_a_wrong_message(indexes: list[int],
                                                 forward: dict[int, Corruption],
                                                 backward: dict[int, Corruption]) -> None:
    """At most one byte changed, dropped or added per transmission, both ways: messages may
    fail (the instrument would send them again) but what is stored is exactly what was sent,
    once, and every message the instrument saw acknowledged was stored."""
    clock = StepClock()
    instrument = ASTMLink("instrument", clock=clock)
    receiver = computer(clock)
    messages = [results_message(i, results=1 + i % 4) for i in indexes]
    first = [e for m in messages for e in instrument.send(m)]
    result = converse(instrument, receiver, clock, first=first,
                      to_computer=corrupt(forward),
                      to_instrument=corrupt(backward, replies=True))
    assert result.steps < 20_000
    for message in result.stored:
        assert message in messages
    assert len(result.stored) == len(set(result.stored))
    assert result.sent + result.failed == len(messages)
    assert result.sent <= len(result.stored)
    assert instrument.queued == 0
