"""Golden comparisons with ReportStream's per-datatype and per-segment pairs.

Every ``mappinginventory/catchall/**.hl7`` with its ``.fhir`` is converted (time zone UTC: the
ReportStream converter reads timestamps without an offset as UTC) and the clinical facts of
ReportStream's clinical resources (:mod:`golden`) must all appear in ours, except the known
differences listed below with their reason. A new difference fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.normalize import NormalizeContext, normalize

from .golden import bundle_resources, facts

CLINICAL = frozenset(
    {
        "Patient",
        "Observation",
        "DiagnosticReport",
        "ServiceRequest",
        "Specimen",
        "Encounter",
        "RelatedPerson",
        "Immunization",
        "Coverage",
    }
)

# (folder, element) -> why ReportStream has facts we do not produce.
KNOWN_DIFFERENCES: dict[tuple[str, str], str] = {
    ("xad", "line"): "XAD-19 addressee and SAD parts: ReportStream adds them as lines",
    ("hd", "line"): "same XAD-19 addressee line",
    ("dr", "line"): "same XAD line extras",
    ("ormo01", "line"): "same XAD line extras",
    ("dtm/instant", "issued"): "ReportStream writes a year-precision instant (invalid FHIR); "
    "we pad to the second as instant requires",
    ("orcobr", "issued"): "same instant precision",
    ("pv1pv2", "code"): "PV1/PV2 fields not mapped yet (PV1-16 VIP, PV2 codes...)",
    ("pv1pv2", "unit"): "PV2-11 length of stay not mapped",
    ("pv1pv2", "start"): "PV1-5 pre-admit CX period not mapped",
    ("pv1pv2", "end"): "PV1-5 pre-admit CX period not mapped",
    ("ormo01", "code"): "PV1/PD1 extras not mapped",
    ("ormo01", "unit"): "TQ1 / PV2-11 durations not mapped",
    ("ormo01", "occurrenceDateTime"): "TQ1 timing not mapped",
    ("omlo21", "code"): "PD1, PV1 extras, OBR-15 and TQ1 not mapped",
    ("omlo21", "unit"): "TQ1 durations not mapped",
    ("omlo21", "occurrenceDateTime"): "TQ1 timing not mapped",
    ("omlo21", "end"): "PV1-5 period not mapped",
    ("omlo21", "gender"): "ReportStream infers 'unknown' for NK1 without sex",
    ("orur01", "code"): "PV1/PD1 extras not mapped",
    ("orur01", "unit"): "PV2-11 durations not mapped",
    ("orcobr", "code"): "OBR-46/47 and other OBR extras not mapped",
    ("orcobr", "collectedDateTime"): "ReportStream makes a Specimen from OBR-7 without SPM",
    ("ei", "collectedDateTime"): "Specimen from OBR-7 without SPM",
    ("obx", "code"): "OBX-18 device, OBX-25 practitioner role codes not mapped",
    ("obx", "unit"): "ReportStream copies OBX-6 onto every Ratio/Range quantity variant",
    ("obx", "valueString"): "ReportStream keeps both the value and a text rendering",
    ("nm", "code"): "PV2-11 length-of-stay quantity not mapped",
    ("nm", "unit"): "PV2-11 length-of-stay quantity not mapped",
    ("cq/quantity", "unit"): "CQ units CWE-9 original text as unit",
    ("spm", "start"): "invalid SPM-17.2 kept by ReportStream as text",
    ("xtn/contact-point", "start"): "XTN-13/14 on NK1-40: minute precision rendered differently",
    ("xtn/contact-point", "end"): "XTN-13/14 on NK1-40: minute precision rendered differently",
}


def _pairs(corpora_dir: Path) -> list[tuple[str, Path, Path]]:
    root = corpora_dir / "cdc-prime-reportstream" / "mappinginventory" / "catchall"
    return [
        (hl7.parent.relative_to(root).as_posix(), hl7, hl7.with_suffix(".fhir"))
        for hl7 in sorted(root.rglob("*.hl7"))
        if hl7.with_suffix(".fhir").exists()
    ]


def test_clinical_content_matches_reportstream(corpora_dir: Path) -> None:
    ctx = NormalizeContext(facility_id="golden", timezone="UTC", validation="full")
    pairs = _pairs(corpora_dir)
    assert len(pairs) > 200
    compared = 0
    unexpected: list[str] = []
    for folder, hl7_path, fhir_path in pairs:
        result = normalize(hl7_path.read_bytes(), context=ctx)
        expected_resources = [
            r
            for r in bundle_resources(json.loads(fhir_path.read_text()))
            if r["resourceType"] in CLINICAL
        ]
        expected = facts(expected_resources)
        compared += len(expected)
        missing = expected - facts(list(result.resources))
        unexpected.extend(
            f"{hl7_path.name}: {key}={value!r}"
            for key, value in sorted(missing)
            if (folder, key) not in KNOWN_DIFFERENCES
        )
    assert compared > 900  # facts compared (990 when written)
    assert not unexpected, "\n".join(unexpected)


@pytest.mark.parametrize(
    "folder",
    [
        "cx",
        "xpn",
        "xtn/contact-point",
        "dtm/date",
        "dtm/dateTime",
        "cwe/codeable-concept",
        "xcn",
        "pid",
    ],
)
def test_datatype_folders_match_without_exceptions(corpora_dir: Path, folder: str) -> None:
    ctx = NormalizeContext(facility_id="golden", timezone="UTC", validation="full")
    pairs = [p for p in _pairs(corpora_dir) if p[0] == folder]
    assert pairs
    for _, hl7_path, fhir_path in pairs:
        if folder == "xtn/contact-point" and hl7_path.name.startswith(("xtn_18", "xtn_19")):
            continue
        expected = facts(
            [
                r
                for r in bundle_resources(json.loads(fhir_path.read_text()))
                if r["resourceType"] in CLINICAL
            ]
        )
        ours = facts(list(normalize(hl7_path.read_bytes(), context=ctx).resources))
        assert expected <= ours, (hl7_path.name, sorted(expected - ours))
