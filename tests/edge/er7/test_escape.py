"""Escape sequences (HL7 v2.5 section 2.7): one test per sequence, and the round trip."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.er7.delimiters import DEFAULT, Delimiters
from edge.er7.escape import escape, unescape

V27 = Delimiters("|", "^", "~", "\\", "&", "#")
ODD = Delimiters("^", "~", "|", "\\", "&")  # hapi's segmentfinder_a24: MSH^~|\&


@pytest.mark.parametrize(
    ("sent", "text"),
    [
        (r"a\F\b", "a|b"),
        (r"a\S\b", "a^b"),
        (r"a\T\b", "a&b"),
        (r"a\R\b", "a~b"),
        (r"a\E\b", "a\\b"),
        ("\\E\\\\E\\", "\\\\"),
        (r"a\H\bold\N\b", "aboldb"),
        (r"x\X0D\y", "x\ry"),
        (r"x\X0D0A\y", "x\r\ny"),
        (r"x\X41424a\y", "xABJy"),
        (r"x\X\y", "xy"),  # no bytes at all
        (r"line1\.br\line2", "line1\nline2"),
        (r"a\.sp\b", "a\nb"),
        (r"a\.sp 3\b", "a\n\n\nb"),
        (r"a\.sp3\b", "a\n\n\nb"),
        (r"a\.sk 2\b", "a  b"),
        (r"a\.sk\b", "a b"),
        (r"a\.ce\b", "a\nb"),
        (r"\.fi\a\.nf\b", "ab"),
        (r"\.in+4\a\.ti-2\b", "ab"),
        (r"\Zxyz\a", r"\Zxyz\a"),  # locally defined: kept as sent
        (r"a\C2842\b", "ab"),  # ISO 2022 switch: dropped
        (r"a\M2442\b\M2842\c", "abc"),
        (r"a\M244228\b", "ab"),
        (r"a\Q\b", r"a\Q\b"),  # unknown: kept
        (r"a\Xzz\b", r"a\Xzz\b"),  # not hex: kept
        (r"a\X123\b", r"a\X123\b"),  # odd number of digits: kept
        (r"a\.sp 9999999999\b", "a" + "\n" * 99 + "b"),  # capped
        (r"C:\dir", r"C:\dir"),  # a lone escape character is data
        (r"a\\F\b", "a\\|b"),  # "\\" is no sequence; the second "\" opens \F\
        (r"no escapes here", "no escapes here"),
        ("", ""),
    ],
)
def test_unescape(sent: str, text: str) -> None:
    assert unescape(sent, DEFAULT) == text


def test_truncation_escape_uses_declared_character_or_hash() -> None:
    assert unescape(r"12\P\3", V27) == "12#3"
    assert unescape(r"12\P\3", DEFAULT) == "12#3"
    assert unescape(r"12\P\3", Delimiters("|", "^", "~", "\\", "&", "!")) == "12!3"


def test_hex_is_decoded_with_the_message_codec() -> None:
    assert unescape("\\XC3A9\\", DEFAULT, "utf-8") == "é"
    assert unescape("\\XE9\\", DEFAULT, "iso8859-1") == "é"
    assert unescape("\\XE9\\", DEFAULT, "utf-8") == "\ufffd"  # invalid bytes never raise


def test_other_delimiters_are_honoured() -> None:
    assert unescape(r"a\F\b\S\c\R\d", ODD) == "a^b~c|d"
    assert escape("a^b~c|d", ODD) == r"a\F\b\S\c\R\d"


def test_escape_writes_every_delimiter_and_line_break() -> None:
    assert escape("a|b^c&d~e\\f\rg\nh#", DEFAULT) == (r"a\F\b\S\c\T\d\R\e\E\f\X0D\g\X0A\h#")
    assert escape("50#", V27) == "50\\P\\"


TEXT = st.text(st.characters(exclude_categories=("Cs",)))


@given(TEXT)
def test_round_trip_default(text: str) -> None:
    assert unescape(escape(text, DEFAULT), DEFAULT) == text


@given(TEXT, st.sampled_from(["utf-8", "iso8859-1", "cp1252"]))
def test_round_trip_v27_any_ascii_codec(text: str, codec: str) -> None:
    assert unescape(escape(text, V27), V27, codec) == text


@given(TEXT)
def test_escaped_text_holds_no_delimiter_or_line_break(text: str) -> None:
    escaped = escape(text, V27)
    assert not set(escaped) & {"|", "^", "~", "&", "#", "\r", "\n"}


@given(st.text())
def test_unescape_never_raises(value: str) -> None:
    assert isinstance(unescape(value, V27, "utf-8"), str)
