from __future__ import annotations

from zoneinfo import ZoneInfo

import pytest

from edge.normalize.datatypes import dtm
from edge.normalize.errors import NormalizeError

CHICAGO = ZoneInfo("America/Chicago")
UTC = ZoneInfo("UTC")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024", "2024"),
        ("202403", "2024-03"),
        ("20240305", "2024-03-05"),
        ("2024030513", "2024-03-05T13:00:00-06:00"),
        ("202403051307", "2024-03-05T13:07:00-06:00"),
        ("20240305130709", "2024-03-05T13:07:09-06:00"),
        ("20240305130709.1234", "2024-03-05T13:07:09.1234-06:00"),
        ("20240305130709-0500", "2024-03-05T13:07:09-05:00"),
        ("20240305130709+0000", "2024-03-05T13:07:09Z"),
    ],
)
def test_datetime_keeps_the_precision_sent(text: str, expected: str) -> None:
    assert dtm.to_datetime(text, CHICAGO, "OBX-14") == expected


def test_zone_offset_follows_daylight_saving_time() -> None:
    assert dtm.to_datetime("20240705120000", CHICAGO, "X") == "2024-07-05T12:00:00-05:00"
    assert dtm.to_datetime("20240105120000", CHICAGO, "X") == "2024-01-05T12:00:00-06:00"
    # Fall back: 01:30 happens twice; the first occurrence (CDT) is taken.
    assert dtm.to_datetime("20241103013000", CHICAGO, "X") == "2024-11-03T01:30:00-05:00"


def test_an_explicit_offset_wins_over_the_facility_zone() -> None:
    assert dtm.to_datetime("20240705120000+0200", CHICAGO, "X") == "2024-07-05T12:00:00+02:00"


def test_instant_is_padded_to_seconds_and_date_drops_the_time() -> None:
    assert dtm.to_instant("20240305", UTC, "OBR-22") == "2024-03-05T00:00:00Z"
    assert dtm.to_date("19631226083000-0500", "PID-7") == "1963-12-26"
    assert dtm.has_time("19631226083000") and not dtm.has_time("19631226")


@pytest.mark.parametrize(
    "text", ["20241301", "20240230", "2024-03-05", "0000", "PIDDOB!", "20240305130709-050",
             "20040011211000", "200400", "20040100", "2004010012"]
)
def test_invalid_values_fail_naming_the_path_not_the_value(text: str) -> None:
    with pytest.raises(NormalizeError) as caught:
        dtm.to_datetime(text, UTC, "PID-7")
    assert caught.value.path == "PID-7"
    assert text not in str(caught.value)


def test_lenient_mode_reports_and_reads_as_absent() -> None:
    warnings: list[str] = []
    assert dtm.to_datetime("2024-03-05", UTC, "OBX[2]-14", warn=warnings) is None
    assert warnings and warnings[0].startswith("OBX[2]-14:")


def test_time() -> None:
    assert dtm.to_time("1307", "OBX-5") == "13:07:00"
    assert dtm.to_time("130709.5+0100", "OBX-5") == "13:07:09.5"
    with pytest.raises(NormalizeError):
        dtm.to_time("2507", "OBX-5")
