"""Splitting blocks into messages (HL7 v2.5 section 2.10.3 batch protocol)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.er7 import ER7Error, parse
from edge.er7.batch import split
from tests.corpus import _is_plain, _split_plain, iter_corpus_files

M1 = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|M1|P|2.5\rPID|1||X\r"
M2 = b"MSH|^~\\&|A|B|C|D|2024||ADT^A01|M2|P|2.5\rPID|1||Y\rPV1|1|I\r"
FHS = b"FHS|^~\\&|SAPP|SFAC|RAPP|RFAC|20240101||FILE1||F-CTRL|F-REF\r"
BHS = b"BHS|^~\\&|SAPP|SFAC|RAPP|RFAC|20240101||BATCH1||B-CTRL|B-REF\r"


def test_one_message_comes_back_untouched() -> None:
    block = b"\xef\xbb\xbf\n" + M1 + b"\r\n"
    result = split(block)
    assert result.messages == (block,)
    assert not result.is_batch


def test_several_messages_in_one_frame() -> None:
    result = split(M1 + M2)
    assert result.messages == (M1, M2)
    assert not result.is_batch


def test_full_batch() -> None:
    block = FHS + BHS + M1 + M2 + b"BTS|2|two\r" + BHS + M1 + b"BTS|1\rFTS|2\r"
    result = split(block)
    assert result.messages == (M1, M2, M1)
    assert result.is_batch
    assert result.file_header is not None
    fh = result.file_header
    assert (fh.segment_id, fh.offset, fh.control_id, fh.reference) == ("FHS", 0, "F-CTRL", "F-REF")
    assert (fh.sending_application, fh.receiving_facility, fh.name) == ("SAPP", "RFAC", "FILE1")
    assert fh.encoding_characters == "^~\\&"
    assert [h.control_id for h in result.batch_headers] == ["B-CTRL", "B-CTRL"]
    assert [(t.count, t.comment) for t in result.batch_trailers] == [("2", "two"), ("1", "")]
    assert result.file_trailer is not None and result.file_trailer.count == "2"
    for message in result.messages:
        parse(message)


def test_message_bytes_are_exact_slices_without_trailing_blank_lines() -> None:
    m1 = M1.replace(b"\r", b"\r\n")
    block = BHS + m1 + b"\r\n\r\n" + M2.replace(b"\r", b"\n") + b"\n\nBTS|2"
    result = split(block)
    assert result.messages == (m1, M2.replace(b"\r", b"\n"))


def test_batch_without_trailers_and_with_lf() -> None:
    result = split((BHS + M1 + M2).replace(b"\r", b"\n"))
    assert len(result.messages) == 2
    assert result.batch_trailers == ()


def test_empty_batch_and_empty_block() -> None:
    assert split(FHS + b"FTS|0\r").messages == ()
    assert split(b"").messages == ()
    assert split(b" \r\n").messages == ()


@pytest.mark.parametrize(
    ("block", "location"),
    [
        (b"garbage\r" + M1, "segment 1"),
        (BHS + b"EVN|A04\r" + M1, "segment 2"),  # segment outside a message
        (BHS + M1 + FHS, "segment 4"),  # FHS not first
        (FHS + M1 + b"FTS|1\r" + M2, "segment 5"),  # after FTS
        (b"FHS|^~\\\\&|A\r" + M1, "segment 1"),  # unusable delimiters (102)
        (b"BHS\r" + M1, "segment 1"),
    ],
)
def test_malformed_blocks(block: bytes, location: str) -> None:
    with pytest.raises(ER7Error) as info:
        split(block)
    assert info.value.location == location
    assert info.value.err_code in (100, 102)


def test_python_hl7_bad_samples_are_rejected(corpora_dir: Path) -> None:
    rejected = 0
    for path in sorted((corpora_dir / "python-hl7").glob("sample_bad_*.hl7")):
        with pytest.raises(ER7Error):
            split(path.read_bytes())
        rejected += 1
    assert rejected >= 5


@given(st.lists(st.sampled_from([M1, M2]), min_size=1, max_size=5), st.booleans())
def test_split_then_join(messages: list[bytes], enveloped: bool) -> None:
    block = b"".join(messages)
    if enveloped:
        block = FHS + BHS + block + b"BTS|%d\rFTS|1\r" % len(messages)
    assert list(split(block).messages) == messages


def test_agrees_with_the_corpus_reader(corpora_dir: Path) -> None:
    """edge.er7.batch and tests.corpus split every plain corpus file the same way."""
    compared = 0
    for path in iter_corpus_files(corpora_dir):
        data = path.read_bytes()
        if not _is_plain(data):
            continue
        try:
            result = split(data)
        except ER7Error:
            continue  # python-hl7's sample_bad_* (tested above)
        expected = _split_plain(data)
        if len(expected) == 1 and not result.is_batch:
            assert result.messages == (data,), path  # a single message comes back whole
        else:
            assert [m.rstrip() for m in result.messages] == [m.rstrip() for m in expected], path
        compared += 1
    assert compared > 950
