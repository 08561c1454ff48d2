"""The ACK builder (HL7 v2.5 chapter 2: 2.9 acknowledgement modes, MSH, MSA, ERR).

Fields are checked by splitting the ACK; hl7apy (strict validation of each version's ACK
structure) and python-hl7 serve as independent readers; the corpora check that any header a
real sender wrote gets an ACK that parses back.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import hl7
import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import get_message_info, parse_segments

from adapters.mllp.framing import encode_frame
from edge.er7.errors import HeaderError
from edge.er7.header import Header, parse_header
from edge.intake.ack import (
    AckCode,
    AckError,
    ErrorCode,
    ErrorLocation,
    Severity,
    ack_code,
    best_effort_control_id,
    build_ack,
    build_unparsed_ack,
    should_send_accept_ack,
    should_send_application_ack,
)

NOW = datetime(2024, 3, 9, 14, 5, 7, tzinfo=timezone(timedelta(hours=-6)))


def make_header(**overrides: object) -> Header:
    values: dict[str, object] = {
        "field_separator": "|",
        "encoding_characters": "^~\\&",
        "sending_application": "LAB^1.2.840.1^ISO",
        "sending_facility": "MAIN",
        "receiving_application": "EDGE",
        "receiving_facility": "HIE",
        "message_datetime": "20240309140000",
        "message_code": "ADT",
        "trigger_event": "A01",
        "message_structure": "ADT_A01",
        "control_id": "MSG-0042",
        "processing_id": "P",
        "version_id": "2.5",
        "accept_ack_type": "",
        "application_ack_type": "",
        "character_sets": (),
        "codec": "utf-8",
    }
    values.update(overrides)
    return Header(**values)  # type: ignore[arg-type]


def segments(ack: bytes, codec: str = "utf-8") -> list[str]:
    text = ack.decode(codec)
    assert text.endswith("\r"), "every segment, the last included, ends with CR"
    assert "\n" not in text
    return text[:-1].split("\r")


def fields(segment: str, sep: str = "|") -> list[str]:
    """``fields(msh)[n]`` is MSH-n; for other segments ``[n]`` is field n too."""
    parts = segment.split(sep)
    if parts[0] == "MSH":
        parts.insert(1, sep)
    return parts


def field(values: list[str], n: int) -> str:
    return values[n] if n < len(values) else ""


def validate_with_hl7apy(ack: bytes, version: str) -> None:
    text = ack.decode()
    enc, _, _ = get_message_info(text)
    strict = VALIDATION_LEVEL.STRICT
    message = Message("ACK", version=version, validation_level=strict, encoding_chars=enc)
    message.children = parse_segments(text, version, enc, strict, message.reference, True)
    assert message.validate()


# --- MSH ---------------------------------------------------------------------------------


def test_msh_answers_the_sender() -> None:
    ack = build_ack(make_header(), AckCode.AA, control_id="ACK-1", now=NOW)
    msh_text, msa_text = segments(ack)
    msh = fields(msh_text)
    assert msh[1:3] == ["|", "^~\\&"]
    assert msh[3:7] == ["EDGE", "HIE", "LAB^1.2.840.1^ISO", "MAIN"]
    assert msh[7] == "20240309140507-0600"
    assert msh[9] == "ACK^A01^ACK"
    assert msh[10] == "ACK-1"
    assert msh[11] == "P"
    assert msh[12] == "2.5"
    assert field(msh, 15) == field(msh, 16) == ""  # original mode
    assert fields(msa_text) == ["MSA", "AA", "MSG-0042"]
    validate_with_hl7apy(ack, "2.5")


def test_naive_clock_gets_no_offset() -> None:
    ack = build_ack(make_header(), AckCode.AA, control_id="1", now=datetime(2024, 1, 2, 3, 4, 5))
    assert fields(segments(ack)[0])[7] == "20240102030405"


def test_our_identity_can_replace_the_echoed_receiver() -> None:
    ack = build_ack(
        make_header(receiving_application="", receiving_facility=""),
        AckCode.AA,
        control_id="1",
        now=NOW,
        sending_application=("HIE-EDGE", "2.16.840.1.113883.3.1", "ISO"),
        sending_facility="General^Hospital",  # one component: the ^ is data and is escaped
    )
    msh = fields(segments(ack)[0])
    assert msh[3] == "HIE-EDGE^2.16.840.1.113883.3.1^ISO"
    assert msh[4] == "General\\S\\Hospital"


def test_message_type_without_trigger_event_is_plain_ack() -> None:
    ack = build_ack(
        make_header(trigger_event="", message_structure=""), AckCode.AA, control_id="1", now=NOW
    )
    assert fields(segments(ack)[0])[9] == "ACK"


@pytest.mark.parametrize(
    ("version", "message_type"),
    [("2.2", "ACK^A01"), ("2.3", "ACK^A01"), ("2.3.1", "ACK^A01^ACK"), ("2.8", "ACK^A01^ACK")],
)
def test_message_structure_component_only_where_the_version_has_it(
    version: str, message_type: str
) -> None:
    ack = build_ack(make_header(version_id=version), AckCode.AA, control_id="1", now=NOW)
    msh = fields(segments(ack)[0])
    assert msh[9] == message_type
    assert msh[12] == version


def test_fifth_encoding_character_and_other_delimiters_are_kept() -> None:
    header = make_header(
        field_separator="*",
        encoding_characters="$%!@#",
        sending_application="LAB$X",
        control_id="C1",
    )
    error = AckError(
        ErrorCode.DATA_TYPE_ERROR,
        location=ErrorLocation("PID", field=7),
        diagnostic="a*b$c%d!e@f#g",
    )
    ack = build_ack(header, AckCode.AE, control_id="A1", now=NOW, errors=[error], text="x#y")
    msh_text, msa_text, err_text = segments(ack)
    msh = fields(msh_text, "*")
    assert msh[1:3] == ["*", "$%!@#"]
    assert msh[5] == "LAB$X"
    assert msh[9] == "ACK$A01$ACK"
    assert fields(msa_text, "*") == ["MSA", "AE", "C1", "x!P!y"]
    err = fields(err_text, "*")
    assert err[2] == "PID$1$7"
    assert err[3] == "102$Data type error$HL70357"
    assert err[7] == "a!F!b!S!c!R!d!E!e!T!f!P!g"


def test_short_encoding_characters_are_completed() -> None:
    ack = build_ack(make_header(encoding_characters="^~"), AckCode.AA, control_id="1", now=NOW)
    assert fields(segments(ack)[0])[2] == "^~\\&"


def test_character_sets_echoed_and_text_encoded_in_the_message_codec() -> None:
    latin = make_header(character_sets=("8859/1",), codec="iso8859-1")
    ack = build_ack(latin, AckCode.AE, control_id="1", now=NOW, text="Prüfung fehlgeschlagen")
    assert b"Pr\xfcfung" in ack
    assert fields(segments(ack, "latin-1")[0])[18] == "8859/1"

    utf8 = make_header(character_sets=("UNICODE UTF-8", "ISO IR87"))
    ack = build_ack(utf8, AckCode.AE, control_id="1", now=NOW, text="Prüfung")
    assert b"Pr\xc3\xbcfung" in ack
    assert fields(segments(ack)[0])[18] == "UNICODE UTF-8~ISO IR87"


def test_characters_the_codec_lacks_do_not_stop_the_ack() -> None:
    ack = build_ack(make_header(codec="ascii"), AckCode.AE, control_id="1", now=NOW, text="Zoë ✓")
    assert fields(segments(ack, "ascii")[1])[3] == "Zo? ?"


def test_echoed_values_are_kept_as_sent_but_control_bytes_cannot_break_the_frame() -> None:
    header = make_header(sending_application="LAB\\T\\X", control_id="ID\x1c7")
    ack = build_ack(header, AckCode.AA, control_id="1", now=NOW)
    assert fields(segments(ack)[0])[5] == "LAB\\T\\X"  # already ER7: not escaped twice
    assert fields(segments(ack)[1])[2] == "ID\\X1C\\7"
    encode_frame(ack)  # would raise on a raw 0x0B / 0x1C


# --- MSA -----------------------------------------------------------------------------------


def test_text_is_escaped() -> None:
    text = "bad | thing ^ with ~ and \\ and & here\r\nnext line"
    ack = build_ack(make_header(), AckCode.AE, control_id="1", now=NOW, text=text)
    msa = fields(segments(ack)[1])
    assert msa[3] == (
        "bad \\F\\ thing \\S\\ with \\R\\ and \\E\\ and \\T\\ here\\X0D\\\\X0A\\next line"
    )
    # An independent reader sees the same four fields: nothing in the text split a field.
    parsed = hl7.parse(ack.decode()).segment("MSA")
    assert len(parsed) == 4
    assert str(parsed[2]) == "MSG-0042"


def test_text_is_cut_to_the_80_characters_of_msa_3() -> None:
    ack = build_ack(make_header(), AckCode.AE, control_id="1", now=NOW, text="x" * 200)
    assert fields(segments(ack)[1])[3] == "x" * 80


@pytest.mark.parametrize("version", ["2.3", "2.5", "2.6"])
def test_msa_3_carries_the_text_before_2_7(version: str) -> None:
    ack = build_ack(
        make_header(version_id=version), AckCode.AR, control_id="1", now=NOW, text="Unsupported"
    )
    assert fields(segments(ack)[1]) == ["MSA", "AR", "MSG-0042", "Unsupported"]


def test_from_2_7_the_text_moves_to_err_8() -> None:
    header = make_header(version_id="2.7")
    error = AckError(ErrorCode.APPLICATION_INTERNAL_ERROR)
    ack = build_ack(header, AckCode.AE, control_id="1", now=NOW, errors=[error], text="retry")
    _, msa, err = segments(ack)
    assert fields(msa) == ["MSA", "AE", "MSG-0042"]
    assert field(fields(err), 8) == "retry"
    validate_with_hl7apy(ack, "2.7")
    # Without an ERR there is nowhere to put it in 2.7; the ACK stays valid.
    ack = build_ack(header, AckCode.AA, control_id="1", now=NOW, text="ok")
    assert segments(ack)[1] == "MSA|AA|MSG-0042"


# --- ERR -----------------------------------------------------------------------------------


def test_err_from_2_5_one_segment_per_error() -> None:
    errors = [
        AckError(
            ErrorCode.REQUIRED_FIELD_MISSING,
            location=ErrorLocation("PID", field=3, component=1),
            diagnostic="PID-3.1 is required",
        ),
        AckError(
            ErrorCode.TABLE_VALUE_NOT_FOUND,
            Severity.WARNING,
            location=ErrorLocation("OBX", sequence=2, field=8),
            user_message="check OBX-8",
        ),
        AckError(ErrorCode.APPLICATION_INTERNAL_ERROR),
    ]
    ack = build_ack(
        make_header(version_id="2.5.1"), AckCode.AE, control_id="1", now=NOW, errors=errors
    )
    _, _, *errs = segments(ack)
    first, second, third = (fields(e) for e in errs)
    assert first[:5] == ["ERR", "", "PID^1^3^^1", "101^Required field missing^HL70357", "E"]
    assert first[7] == "PID-3.1 is required"
    assert second[1:5] == ["", "OBX^2^8", "103^Table value not found^HL70357", "W"]
    assert second[8] == "check OBX-8"
    assert third == ["ERR", "", "", "207^Application internal error^HL70357", "E"]
    validate_with_hl7apy(ack, "2.5.1")


@pytest.mark.parametrize("version", ["2.2", "2.3", "2.3.1", "2.4"])
def test_err_before_2_5_is_one_segment_with_repeating_err_1(version: str) -> None:
    errors = [
        AckError(ErrorCode.REQUIRED_FIELD_MISSING, location=ErrorLocation("PID", field=3)),
        AckError(ErrorCode.APPLICATION_INTERNAL_ERROR, diagnostic="not sent before 2.5"),
    ]
    # MSH-3/5 are plain ST before 2.3, so this sender's application has no components.
    header = make_header(version_id=version, sending_application="LAB")
    ack = build_ack(header, AckCode.AE, control_id="1", now=NOW, errors=errors, text="rejected")
    _, msa, err = segments(ack)
    assert fields(msa)[3] == "rejected"
    assert fields(err) == [
        "ERR",
        "PID^1^3^101&Required field missing&HL70357~^^^207&Application internal error&HL70357",
    ]
    validate_with_hl7apy(ack, version)


@pytest.mark.parametrize(
    "version", ["2.2", "2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"]
)
@pytest.mark.parametrize("enhanced", [False, True])
def test_every_version_s_ack_passes_strict_validation(version: str, enhanced: bool) -> None:
    header = make_header(
        version_id=version, accept_ack_type="AL" if enhanced else "", sending_application="LAB"
    )
    errors = [
        AckError(
            ErrorCode.DATA_TYPE_ERROR,
            location=ErrorLocation("PV1", field=44),
            diagnostic="PV1-44 is not a DTM",
        )
    ]
    code = ack_code(header, "error")
    ack = build_ack(header, code, control_id="A-7", now=NOW, errors=errors, text="bad ^ data")
    validate_with_hl7apy(ack, version)
    msh = fields(segments(ack)[0])
    assert (field(msh, 15), field(msh, 16)) == (("NE", "NE") if enhanced else ("", ""))
    assert fields(segments(ack)[1])[1] == ("CE" if enhanced else "AE")


def test_table_0357_display_texts() -> None:
    assert ErrorCode(207).text == "Application internal error"
    assert ErrorCode(0).text == "Message accepted"
    assert {int(c) for c in ErrorCode} == {0, 100, 101, 102, 103, *range(200, 208)}


# --- acknowledgement modes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("msh15", "msh16", "code", "expected"),
    [
        ("", "", AckCode.AA, True),  # original mode: always
        ("", "", AckCode.AR, True),
        ("AL", "", AckCode.CA, True),
        ("AL", "NE", AckCode.CR, True),
        ("NE", "AL", AckCode.CA, False),
        ("NE", "AL", AckCode.CR, False),
        ("ER", "", AckCode.CA, False),
        ("ER", "", AckCode.CE, True),
        ("ER", "", AckCode.CR, True),
        ("SU", "", AckCode.CA, True),
        ("SU", "", AckCode.CE, False),
        ("su", "", AckCode.CR, False),  # case does not matter
        ("", "AL", AckCode.CA, True),  # enhanced, MSH-15 empty: treated as AL
        ("XX", "", AckCode.CR, True),  # not in table 0155: treated as AL
    ],
)
def test_should_send_accept_ack_follows_table_0155(
    msh15: str, msh16: str, code: AckCode, expected: bool
) -> None:
    header = make_header(accept_ack_type=msh15, application_ack_type=msh16)
    assert should_send_accept_ack(header, code) is expected


def test_should_send_application_ack_reads_msh_16() -> None:
    header = make_header(accept_ack_type="AL", application_ack_type="ER")
    assert should_send_application_ack(header, AckCode.AA) is False
    assert should_send_application_ack(header, AckCode.AE) is True
    assert should_send_application_ack(make_header(), AckCode.AA) is True


def test_ack_code_picks_the_mode() -> None:
    original, enhanced = make_header(), make_header(application_ack_type="AL")
    assert [ack_code(original, o) for o in ("accept", "error", "reject")] == ["AA", "AE", "AR"]
    assert [ack_code(enhanced, o) for o in ("accept", "error", "reject")] == ["CA", "CE", "CR"]
    assert ack_code(None, "reject") is AckCode.AR
    assert AckCode.CA.is_accept_ack and not AckCode.AA.is_accept_ack
    assert AckCode.CA.is_success and not AckCode.CE.is_success


# --- no header to echo ----------------------------------------------------------------------


def test_unparsed_ack_defaults() -> None:
    ack = build_unparsed_ack(control_id="R-1", now=NOW)
    msh, msa, err = (fields(s) for s in segments(ack))
    assert msh[1:3] == ["|", "^~\\&"]
    assert msh[7] == "20240309140507-0600"
    assert msh[9:13] == ["ACK", "R-1", "P", "2.5"]
    assert msa == ["MSA", "AR"]
    assert err == ["ERR", "", "MSH^1", "102^Data type error^HL70357", "E"]
    # MSA-2 is required, but with no control id to echo it stays empty (we do not invent one);
    # with a best-effort id the reject is a valid v2.5 ACK.
    validate_with_hl7apy(
        build_unparsed_ack(control_id="R-1", now=NOW, received_control_id="X"), "2.5"
    )


def test_unparsed_ack_from_a_header_error() -> None:
    raw = b"MSH|^~\\&|LAB|MAIN|EDGE|HIE|20240101||^A01|CTL-9|P|2.5\rPID|1\r"
    with pytest.raises(HeaderError) as caught:
        parse_header(raw)
    location = ErrorLocation.from_path(caught.value.field)
    error = AckError(ErrorCode(caught.value.err_code), location=location)
    ack = build_unparsed_ack(
        control_id="R-2",
        now=NOW,
        error=error,
        received_control_id=best_effort_control_id(raw),
        text="MSH-9 empty",
    )
    _, msa, err = (fields(s) for s in segments(ack))
    assert msa == ["MSA", "AR", "CTL-9", "MSH-9 empty"]
    assert err[2:4] == ["MSH^1^9", "101^Required field missing^HL70357"]


def test_unparsed_ack_escapes_a_received_control_id() -> None:
    ack = build_unparsed_ack(
        control_id="R",
        now=NOW,
        received_control_id="a|b",
        code=AckCode.CR,
        sending_application="EDGE",
    )
    msh, msa, _ = (fields(s) for s in segments(ack))
    assert msh[3] == "EDGE"
    assert msa[1:3] == ["CR", "a\\F\\b"]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|CTL-1|P|2.5\rPID|1\r", "CTL-1"),
        (b"\xef\xbb\xbf\r\nMSH|^~\\&|A|B|C|D|T||ADT|X99|P\nPID|1\n", "X99"),
        (b"MSH#$%!@#A#B#C#D#T##ADT#ID.7#P#2.5\r", "ID.7"),
        (b"MSH|^~\\&|A|B|C|D|T||ADT||P|2.5\r", ""),  # empty
        (b"MSH|^~\\&|A|B|C|D|T||ADT|a^b|P|2.5\r", ""),  # holds a delimiter
        (b"MSH|^~\\&|A|B|C|D|T||ADT|\xc3\xa9|P|2.5\r", ""),  # not ASCII
        (b"MSH|^~\\&|A|B|C|D|T||ADT|" + b"9" * 200 + b"|P\r", ""),  # too long
        (b"MSH|^~\\&|A|B|C\rD|T||ADT|CTL|P|2.5\r", ""),  # MSH-10 not in the first segment
        (b"PID|1\r", ""),
        (b"", ""),
        (b"MSHA^~\\&|A|B|C|D|T||ADT|CTL|P", ""),  # a letter is no separator
    ],
)
def test_best_effort_control_id(raw: bytes, expected: str) -> None:
    assert best_effort_control_id(raw) == expected


# --- locations -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "location"),
    [
        ("MSH", ErrorLocation("MSH")),
        ("MSH-9", ErrorLocation("MSH", field=9)),
        ("PID-3.4", ErrorLocation("PID", field=3, component=4)),
        ("PID-3[2].4.1", ErrorLocation("PID", field=3, repetition=2, component=4, subcomponent=1)),
        ("OBX[12]-5", ErrorLocation("OBX", sequence=12, field=5)),
        ("ZX1-2", ErrorLocation("ZX1", field=2)),
    ],
)
def test_error_location_paths_round_trip(path: str, location: ErrorLocation) -> None:
    assert ErrorLocation.from_path(path) == location
    assert str(location) == path


@pytest.mark.parametrize("path", ["", "offset 120", "segment 3 (OBX)", "pid-3", "PID-x"])
def test_error_location_rejects_non_paths(path: str) -> None:
    assert ErrorLocation.from_path(path) is None


# --- against real headers -------------------------------------------------------------------


def _corpus_files(corpora_dir: Path) -> list[Path]:
    return sorted(p for p in corpora_dir.rglob("*") if p.suffix in {".hl7", ".txt"} and p.is_file())


def test_every_corpus_header_gets_an_ack_that_reads_back(corpora_dir: Path) -> None:
    answered = rejected = 0
    for path in _corpus_files(corpora_dir):
        raw = path.read_bytes()
        try:
            header = parse_header(raw, fallback_codec="latin-1")
        except HeaderError as exc:
            ack = build_unparsed_ack(
                control_id="R",
                now=NOW,
                received_control_id=best_effort_control_id(raw),
                error=AckError(
                    ErrorCode(exc.err_code), location=ErrorLocation.from_path(exc.field)
                ),
            )
            assert segments(ack)[1].startswith("MSA|AR")
            rejected += 1
            continue
        error = AckError(ErrorCode.APPLICATION_INTERNAL_ERROR, diagnostic="test")
        ack = build_ack(
            header, AckCode.AE, control_id="ACK1", now=NOW, errors=[error], text="a|b^c"
        )
        encode_frame(ack)
        echoed = parse_header(ack, fallback_codec=header.codec)
        assert echoed.field_separator == header.field_separator, path
        assert echoed.encoding_characters == header.encoding_characters, path
        assert (echoed.sending_application, echoed.sending_facility) == (
            header.receiving_application,
            header.receiving_facility,
        ), path
        assert (echoed.receiving_application, echoed.receiving_facility) == (
            header.sending_application,
            header.sending_facility,
        ), path
        assert echoed.version_id == header.version_id, path
        assert echoed.message_code == "ACK", path
        assert echoed.control_id == "ACK1", path
        msa = fields(segments(ack, header.codec)[1], header.field_separator)
        assert msa[1:3] == ["AE", header.control_id], path
        answered += 1
    assert answered > 100
    assert rejected > 0  # the corpora hold broken headers on purpose
