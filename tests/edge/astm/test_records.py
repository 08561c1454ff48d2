"""E1394 record parsing and device profiles."""

from __future__ import annotations

import contextlib
from datetime import date, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.astm.errors import RecordError
from edge.astm.profile import Coding, DeviceProfile
from edge.astm.records import (
    Comment,
    Delimiters,
    Header,
    OtherRecord,
    Patient,
    Result,
    parse_message,
    parse_timestamp,
)
from tests.adapters.serial.astm_support import CHEMISTRY, HEMATOLOGY, LONG


def test_chemistry_message_structure_and_fields() -> None:
    message = parse_message(CHEMISTRY)
    header = message.header
    assert isinstance(header, Header)
    assert header.delimiters == Delimiters("|", "\\", "^", "&")
    assert header.sender == ("CHEM-ANALYZER", "2.1", "SN4711")
    assert (header.processing_id, header.version, header.timestamp) == \
        ("P", "LIS2-A2", "20260315083000")
    [group] = message.patients
    assert group.patient is not None
    assert group.patient.laboratory_patient_id == "PID-1001"
    assert group.patient.name == ("DOE", "JANE", "Q")
    assert (group.patient.birthdate, group.patient.sex) == ("19700101", "F")
    [order_group] = group.orders
    order = order_group.order
    assert order is not None
    assert order.specimen_id == "SPEC-5001"
    assert [t.code for t in order.test_ids] == ["GLU", "K", "NA"]
    assert (order.priority, order.collected_at, order.action_code) == \
        ("R", "20260315074500", "N")
    assert order.specimen_descriptor == ("SERUM",)
    results = [r.result for r in order_group.results]
    assert [(r.test_id.code, r.value, r.units, r.reference_range, r.abnormal_flags, r.status)
            for r in results] == [
        ("GLU", "98", "mg/dL", "70 to 105", "N", "F"),
        ("K", "5.9", "mmol/L", "3.5 to 5.1", "H", "F"),
        ("NA", "140", "mmol/L", "136 to 145", "N", "F")]
    assert results[0].test_id.component(5) == "Glucose"
    assert (results[1].completed_at, results[1].instrument) == ("20260315082500", "CHEM1")
    # The C record belongs to the result before it (E1394 section 11).
    [comment] = order_group.results[1].comments
    assert comment.source == "I" and comment.text_parts[0] == "Hemolyzed sample"
    assert message.terminator is not None and message.terminator.termination_code == "N"
    assert len(message.results()) == 3


def test_delimiters_come_from_the_h_record() -> None:
    message = parse_message(HEMATOLOGY)
    assert message.delimiters == Delimiters("!", "~", "`", "%")
    [(patient, order, first), (_, _, second)] = message.results()
    assert patient is not None and patient.name == ("ROE", "RICHARD")
    assert order is not None and [t.code for t in order.test_ids] == ["WBC", "HGB"]
    assert (first.test_id.code, first.value, first.units) == ("WBC", "7.2", "10*3/uL")
    assert (second.abnormal_flags, second.reference_range) == ("L", "13.5 to 17.5")


def test_escape_sequences_are_decoded_in_parts() -> None:
    raw = b"H|\\^&\rP|1||A&F&B&S&C&R&D&E&E&X41&\rL|1\r"
    patient = parse_message(raw).patients[0].patient
    assert patient is not None
    assert patient.laboratory_patient_id == "A|B^C\\D&EA"


def test_lenient_hierarchy_and_other_records() -> None:
    raw = b"H|\\^&\rC|1|L|header note\rR|1|^^^GLU|5\rM|1|vendor\rQ|1|^S1\rL|1|N\r"
    message = parse_message(raw)
    assert isinstance(message.header_comments[0], Comment)
    [(patient, order, result)] = message.results()
    assert patient is None and order is None and isinstance(result, Result)
    assert isinstance(message.other[0], OtherRecord) and message.other[0].type == "M"
    assert message.queries[0].starting_range == ("", "S1")


def test_crlf_and_lf_line_ends_are_tolerated() -> None:
    assert len(parse_message(CHEMISTRY.replace(b"\r", b"\r\n")).records) == 8
    assert len(parse_message(LONG.replace(b"\r", b"\n")).records) == 6


@pytest.mark.parametrize(("raw", "record", "field"), [
    (b"", 0, ""),
    (b"P|1\rL|1\r", 1, ""),
    (b"H|\\\r", 1, "H-2"),
    (b"H||^&\r", 1, "H-2"),
    (b"H|\\^&X\r", 1, "H-2"),
    (b"H|\\^&\rP|x|SECRET-ID\r", 2, "P-2"),
    (b"H|\\^&\rL|1\rR|1|^^^GLU|5\r", 3, "R"),
    (b"H|\\^&\rH|\\^&\r", 2, "H"),
])
def test_errors_name_positions_never_values(raw: bytes, record: int, field: str) -> None:
    with pytest.raises(RecordError) as info:
        parse_message(raw)
    assert (info.value.record, info.value.field) == (record, field)
    assert info.value.fault == "peer"
    assert "SECRET" not in str(info.value)


def test_undecodable_bytes_are_reported_by_offset() -> None:
    with pytest.raises(RecordError) as info:
        parse_message(b"H|\\^&\rP|1||\xff\xfe\r", codec="utf-8")
    assert info.value.record == 2 and "byte 5" in str(info.value)


def test_reprs_hold_no_values() -> None:
    message = parse_message(CHEMISTRY)
    text = repr(message) + repr(message.records) + repr(message.patients[0].patient)
    for secret in ("DOE", "PID-1001", "19700101", "SPEC-5001", "98"):
        assert secret not in text


def test_timestamps() -> None:
    assert parse_timestamp("20260315083000") == datetime(2026, 3, 15, 8, 30)
    assert parse_timestamp("202603150830") == datetime(2026, 3, 15, 8, 30)
    assert parse_timestamp("20260315") == date(2026, 3, 15)
    assert parse_timestamp("  ") is None
    for bad in ("2026", "20261315", "2026031508306", "2026-03-15"):
        with pytest.raises(RecordError) as info:
            parse_timestamp(bad, "R-13")
        assert info.value.field == "R-13" and bad not in str(info.value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_parse_or_raise_record_error(tail: bytes) -> None:
    for raw in (tail, b"H|\\^&\r" + tail):
        with contextlib.suppress(RecordError):
            parse_message(raw)


# -- device profiles -----------------------------------------------------------------------

def test_profile_picks_the_code_component_system_and_unit_overrides() -> None:
    message = parse_message(CHEMISTRY)
    glucose, potassium, _ = (r for _, _, r in message.results())
    default = DeviceProfile()
    assert default.test_code(glucose.test_id) == Coding("", "GLU", "")
    assert default.unit(glucose) == "mg/dL"
    profile = DeviceProfile(test_code_system="urn:example:chem", test_code_component=5,
                            units={"Potassium": "mEq/L"})
    assert profile.test_code(glucose.test_id) == Coding("urn:example:chem", "Glucose", "")
    assert profile.unit(potassium) == "mEq/L" and profile.unit(glucose) == "mg/dL"
    # A component the instrument leaves empty falls back to the first non-empty one.
    assert DeviceProfile(test_code_component=9).test_code(glucose.test_id).code == "GLU"
    with pytest.raises(ValueError, match="1-based"):
        DeviceProfile(test_code_component=0)


def test_profile_units_are_read_only() -> None:
    units = {"GLU": "mg/dL"}
    profile = DeviceProfile(units=units)
    units["GLU"] = "changed"
    assert profile.units["GLU"] == "mg/dL"
    with pytest.raises(TypeError):
        profile.units["K"] = "x"  # type: ignore[index]


def test_patient_record_type() -> None:
    assert isinstance(parse_message(CHEMISTRY).records[1], Patient)
