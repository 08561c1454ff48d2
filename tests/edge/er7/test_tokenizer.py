"""The ER7 tokenizer: message construction rules of HL7 v2.5 section 2.5/2.6, and the quirks."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.er7 import NULL, ER7Error, HeaderError, escape, parse
from edge.er7.delimiters import DEFAULT
from tests.corpus import iter_all_messages, iter_bad_inputs

ORU = (
    "MSH|^~\\&|LAB|HOSP|EDGE|CONS|20240102||ORU^R01^ORU_R01|C1|P|2.5.1\r"
    "PID|1||111^^^HOSP^MR~222^^^SSA&2.16.840&ISO^SS||DOE^JANE^Q||19800101|F\r"
    'NK1|1|""|MTH^Mother\r'
    "OBX|1|TX|TEXT||line one\\.br\\a \\T\\ b \\S\\ c||||||F\r"
    "OBX|2|NM|GLU^Glucose^LN||5.4|mmol/L|||||F\r"
    "ZZZ\r"
)


@pytest.fixture
def msg():  # type: ignore[no-untyped-def]
    return parse(ORU.encode())


def test_segments_and_ids(msg) -> None:  # type: ignore[no-untyped-def]
    assert msg.segment_ids == ["MSH", "PID", "NK1", "OBX", "OBX", "ZZZ"]
    assert len(msg) == 6
    assert [s.index for s in msg.segments("OBX")] == [3, 4]
    assert msg.segment("OBX", 2) is msg.segments("OBX")[1]
    assert msg.segment("OBX", 3) is None
    assert msg.segment("AL1") is None
    assert len(msg.segments()) == 6


def test_msh_numbering(msg) -> None:  # type: ignore[no-untyped-def]
    msh = msg.segment("MSH")
    assert msh.raw_field(1) == "|"
    assert msh.raw_field(2) == "^~\\&"
    assert msh.raw_field(3) == "LAB"
    assert msh.raw_field(9) == "ORU^R01^ORU_R01"
    assert msh.raw_field(10) == "C1"
    assert len(msh) == 12
    # MSH-1 and MSH-2 are atomic: never split, never unescaped.
    assert msh.field(2).component(1) == "^~\\&"
    assert msh.field(2).repetitions == ["^~\\&"]
    assert msh.field(2).component(2) == ""
    assert msh.field(1).text() == "|"
    assert msg.get("MSH-9.2") == "R01"
    assert msg.get("MSH-2") == "^~\\&"


def test_other_segments_numbering(msg) -> None:  # type: ignore[no-untyped-def]
    pid = msg.segment("PID")
    assert pid.fields[0] == "PID"
    assert pid.raw_field(1) == "1"
    assert pid.raw_field(2) == ""
    assert pid.raw_field(8) == "F"
    assert pid.raw_field(9) == ""  # beyond what was sent
    assert len(pid) == 8


def test_repetitions_components_subcomponents(msg) -> None:  # type: ignore[no-untyped-def]
    pid3 = msg.segment("PID").field(3)
    assert pid3.repetitions == ["111^^^HOSP^MR", "222^^^SSA&2.16.840&ISO^SS"]
    assert pid3.component(1) == "111"
    assert pid3.component(1, rep=2) == "222"
    assert pid3.component(4, rep=2) == "SSA"
    assert pid3.component(4, 2, rep=2) == "2.16.840"
    assert pid3.component(4, 3, 2) == "ISO"
    assert pid3.component(4, 4, 2) == ""
    assert pid3.component(6, rep=2) == ""
    assert pid3.component(1, rep=3) == ""
    assert pid3.components(2) == ["222", "", "", "SSA&2.16.840&ISO", "SS"]
    assert pid3.raw_component(4, rep=2) == "SSA"
    assert msg.get("PID-3[2].4.2") == "2.16.840"
    assert msg.get("PID-3[2].5") == "SS"
    assert msg.get("PID-5") == "DOE"  # a path that stops above a leaf reads its first leaf
    assert msg.get("PID-5.2") == "JANE"
    assert msg.segment("PID").get("3[2].4.3") == "ISO"
    assert msg.get("OBX[2]-3.2") == "Glucose"
    assert msg.get("OBX[3]-3") == ""
    assert msg.get("AL1-3") == ""


def test_escapes_are_undone_after_splitting(msg) -> None:  # type: ignore[no-untyped-def]
    obx5 = msg.segment("OBX").field(5)
    assert obx5.components() == ["line one\\.br\\a \\T\\ b \\S\\ c"]  # \S\ did not split
    assert obx5.component(1) == "line one\na & b ^ c"
    assert obx5.text() == "line one\na & b ^ c"
    assert msg.get("OBX-5") == "line one\na & b ^ c"


def test_null_versus_empty(msg) -> None:  # type: ignore[no-untyped-def]
    nk1 = msg.segment("NK1")
    assert nk1.field(2).is_null and not nk1.field(2).is_empty
    assert nk1.field(2).component(1) == NULL
    assert nk1.field(4).is_empty and not nk1.field(4).is_null
    assert nk1.field(4).repetitions == []
    assert nk1.field(4).components() == []
    assert msg.get("NK1-2") == '""'
    assert msg.get("NK1-4") == ""


def test_segment_with_no_fields(msg) -> None:  # type: ignore[no-untyped-def]
    zzz = msg.segment("ZZZ")
    assert zzz.raw == "ZZZ" and len(zzz) == 0 and zzz.raw_field(1) == ""


@pytest.mark.parametrize("terminator", ["\r", "\n", "\r\n"])
def test_line_endings(terminator: str) -> None:
    msg = parse(ORU.replace("\r", terminator).encode())
    assert msg.segment_ids == ["MSH", "PID", "NK1", "OBX", "OBX", "ZZZ"]
    assert msg.get("OBX[2]-5") == "5.4"


def test_mixed_line_endings_blank_lines_bom_and_leading_whitespace() -> None:
    text = ORU.replace("PID", "\n\r\n  \rPID").replace("\rOBX|2", "\nOBX|2")
    msg = parse(b"\xef\xbb\xbf\r\n " + text.encode())
    assert msg.segment_ids == ["MSH", "PID", "NK1", "OBX", "OBX", "ZZZ"]
    assert msg.codec == "utf-8"


def test_str_input() -> None:
    msg = parse(ORU)
    assert msg.get("PID-5.2") == "JANE"


def test_codecs() -> None:
    latin = ORU.replace("DOE", "Müller").encode("latin-1")
    assert parse(latin).get("PID-5") == "Müller"  # fallback latin-1
    utf8 = ORU.replace("DOE", "Müller").replace("2.5.1", "2.5.1||||||UNICODE UTF-8")
    assert parse(utf8.encode()).get("PID-5") == "Müller"
    assert parse(ORU.replace("DOE", "Müller").encode(), codec="utf-8").get("PID-5") == "Müller"
    with pytest.raises(ER7Error) as info:
        parse(utf8.encode().replace(b"M\xc3\xbc", b"M\xfc"))
    assert info.value.err_code == 102
    assert info.value.location.startswith("offset ")
    assert "ller" not in str(info.value)


def test_hex_escape_uses_message_codec() -> None:
    text = ORU.replace("line one", "\\XC3A9\\").replace("2.5.1", "2.5.1||||||UNICODE UTF-8")
    assert parse(text.encode()).get("OBX-5").startswith("é")


def test_fifth_encoding_character() -> None:
    msg = parse(ORU.replace("^~\\&", "^~\\&#").replace("5.4", "5\\P\\4"))
    assert msg.delimiters.truncation == "#"
    assert msg.get("OBX[2]-5") == "5#4"
    assert msg.get("MSH-2") == "^~\\&#"


def test_other_delimiters() -> None:
    raw = (
        "MSH^~|\\&^SENDING^200M^RECEIVING^200^20120918^^ADT~A24~ADT_A24^42^P^2.5\r\n"
        "PID^1^^11111~~~FOO&&0363|22222~~~BAR^^SMITH~JOHN\r\n"
    )
    msg = parse(raw)
    assert msg.get("MSH-9.2") == "A24"
    assert msg.get("PID-3.4.3") == "0363"
    assert msg.get("PID-3[2].4") == "BAR"
    assert msg.get("PID-5.2") == "JOHN"


@pytest.mark.parametrize(
    ("text", "location"),
    [
        (ORU.replace("NK1|", "nk1|"), "segment 3"),
        (ORU.replace("NK1|", "NK|"), "segment 3"),
        (ORU.replace("NK1|", "NK1X|"), "segment 3"),
        (ORU.replace("NK1|", " NK1|"), "segment 3"),
        (ORU.replace("OBX|2|NM", "wrapped line\rOBX|2|NM"), "segment 5"),
        (ORU + ORU, "segment 7"),  # a second message: use edge.er7.batch
    ],
)
def test_malformed_segments(text: str, location: str) -> None:
    with pytest.raises(ER7Error) as info:
        parse(text)
    assert info.value.location == location
    assert info.value.err_code == 100
    assert info.value.fault == "peer"


def test_header_errors_come_through() -> None:
    with pytest.raises(HeaderError) as info:
        parse(ORU.replace("|C1|", "||"))
    assert info.value.field == "MSH-10"


def test_reprs_carry_no_content(msg) -> None:  # type: ignore[no-untyped-def]
    pid = msg.segment("PID")
    texts = [repr(msg), repr(pid), repr(pid.field(5)), str(pid.field(5))]
    assert not any("DOE" in t or "JANE" in t for t in texts)
    assert repr(pid.field(5)) == "<Field PID-5>"


def test_bad_paths_are_caller_errors(msg) -> None:  # type: ignore[no-untyped-def]
    for path in ["PID", "PID-", "PID-0", "PID-3.0", "pid-3", "PID-3[0]", "PID-3.1.1.1"]:
        with pytest.raises(ValueError, match=r"path|1-based"):
            msg.get(path)
    with pytest.raises(ValueError):
        msg.segment("PID").field(0)


# ---- properties ----------------------------------------------------------------------------

SEGMENT_IDS = st.from_regex(r"[A-Z][A-Z0-9]{2}", fullmatch=True).filter(lambda s: s != "MSH")
VALUES = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
# A field is a list of repetitions, a repetition a list of component values.
REPETITIONS = st.lists(st.lists(VALUES, min_size=1, max_size=3), min_size=1, max_size=3)
FIELDS = st.lists(REPETITIONS, max_size=5)


@given(st.lists(st.tuples(SEGMENT_IDS, FIELDS), max_size=6), st.sampled_from(["\r", "\n", "\r\n"]))
def test_build_then_tokenize(
    segments: list[tuple[str, list[list[list[str]]]]], terminator: str
) -> None:
    """Whatever we write with escape() and the delimiters reads back exactly."""
    d = DEFAULT
    lines = ["MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5||||||UNICODE UTF-8"]
    for seg_id, fields in segments:
        written = [
            d.repetition.join(d.component.join(escape(v, d) for v in rep) for rep in field)
            for field in fields
        ]
        lines.append(d.field.join([seg_id, *written]))
    msg = parse(terminator.join(lines).encode())
    assert msg.segment_ids == ["MSH"] + [s for s, _ in segments]
    for segment, (_, fields) in zip(msg.segments()[1:], segments, strict=True):
        assert len(segment) == len(fields)
        for n, field in enumerate(fields, 1):
            if field != [[""]]:
                assert len(segment.field(n).repetitions) == len(field)
            for r, rep in enumerate(field, 1):
                for c, value in enumerate(rep, 1):
                    assert segment.field(n).component(c, rep=r) == value


@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_er7_errors(raw: bytes) -> None:
    try:
        msg = parse(raw)
    except ER7Error:  # HeaderError included
        return
    _touch_everything(msg)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_after_msh(tail: bytes) -> None:
    try:
        msg = parse(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\r" + tail)
    except ER7Error:
        return
    _touch_everything(msg)


def _touch_everything(msg) -> int:  # type: ignore[no-untyped-def]
    touched = 0
    for segment in msg:
        for n in range(1, len(segment) + 1):
            field = segment.field(n)
            field.text()
            for r, _ in enumerate(field.repetitions, 1):
                for c, component in enumerate(field.components(r), 1):
                    for s in range(1, component.count(msg.delimiters.subcomponent) + 2):
                        field.component(c, s, r)
                        touched += 1
    return touched


def test_fuzzer_crashers_raise_only_er7_errors(corpora_dir: Path) -> None:
    inputs = iter_bad_inputs(corpora_dir)
    assert len(inputs) > 30
    for _, raw in inputs:
        try:
            msg = parse(raw)
        except ER7Error:
            continue
        _touch_everything(msg)


# Corpus messages the tokenizer rejects although MSH is fine, and why. Each is malformed on
# purpose or by accident; a receiver must not guess where a wrapped line belonged.
EXPECTED_BODY_ERRORS = {
    "cdc-iis-open-tools/testencoding.hl7#1": "segment 5",  # "WHOOPS" segment, deliberately bad
    "cdc-iis-open-tools/testencoding.hl7#2": "segment 2",  # "ID|" (PID lost its P)
    # Prose ("Remap OBR with...") written between the segments.
    "cdc-trusted-intermediary/TN/001_TN_ORU_R01_LRI_annotated_for_transformation.hl7": "segment 6",
    "cdc-trusted-intermediary/TX/001_TX_OML_O21.hl7": "segment 6",  # OBR-4 wrapped onto a new line
    "node-hl7-complete/valid/catalyze-io/orm-example.hl7": "segment 7",  # OBR wrapped likewise
}


def test_every_corpus_message(corpora_dir: Path) -> None:
    parsed = leaves = 0
    body_errors = {}
    for mid, raw in iter_all_messages(corpora_dir):
        try:
            msg = parse(raw)
        except HeaderError:
            continue  # test_header checks these against an independent reading
        except ER7Error as err:
            body_errors[mid] = err.location
            continue
        parsed += 1
        leaves += _touch_everything(msg)
    assert body_errors == EXPECTED_BODY_ERRORS
    assert parsed > 1000
    assert leaves > 100_000


def test_values_reads_a_whole_field_at_once(msg) -> None:  # type: ignore[no-untyped-def]
    pid3 = msg.segment("PID").field(3)
    assert pid3.values() == [
        [["111"], [""], [""], ["HOSP"], ["MR"]],
        [["222"], [""], [""], ["SSA", "2.16.840", "ISO"], ["SS"]],
    ]
    assert msg.segment("OBX").field(5).values() == [[["line one\na & b ^ c"]]]
    assert msg.segment("NK1").field(4).values() == []
    assert msg.segment("MSH").field(2).values() == [[["^~\\&"]]]
    assert pid3.subcomponents(4, rep=2) == ["SSA", "2.16.840", "ISO"]
    assert pid3.subcomponents(2) == []


@given(st.binary(max_size=300))
def test_values_agree_with_component(tail: bytes) -> None:
    try:
        msg = parse(b"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|X1|P|2.5\r" + tail)
    except ER7Error:
        return
    for segment in msg:
        for n in range(1, len(segment) + 1):
            field = segment.field(n)
            for r, rep in enumerate(field.values(), 1):
                for c, comp in enumerate(rep, 1):
                    for s, value in enumerate(comp, 1):
                        assert field.component(c, s, r) == value
