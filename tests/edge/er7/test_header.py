"""parse_header: the MSH fields the ACK path needs, and the rejections (HL7 v2.5 2.9.2, 2.14.9)."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.er7 import parse
from edge.er7.errors import ER7Error, HeaderError
from edge.er7.header import parse_header, parse_header_text
from edge.errors import EdgeError
from tests.corpus import iter_all_messages, iter_single_messages

MSH = b"MSH|^~\\&|LAB^1.2.3^ISO|HOSP|EDGE|CONS|20240102030405-0500||ORU^R01^ORU_R01|CTRL-1|P|2.5.1"
PID = b"PID|1||12345^^^HOSP^MR||DOE^JANE||19800101|F"


def test_reads_the_ack_fields() -> None:
    h = parse_header(MSH + b"|||AL|NE||UNICODE UTF-8\r" + PID + b"\r")
    assert h.field_separator == "|"
    assert h.encoding_characters == "^~\\&"
    assert h.component_separator == "^"
    assert h.sending_application == "LAB^1.2.3^ISO"  # composite kept as sent, for the ACK
    assert (h.sending_facility, h.receiving_application, h.receiving_facility) == (
        "HOSP",
        "EDGE",
        "CONS",
    )
    assert h.message_datetime == "20240102030405-0500"
    assert (h.message_code, h.trigger_event, h.message_structure) == ("ORU", "R01", "ORU_R01")
    assert (h.control_id, h.processing_id, h.version_id) == ("CTRL-1", "P", "2.5.1")
    assert (h.accept_ack_type, h.application_ack_type) == ("AL", "NE")
    assert h.enhanced_mode
    assert h.character_sets == ("UNICODE UTF-8",)
    assert h.codec == "utf-8"


@pytest.mark.parametrize("terminator", [b"\r", b"\n", b"\r\n"])
def test_segment_terminators(terminator: bytes) -> None:
    h = parse_header(MSH + terminator + PID + terminator)
    assert h.version_id == "2.5.1"  # MSH-12 is last: nothing of PID leaked into it
    assert not h.enhanced_mode


def test_msh_alone_without_terminator() -> None:
    assert parse_header(MSH).version_id == "2.5.1"


def test_bom_and_leading_whitespace() -> None:
    h = parse_header(b"\xef\xbb\xbf \r\n\t" + MSH + b"\r")
    assert h.control_id == "CTRL-1"
    assert h.codec == "utf-8"  # the BOM says UTF-8


@pytest.mark.parametrize("codec", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_bom(codec: str) -> None:
    raw = (MSH.decode() + "\rPID|1||Zoë\r").encode(codec)
    if codec == "utf-16-be":
        raw = b"\xfe\xff" + raw
    h = parse_header(raw)
    assert h.control_id == "CTRL-1"
    assert h.codec.startswith("utf-")


def test_fifth_encoding_character_v27() -> None:
    h = parse_header(MSH.replace(b"^~\\&", b"^~\\&#") + b"\r")
    assert h.encoding_characters == "^~\\&#"
    assert h.message_code == "ORU"


def test_unusual_delimiters() -> None:
    # hapi-hl7v2/segmentfinder_a24.hl7 uses ^ as the field separator.
    h = parse_header(b"MSH^~|\\&^SENDING^200M^RECEIVING^200^20120918^^ADT~A24~ADT_A24^42^P^2.5\r")
    assert h.field_separator == "^"
    assert h.component_separator == "~"
    assert (h.message_code, h.trigger_event, h.message_structure) == ("ADT", "A24", "ADT_A24")
    assert h.control_id == "42"


@pytest.mark.parametrize(
    ("msh9", "code", "event", "structure"),
    [
        (b"ACK", "ACK", "", ""),
        (b"ADT^A01", "ADT", "A01", ""),
        (b"ADT^^ADT_A01", "ADT", "", "ADT_A01"),
    ],
)
def test_msh9_with_missing_components(msh9: bytes, code: str, event: str, structure: str) -> None:
    h = parse_header(MSH.replace(b"ORU^R01^ORU_R01", msh9))
    assert (h.message_code, h.trigger_event, h.message_structure) == (code, event, structure)


def test_version_id_is_first_component() -> None:
    h = parse_header(MSH.replace(b"|2.5.1", b"|2.5.1^USA^x"))
    assert h.version_id == "2.5.1"


@pytest.mark.parametrize(
    ("msh18", "codec"),
    [
        (b"", "iso8859-1"),
        (b"ASCII", "ascii"),
        (b"8859/1", "iso8859-1"),
        (b"8859/2", "iso8859-2"),
        (b"8859/15", "iso8859-15"),
        (b"UNICODE UTF-8", "utf-8"),
        (b"UNICODE", "utf-8"),
        (b"unicode utf-8", "utf-8"),
        (b"UTF-8~UNICODE", "utf-8"),  # first repetition decides
        # Declared UTF-16 but MSH was read as 8-bit bytes: a mislabel, the fallback applies
        # (real UTF-16 starts with a BOM, see test_utf16_and_utf32_with_bom).
        (b"UNICODE UTF-16", "iso8859-1"),
        (b"GB 18030-2000", "gb18030"),
        (b"BIG-5", "big5"),
        (b"KS X 1001", "euc_kr"),
        (b"ISO IR87", "iso2022_jp"),
        (b"CNS 11643-1992", "iso8859-1"),  # no Python codec: fallback
        (b"EBCDIC", "iso8859-1"),  # not in table 0211: fallback
        (b"~ISO IR87", "iso8859-1"),  # empty first repetition: default set, i.e. fallback
    ],
)
def test_msh18_to_codec(msh18: bytes, codec: str) -> None:
    h = parse_header(MSH + b"||||||" + msh18 + b"\r")
    assert h.codec == codec


def test_fallback_codec_is_configurable_and_canonical() -> None:
    assert parse_header(MSH, fallback_codec="UTF8").codec == "utf-8"
    assert parse_header(MSH, fallback_codec="latin_1").codec == "iso8859-1"
    with pytest.raises(LookupError):
        parse_header(MSH, fallback_codec="no-such-codec")


def test_declared_ascii_with_8bit_bytes_uses_fallback() -> None:
    raw = MSH + b"||||||ASCII\rPID|1||x||M\xfcller\r"
    assert parse_header(raw).codec == "iso8859-1"
    assert parse_header(raw, fallback_codec="cp1252").codec == "cp1252"
    assert parse_header(MSH + b"||||||ASCII\r").codec == "ascii"


def test_header_fields_decoded_with_codec() -> None:
    raw = MSH.replace(b"|HOSP|", "|Hôpital|".encode()) + b"||||||UNICODE UTF-8\r"
    assert parse_header(raw).sending_facility == "Hôpital"
    raw = MSH.replace(b"|HOSP|", "|Hôpital|".encode("latin-1")) + b"||||||8859/1\r"
    assert parse_header(raw).sending_facility == "Hôpital"


def test_shift_jis_second_byte_is_not_a_delimiter() -> None:
    # "ソ" is 0x83 0x5C in Shift_JIS: its second byte is ASCII "\". "ポ" is 0x83 0x7C: "|".
    name = "ソポ".encode("shift_jis")
    assert b"|" in name
    raw = MSH.replace(b"|HOSP|", b"|" + name + b"|") + b"||||||ISO IR14\r"
    h = parse_header(raw)
    assert h.sending_facility == "ソポ"
    assert h.control_id == "CTRL-1"


def test_parse_header_text() -> None:
    h = parse_header_text("\ufeff\n" + MSH.decode() + "||||||8859/1\rPID|1")
    assert h.control_id == "CTRL-1"
    assert h.codec == "iso8859-1"


@pytest.mark.parametrize(
    ("raw", "field", "err_code"),
    [
        (b"", "MSH", 100),
        (b"   \r\n", "MSH", 100),
        (b"PID|1\rMSH|^~\\&|A", "MSH", 100),
        (b"FHS|^~\\&|A\r" + MSH, "MSH", 100),
        (b"MSH", "MSH-1", 101),
        (b"MSH\r" + PID, "MSH-1", 101),
        (b"MSHA^~\\&A", "MSH-1", 102),
        (b"MSH |^~\\&", "MSH-1", 102),
        (b"MSH|", "MSH-2", 101),
        (b"MSH||A|B", "MSH-2", 101),
        (b"MSH|^~\\|A", "MSH-2", 102),  # three characters
        (b"MSH|^~\\&#$|A", "MSH-2", 102),  # six
        (b"MSH|^~\\\\&|A", "MSH-2", 102),  # doubled escape (a Java string not unescaped)
        (b"MSH|^~a&|A", "MSH-2", 102),
        (b"MSH|^ \\&|A", "MSH-2", 102),
        (MSH.replace(b"ORU^R01^ORU_R01", b""), "MSH-9", 101),
        (MSH.replace(b"ORU^R01^ORU_R01", b"^R01"), "MSH-9", 101),
        (MSH.replace(b"CTRL-1", b""), "MSH-10", 101),
        (MSH.replace(b"CTRL-1", b"  "), "MSH-10", 101),
        (MSH.replace(b"|2.5.1", b"|"), "MSH-12", 101),
        (MSH.replace(b"|2.5.1", b"|^USA"), "MSH-12", 101),
        (b"MSH|^~\\&|A|B|C|D|2020||ORU^R01", "MSH-10", 101),  # truncated after MSH-9
        (MSH.replace(b"HOSP", b"H\xffSP") + b"||||||UNICODE UTF-8", "MSH", 102),
    ],
)
def test_rejections(raw: bytes, field: str, err_code: int) -> None:
    with pytest.raises(HeaderError) as info:
        parse_header(raw)
    err = info.value
    assert err.field == field
    assert err.err_code == err_code
    assert err.fault == "peer"
    assert isinstance(err, ER7Error) and isinstance(err, EdgeError)


def test_errors_carry_no_message_content() -> None:
    with pytest.raises(HeaderError) as info:
        parse_header(MSH.replace(b"CTRL-1", b"").replace(b"HOSP", b"SECRET-NAME"))
    assert "SECRET" not in str(info.value)
    assert "LAB" not in repr(info.value)
    assert str(info.value).startswith("MSH-10: ")


@given(st.binary(max_size=300))
def test_arbitrary_bytes_give_header_or_header_error(raw: bytes) -> None:
    with contextlib.suppress(HeaderError):
        parse_header(raw)


@given(st.binary(max_size=200))
def test_arbitrary_bytes_after_a_valid_msh(tail: bytes) -> None:
    try:
        h = parse_header(MSH + tail)
    except HeaderError as err:
        assert err.field.startswith("MSH")
    else:
        assert h.message_code == "ORU"


# ---- the corpora ---------------------------------------------------------------------------

_BOM = b"\xef\xbb\xbf"


def naive_header_problem(raw: bytes) -> str | None:
    """Which MSH field makes the message unacknowledgeable, by a deliberately plain reading
    (latin-1, split the first line), independent of edge.er7's code."""
    raw = raw.removeprefix(_BOM)
    line = re.split(r"[\r\n]", raw.decode("latin-1").lstrip(" \t\r\n"), maxsplit=1)[0]
    if not line.startswith("MSH"):
        return "MSH"
    fs = line[3:4]
    if not fs or fs.isalnum() or not fs.isprintable() or fs.isspace() or ord(fs) > 126:
        return "MSH-1"
    parts = line.split(fs)
    enc = parts[1]
    ok_chars = all(33 <= ord(c) <= 126 and not c.isalnum() for c in enc)
    if len(enc) not in (4, 5) or not ok_chars or len(set(enc + fs)) != len(enc) + 1:
        return "MSH-2"

    def first_component(n: int) -> str:
        value = parts[n - 1] if n - 1 < len(parts) else ""
        return value.split(enc[1])[0].split(enc[0])[0]

    if not first_component(9).strip():
        return "MSH-9"
    if not (parts[9] if len(parts) > 9 else "").strip():
        return "MSH-10"
    if not first_component(12).strip():
        return "MSH-12"
    return None


def test_every_single_corpus_message(corpora_dir: Path) -> None:
    messages = iter_single_messages(corpora_dir)
    assert len(messages) > 900
    accepted = 0
    for mid, raw in messages:
        expected = naive_header_problem(raw)
        try:
            parse_header(raw)
        except HeaderError as err:
            assert err.field == expected, mid
        else:
            assert expected is None, mid
            accepted += 1
    # Most of the corpus is acknowledgeable; the rest are fragments or broken on purpose.
    assert accepted > 700


def test_header_agrees_with_the_tokenizer(corpora_dir: Path) -> None:
    compared = 0
    for mid, raw in iter_all_messages(corpora_dir):
        try:
            h = parse_header(raw)
        except HeaderError:
            continue
        try:
            msg = parse(raw)
        except ER7Error:
            continue  # a body problem (checked in test_tokenizer); MSH itself was fine
        msh = msg.segment("MSH")
        assert msh is not None and msg.header == h, mid
        assert msh.raw_field(10) == h.control_id, mid
        msh9 = msh.field(9)
        assert msh9.raw_component(1) == h.message_code, mid
        assert msh9.raw_component(2) == h.trigger_event, mid
        assert msh9.raw_component(3) == h.message_structure, mid
        assert msh.field(12).raw_component(1) == h.version_id, mid
        assert tuple(msh.field(18).repetitions) == h.character_sets, mid
        assert msh.raw_field(1) == h.field_separator, mid
        assert msh.raw_field(2) == h.encoding_characters, mid
        compared += 1
    assert compared > 900
