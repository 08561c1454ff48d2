"""Specimens: OBR-15 (IG OBR[Specimen] + SPS[Specimen-Source]) when no SPM is sent, and the
SPM fields the IG's SPM[Specimen] map adds (containers, amount, status, identifiers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.normalize import NormalizeContext, normalize
from tests.edge.normalize.golden import bundle_resources, facts
from tests.edge.normalize.support import resource

CATCHALL = "cdc-prime-reportstream/mappinginventory/catchall"
V2_0487 = "http://terminology.hl7.org/CodeSystem/v2-0487"
MSH = "MSH|^~\\&|LAB|GENHOSP|EHR|GENHOSP|20240310013000||{type}|{ctl}|P|{version}"
PID = "PID|1||12345^^^HOSP^MR||Doe^Jane||19700115|F"


def message(*segments: str, type_: str = "ORU^R01^ORU_R01", version: str = "2.5.1") -> bytes:
    header = MSH.format(type=type_, ctl="S1", version=version)
    return ("\r".join([header, *segments]) + "\r").encode()


def spm(fields: dict[int, str]) -> str:
    return "|".join(["SPM", *(fields.get(n, "1" if n == 1 else "") for n in range(1, 33))])


@pytest.mark.parametrize("kind", ["oru", "orm", "oml"])
def test_obr15_specimen_matches_reportstream(corpora_dir: Path, kind: str) -> None:
    # The golden test lists OBR-15 facts as known differences for "orcobr"; these three
    # pairs are exactly OBR[Specimen] and now match in full.
    hl7 = corpora_dir / CATCHALL / "orcobr" / f"{kind}-obr-to-specimen.hl7"
    ctx = NormalizeContext(facility_id="golden", timezone="UTC", validation="full")
    result = normalize(hl7.read_bytes(), context=ctx)
    expected = facts(
        [
            r
            for r in bundle_resources(json.loads(hl7.with_suffix(".fhir").read_text()))
            if r["resourceType"] == "Specimen"
        ]
    )
    assert expected <= facts(result.by_type("Specimen"))
    [specimen] = result.by_type("Specimen")
    assert specimen["type"]["coding"][0]["code"] == "ID"  # SPS-1
    additive = specimen["container"][0]["additiveCodeableConcept"]["coding"][0]
    assert (additive["system"], additive["code"]) == (
        "http://terminology.hl7.org/CodeSystem/v2-0371",
        "BOUIN",
    )  # SPS-2
    site = specimen["collection"]["bodySite"]["coding"][0]
    assert (site["system"], site["code"]) == (
        "http://terminology.hl7.org/CodeSystem/v2-0163",
        "LN",
    )  # SPS-4
    assert specimen["condition"][0]["coding"][0]["code"] == "CMMC"  # SPS-6
    assert specimen["note"][0]["text"] == "Collection Method"  # SPS-3
    assert specimen["collection"]["quantity"] == {"value": 1771}  # OBR-9
    assert specimen["receivedTime"] == "2024-02-20T09:00:00Z"  # OBR-14
    collector = resource(result, specimen["collection"]["collector"])  # OBR-10
    assert collector["name"][0]["family"] == "Collector"
    [request] = result.by_type("ServiceRequest")
    assert request["specimen"] == [{"reference": f"Specimen/{specimen['id']}"}]
    assert specimen["request"] == [{"reference": f"ServiceRequest/{request['id']}"}]
    for report in result.by_type("DiagnosticReport"):
        assert report["specimen"] == request["specimen"]


def test_obr15_in_a_v23_order(corpora_dir: Path, ctx: NormalizeContext) -> None:
    result = normalize(
        (corpora_dir / "cdc-trusted-intermediary/Epic/001_Epic_ORM_O01.hl7").read_bytes(),
        context=ctx,
    )
    [specimen] = result.by_type("Specimen")
    # "URINE" is not a table 0487 code: kept as sent, no v2-0487 coding invented.
    assert specimen["type"]["coding"] == [{"code": "URINE", "display": "Urine"}]
    assert "collection" not in specimen  # OBR-7 is empty (OBR-6 is the request time)
    [request] = result.by_type("ServiceRequest")
    assert request["specimen"] == [{"reference": f"Specimen/{specimen['id']}"}]


def test_obr15_specimen_is_referenced_by_every_result(ctx: NormalizeContext) -> None:
    result = normalize(
        message(
            PID,
            "OBR|1||F1^LAB|24323-8^Metabolic panel^LN|||20240310010000||||||||"
            "BLD&Whole blood&HL70487^^^LA&Left Arm&HL70163",
            "OBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L^^UCUM|||||F",
            "OBX|2|NM|2951-2^Sodium^LN||140|mmol/L^^UCUM|||||F",
            version="2.4",
        ),
        context=ctx,
    )
    [specimen] = result.by_type("Specimen")
    assert specimen["type"]["coding"][0] == {
        "system": V2_0487,
        "code": "BLD",
        "display": "Whole blood",
    }
    assert specimen["collection"]["bodySite"]["coding"][0]["code"] == "LA"
    reference = {"reference": f"Specimen/{specimen['id']}"}
    observations = result.by_type("Observation")
    assert len(observations) == 2
    assert all(o["specimen"] == reference for o in observations)


def test_no_obr15_specimen_when_spm_is_sent(corpora_dir: Path, ctx: NormalizeContext) -> None:
    result = normalize(
        (corpora_dir / CATCHALL / "omlo21" / "oml_o21-full.hl7").read_bytes(), context=ctx
    )
    specimens = result.by_type("Specimen")
    assert len(specimens) == 2  # the two SPM, not a third from OBR-15
    assert all(s["type"]["coding"][0]["code"] != "ID" for s in specimens)
    # SPM-27 container type, SPM-6 additive, SPM-14 description.
    container = specimens[0]["container"][0]
    assert container["type"]["coding"][0]["code"] == "440500777"
    assert container["additiveCodeableConcept"]["coding"][0]["code"] == "440500111"
    assert [n["text"] for n in specimens[0]["note"]] == ["TEST", "TEST2"]


def test_spm_fields_of_the_ig_oml_sample(corpora_dir: Path, ctx: NormalizeContext) -> None:
    result = normalize(
        (corpora_dir / "hl7-v2-to-fhir-ig/test_conversions/OML_O21.hl7").read_bytes(), context=ctx
    )
    [specimen] = result.by_type("Specimen")
    assert specimen["container"] == [
        {
            "type": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/v2-0785",
                        "code": "RT",
                        "display": "Red Top",
                    }
                ]
            }
        }
    ]  # SPM-27
    assert specimen["status"] == "available"  # SPM-20 "Y"
    quantity = specimen["collection"]["quantity"]  # SPM-12 "2^mL&milliliter&UCUM"
    assert (quantity["value"], quantity["code"]) == (2, "mL")
    assert specimen["type"]["coding"][0] == {
        "system": V2_0487,
        "code": "SER",
        "display": "Serum",
    }
    shipment = [
        i for i in specimen["identifier"] if i["type"]["coding"][0]["code"] == "SHIP"
    ]  # SPM-32
    assert [i["value"] for i in shipment] == ["SHP1234"]
    assert specimen["note"][0]["text"].startswith("This is a wonderful blood sample.")


def test_spm_accession_parent_and_unmapped_container_condition(ctx: NormalizeContext) -> None:
    result = normalize(
        message(
            PID,
            "OBR|1||F1^LAB|24323-8^Metabolic panel^LN",
            spm(
                {
                    2: "S1&LAB^S1F&LAB",
                    3: "P0&LAB",
                    4: "BLD^Blood^SCT",
                    28: "XYZ^Cracked^HL70544",
                    30: "ACC-9^^^LAB^ACSN",
                    31: "OTHER-1^^^LAB",
                }
            ),
        ),
        context=ctx,
    )
    [specimen] = result.by_type("Specimen")
    # BLD sent as a SNOMED code: the table-0487 map must not claim it.
    assert [c.get("system") for c in specimen["type"]["coding"]] == ["http://snomed.info/sct"]
    assert specimen["accessionIdentifier"]["value"] == "ACC-9"  # SPM-30
    assert "OTHER-1" in [i["value"] for i in specimen["identifier"]]  # SPM-31
    assert specimen["parent"] == [
        {
            "type": "Specimen",
            "identifier": {
                "type": {
                    "coding": [
                        {"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "PGN"}
                    ]
                },
                "value": "P0",
                "system": "urn:hie-edge:general-hospital:id:LAB",
            },
        }
    ]  # SPM-3
    # SPM-28 (container condition) has no IG map: nothing invented from it.
    assert "container" not in specimen
    assert "Cracked" not in json.dumps(specimen)


def test_obr15_specimen_belongs_to_the_patient_of_its_order(ctx: NormalizeContext) -> None:
    result = normalize(
        message(
            PID,
            "OBR|1||F1^LAB|24323-8^Metabolic panel^LN|||||||||||UR&Urine&HL70487",
            "PID|1||67890^^^HOSP^MR||Roe^Rick||19800101|M",
            "OBR|1||F2^LAB|24323-8^Metabolic panel^LN",
            version="2.4",
        ),
        context=ctx,
    )
    [specimen] = result.by_type("Specimen")
    first = next(p for p in result.by_type("Patient") if p["identifier"][0]["value"] == "12345")
    assert specimen["subject"] == {"reference": f"Patient/{first['id']}"}
