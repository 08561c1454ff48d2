from __future__ import annotations

import base64
from zoneinfo import ZoneInfo

import pytest

from edge.normalize import NormalizeContext, NormalizeError
from edge.normalize.datatypes import cwe, cx, ed, nm, sn, xad, xpn, xtn

from .conftest import composite

UTC = ZoneInfo("UTC")


def test_cx_maps_the_configured_authority(ctx: NormalizeContext) -> None:
    ident = cx.identifier(composite("12345^^^HOSP^MR"), ctx, "PID-3")
    assert ident == {
        "type": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]
        },
        "system": "urn:oid:2.16.840.1.113883.3.1234",
        "value": "12345",
        "assigner": {"display": "HOSP"},
    }


def test_cx_iso_universal_id_becomes_urn_oid(ctx: NormalizeContext) -> None:
    ident = cx.identifier(composite("9^^^STATE&2.16.840.1.113883.4.1&ISO^SS"), ctx, "PID-3")
    assert ident is not None and ident["system"] == "urn:oid:2.16.840.1.113883.4.1"


def test_cx_unmapped_authority_policies() -> None:
    scoped = NormalizeContext(facility_id="gh", unmapped_authority="facility-uri")
    ident = cx.identifier(composite("77^^^OTHER^MR"), scoped, "PID-3")
    assert ident is not None and ident["system"] == "urn:hie-edge:gh:id:OTHER"
    strict = NormalizeContext(facility_id="gh", unmapped_authority="dead-letter")
    with pytest.raises(NormalizeError) as caught:
        cx.identifier(composite("77^^^OTHER^MR"), strict, "PID-3")
    assert caught.value.fault == "config"
    assert caught.value.path == "PID-3.4"
    assert "77" not in str(caught.value) and "OTHER" not in str(caught.value)


def test_cx_without_value_is_none(ctx: NormalizeContext) -> None:
    assert cx.identifier(composite("^^^HOSP^MR"), ctx, "PID-3") is None


def test_xpn() -> None:
    name = xpn.human_name(composite("Everywoman^Eve^E^Jr^Dr^PhD^L"), UTC, "PID-5")
    assert name == {
        "use": "official",
        "family": "Everywoman",
        "given": ["Eve", "E"],
        "prefix": ["Dr"],
        "suffix": ["Jr", "PhD"],
    }
    assert xpn.human_name(composite("^^^^^^L"), UTC, "PID-5") is None


def test_xad_line_city_state_use_and_county() -> None:
    address = xad.address(
        composite("123 Main St&Main St&123^Apt 4^Springfield^IL^62701^USA^H^^Sangamon"),
        UTC,
        "PID-11",
    )
    assert address == {
        "use": "home",
        "line": ["123 Main St", "Apt 4"],
        "city": "Springfield",
        "district": "Sangamon",
        "state": "IL",
        "postalCode": "62701",
        "country": "USA",
    }


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("^PRN^PH^^1^217^5551234", {"system": "phone", "value": "+1 (217) 5551234", "use": "home"}),
        ("^NET^Internet^eve@example.org", {"system": "email", "value": "eve@example.org"}),
        ("^WPN^CP^^^^^^^^^2175551234", {"system": "phone", "value": "2175551234", "use": "mobile"}),
        ("(217)555-1234", {"system": "phone", "value": "(217)555-1234"}),
    ],
)
def test_xtn(text: str, expected: dict[str, str]) -> None:
    point = xtn.contact_point(composite(text), UTC, "PID-13")
    assert point is not None
    point.pop("extension", None)
    assert point == expected


def test_cwe_code_systems_and_text(ctx: NormalizeContext) -> None:
    concept = cwe.codeable_concept(
        composite("2345-7^Glucose^LN^GLU^Glucose local^99LAB^^^Glucose [Mass/volume]"), ctx
    )
    assert concept == {
        "coding": [
            {"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"},
            {
                "system": "urn:hie-edge:general-hospital:cs:99LAB",
                "code": "GLU",
                "display": "Glucose local",
            },
        ],
        "text": "Glucose [Mass/volume]",
    }
    table = cwe.codeable_concept(composite("F^Female^HL70001"), ctx)
    assert table is not None
    assert table["coding"][0]["system"] == "http://terminology.hl7.org/CodeSystem/v2-0001"
    sct = cwe.codeable_concept(composite("260373001^Detected^SCT"), ctx)
    assert sct is not None and sct["coding"][0]["system"] == "http://snomed.info/sct"
    icd = cwe.codeable_concept(composite("I20.9^Angina^I10"), ctx)
    assert icd is not None and icd["coding"][0]["system"] == "http://hl7.org/fhir/sid/icd-10-cm"


def test_cwe_concept_map_puts_the_fhir_code_first(ctx: NormalizeContext) -> None:
    concept = cwe.codeable_concept(
        composite("H^High^HL70078"), ctx, concept_map="InterpretationCodes"
    )
    assert concept is not None
    assert concept["coding"][0] == {
        "system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
        "code": "H",
        "display": "High",
    }


def test_cwe_results_are_independent_copies(ctx: NormalizeContext) -> None:
    first = cwe.codeable_concept(composite("2345-7^Glucose^LN"), ctx)
    assert first is not None
    first["coding"][0]["code"] = "changed"
    again = cwe.codeable_concept(composite("2345-7^Glucose^LN"), ctx)
    assert again is not None and again["coding"][0]["code"] == "2345-7"


def test_units_ucum_or_text() -> None:
    assert nm.quantity(5.4, composite("mmol/L^^UCUM")) == {
        "value": 5.4,
        "unit": "mmol/L",
        "system": "http://unitsofmeasure.org",
        "code": "mmol/L",
    }
    # Not UCUM as written ("mg/dl"): kept as text, never guessed into a code.
    assert nm.quantity(90, composite("mg/dl")) == {"value": 90, "unit": "mg/dl"}
    assert nm.quantity(1, composite("mg")) == {
        "value": 1,
        "unit": "mg",
        "system": "http://unitsofmeasure.org",
        "code": "mg",
    }


def test_nm() -> None:
    assert nm.decimal("+12.50", "OBX-5") == 12.5
    assert nm.decimal("7", "OBX-5") == 7
    with pytest.raises(NormalizeError):
        nm.decimal("1,5", "OBX-5")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<^10", ("Quantity", {"value": 10, "comparator": "<", "unit": "mg"})),
        (
            "^1^:^128",
            (
                "Ratio",
                {
                    "numerator": {"value": 1, "unit": "mg"},
                    "denominator": {"value": 128, "unit": "mg"},
                },
            ),
        ),
        (
            "^2^-^5",
            ("Range", {"low": {"value": 2, "unit": "mg"}, "high": {"value": 5, "unit": "mg"}}),
        ),
        ("<>^3^+", ("String", "<> 3 +")),
    ],
)
def test_sn(text: str, expected: tuple[str, object]) -> None:
    assert sn.structured_numeric(composite(text), composite("mg^^L")) == expected


def test_ed_base64_and_hex() -> None:
    data = base64.b64encode(b"%PDF-1.4").decode()
    attachment = ed.attachment(composite(f"LAB^AP^PDF^Base64^{data}"), "OBX-5")
    assert attachment == {"contentType": "application/pdf", "data": data, "size": 8}
    hexed = ed.attachment(composite("LAB^TEXT^^Hex^48690a"), "OBX-5")
    assert hexed is not None and base64.b64decode(hexed["data"]) == b"Hi\n"
    with pytest.raises(NormalizeError):
        ed.attachment(composite("LAB^AP^PDF^Base64^not base64!"), "OBX-5")
