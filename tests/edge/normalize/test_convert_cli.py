from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import pytest

from edge.cli.convert import run_convert
from edge.cli.exits import CLIError
from edge.config.model import FacilitySettings, Settings

ADT = (
    "MSH|^~\\&|ADT|GH|EHR|GH|20240310013000||ADT^A04^ADT_A01|{ctl}|P|2.5.1\r"
    "PID|1||{mrn}^^^HOSP^MR||Doe^Jane||19700115|F\r"
)


def run(
    path: Path, settings: Settings | None = None, timezone: str | None = None
) -> tuple[int, list[dict[str, Any]], str]:
    out, err = io.StringIO(), io.StringIO()
    status = run_convert(
        argparse.Namespace(file=str(path), timezone=timezone), settings, stdout=out, stderr=err
    )
    return status, [json.loads(line) for line in out.getvalue().splitlines()], err.getvalue()


def test_one_bundle_per_message_as_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "two.hl7"
    path.write_bytes((ADT.format(ctl="1", mrn="11") + ADT.format(ctl="2", mrn="22")).encode())
    status, bundles, err = run(path, timezone="America/Chicago")
    assert status == 0 and err == ""
    assert [b["type"] for b in bundles] == ["transaction", "transaction"]
    assert bundles[0]["timestamp"] == "2024-03-10T01:30:00-06:00"


def test_settings_map_the_assigning_authority(tmp_path: Path) -> None:
    settings = Settings(
        facility=FacilitySettings(
            id="gh",
            timezone="UTC",
            identifier_systems={"HOSP": "urn:oid:1.2.3"},
            unmapped_authority="dead-letter",
        )
    )
    path = tmp_path / "a.hl7"
    path.write_bytes(ADT.format(ctl="1", mrn="11").encode())
    status, bundles, _ = run(path, settings)
    patient = next(
        e["resource"] for e in bundles[0]["entry"] if e["resource"]["resourceType"] == "Patient"
    )
    assert status == 0 and patient["identifier"][0]["system"] == "urn:oid:1.2.3"
    path.write_bytes(ADT.format(ctl="1", mrn="11").replace("HOSP", "ELSE").encode())
    status, bundles, err = run(path, settings)
    assert status == 65 and bundles == []
    assert "PID-3.4" in err and "Doe" not in err


def test_bad_timezone_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CLIError) as caught:
        run(tmp_path / "x.hl7", timezone="Mars/Olympus")
    assert caught.value.status == 64
    with pytest.raises(CLIError) as caught:
        run(tmp_path / "missing.hl7")
    assert caught.value.status == 66
