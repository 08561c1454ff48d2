from __future__ import annotations

import json
from typing import Any

import pytest

from edge.normalize import (
    NormalizeContext,
    NormalizeError,
    UnsupportedMessage,
    Validator,
    normalize,
)
from edge.normalize.messages.walk import Z_SEGMENT_URL

MSH = "MSH|^~\\&|LAB|GENHOSP|EHR|GENHOSP|{ts}||{type}|{ctl}|P|2.5.1"
PID = (
    "PID|1||12345^^^HOSP^MR||Doe^Jane^Q||19700115|F|||1 Main St^^Springfield^IL^62701||"
    "^PRN^PH^^1^217^5551234"
)
PV1 = "PV1|1|I|4W^401^A||||1234^Welby^Marcus|||MED|||||||||V100^^^HOSP^VN"


def message(
    *segments: str, type_: str = "ORU^R01^ORU_R01", ctl: str = "C1", ts: str = "20240310013000"
) -> bytes:
    return ("\r".join([MSH.format(ts=ts, type=type_, ctl=ctl), *segments]) + "\r").encode()


def oru(status: str = "F", value: str = "5.4", ctl: str = "C1") -> bytes:
    return message(
        PID,
        PV1,
        "ORC|RE|P1^EHR|F1^LAB",
        "OBR|1|P1^EHR|F1^LAB|24323-8^Metabolic panel^LN|||20240310010000|||||||||||||||"
        f"20240310013000|||{status}",
        f"OBX|1|NM|2345-7^Glucose^LN||{value}|mmol/L^^UCUM|3.9-5.5|N|||{status}|||20240310010000",
        "NTE|1||fasting sample",
        "OBX|2|ST|8251-1^Note^LN||see comment||||||F",
        "SPM|1|S1&EHR^F1&LAB||119297000^Blood^SCT|||||||||||||20240310005000",
        ctl=ctl,
    )


def one(result: Any, resource_type: str) -> dict[str, Any]:
    found = result.by_type(resource_type)
    assert len(found) == 1, [r["resourceType"] for r in result.resources]
    resource: dict[str, Any] = found[0]
    return resource


def test_oru_maps_report_results_specimen_and_notes(ctx: NormalizeContext) -> None:
    result = normalize(oru(), context=ctx)
    patient = one(result, "Patient")
    report = one(result, "DiagnosticReport")
    observations = result.by_type("Observation")
    assert patient["birthDate"] == "1970-01-15" and patient["gender"] == "female"
    assert result.patient_key == "urn:oid:2.16.840.1.113883.3.1234|12345"
    assert report["status"] == "final"
    assert report["code"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "24323-8",
        "display": "Metabolic panel",
    }
    assert report["issued"] == "2024-03-10T01:30:00-06:00"
    assert [r["reference"] for r in report["result"]] == [
        f"Observation/{o['id']}" for o in observations
    ]
    glucose = observations[0]
    assert glucose["valueQuantity"] == {
        "value": 5.4,
        "unit": "mmol/L",
        "system": "http://unitsofmeasure.org",
        "code": "mmol/L",
    }
    assert glucose["effectiveDateTime"] == "2024-03-10T01:00:00-06:00"
    assert glucose["note"] == [{"text": "fasting sample"}]
    assert glucose["subject"] == {"reference": f"Patient/{patient['id']}"}
    assert observations[1]["valueString"] == "see comment"
    specimen = one(result, "Specimen")
    assert report["specimen"] == [{"reference": f"Specimen/{specimen['id']}"}]
    assert specimen["collection"]["collectedDateTime"] == "2024-03-10T00:50:00-06:00"
    encounter = one(result, "Encounter")
    assert encounter["class"]["code"] == "IMP"
    assert all(r["meta"]["source"] == "urn:hie-edge:general-hospital#C1" for r in result.resources)


def test_a_correction_updates_the_same_observation(ctx: NormalizeContext) -> None:
    first = normalize(oru("F", "5.4", ctl="C1"), context=ctx)
    corrected = normalize(oru("C", "5.9", ctl="C2"), context=ctx)
    before, after = first.by_type("Observation")[0], corrected.by_type("Observation")[0]
    assert before["id"] == after["id"]
    assert after["status"] == "corrected" and after["valueQuantity"]["value"] == 5.9
    assert one(first, "Patient")["id"] == one(corrected, "Patient")["id"]
    assert one(first, "DiagnosticReport")["id"] == one(corrected, "DiagnosticReport")["id"]
    # Each message keeps its own source and Provenance.
    assert one(first, "Provenance")["id"] != one(corrected, "Provenance")["id"]


def test_a08_updates_the_patient_of_the_a01(ctx: NormalizeContext) -> None:
    a01 = normalize(message(PID, PV1, type_="ADT^A01^ADT_A01", ctl="A1"), context=ctx)
    renamed = PID.replace("Doe^Jane", "Smith^Jane")
    a08 = normalize(message(renamed, PV1, type_="ADT^A08", ctl="A2"), context=ctx)
    assert a08.structure == "ADT_A01"  # from the trigger event: MSH-9.3 missing
    assert one(a01, "Patient")["id"] == one(a08, "Patient")["id"]
    assert one(a08, "Patient")["name"][0]["family"] == "Smith"
    assert one(a01, "Encounter")["id"] == one(a08, "Encounter")["id"]


def test_a03_finishes_the_encounter(ctx: NormalizeContext) -> None:
    pv1 = PV1 + "|" * (44 - 19) + "20240309080000|20240310120000"  # PV1-44, PV1-45
    result = normalize(message(PID, pv1, type_="ADT^A03", ctl="A3"), context=ctx)
    encounter = one(result, "Encounter")
    assert encounter["status"] == "finished"
    assert encounter["period"] == {
        "start": "2024-03-09T08:00:00-06:00",
        "end": "2024-03-10T12:00:00-05:00",
    }  # DST began 03-10


def test_a40_merge_links_survivor_and_replaced(ctx: NormalizeContext) -> None:
    result = normalize(message(PID, "MRG|999^^^HOSP^MR", type_="ADT^A40^ADT_A39"), context=ctx)
    patients = {p["identifier"][0]["value"]: p for p in result.by_type("Patient")}
    survivor, old = patients["12345"], patients["999"]
    assert old["active"] is False
    assert old["link"] == [
        {"other": {"reference": f"Patient/{survivor['id']}"}, "type": "replaced-by"}
    ]
    assert survivor["link"] == [
        {"other": {"reference": f"Patient/{old['id']}"}, "type": "replaces"}
    ]
    assert result.patient_key == "urn:oid:2.16.840.1.113883.3.1234|12345"


def test_vxu_immunization(ctx: NormalizeContext) -> None:
    result = normalize(
        message(
            PID,
            "ORC|RE||IZ-77^DCS",
            "RXA|0|1|20210516||208^Pfizer COVID-19^CVX|0.3|mL^^UCUM||00^New record^NIP001||||||"
            "EW0150|20211231|PFR^Pfizer^MVX|||CP|A",
            "RXR|C28161^Intramuscular^NCIT|LD^Left deltoid^HL70163",
            "OBX|1|CE|64994-7^Eligibility^LN|1|V01^Not VFC eligible^HL70064||||||F",
            type_="VXU^V04^VXU_V04",
        ),
        context=ctx,
    )
    immunization = one(result, "Immunization")
    assert immunization["status"] == "completed"
    assert immunization["vaccineCode"]["coding"][0] == {
        "system": "http://hl7.org/fhir/sid/cvx",
        "code": "208",
        "display": "Pfizer COVID-19",
    }
    assert immunization["occurrenceDateTime"] == "2021-05-16"
    assert immunization["lotNumber"] == "EW0150"
    assert immunization["expirationDate"] == "2021-12-31"
    assert immunization["doseQuantity"]["value"] == 0.3
    assert immunization["primarySource"] is True
    assert immunization["site"]["coding"][0]["code"] == "LD"
    observation = one(result, "Observation")
    assert observation["partOf"] == [{"reference": f"Immunization/{immunization['id']}"}]


def test_mdm_document(ctx: NormalizeContext) -> None:
    result = normalize(
        message(
            PID,
            "TXA|1|CN^Consult note^HL70270|TX|||20240310083000||||||DOC-1^EHR|||||AU||AV",
            "OBX|1|TX|NOTE^Note||line one~line two||||||F",
            type_="MDM^T02^MDM_T02",
        ),
        context=ctx,
    )
    document = one(result, "DocumentReference")
    assert document["status"] == "current" and document["docStatus"] == "final"
    assert document["masterIdentifier"]["value"] == "DOC-1"
    import base64

    text = base64.b64decode(document["content"][0]["attachment"]["data"]).decode()
    assert text == "line one\nline two"
    assert not result.by_type("Observation")


def test_siu_appointment(ctx: NormalizeContext) -> None:
    result = normalize(
        message(
            "SCH|P1^EHR|F1^SCHED|||||ROUTINE^Routine^HL70276|FOLLOWUP^Follow up^HL70277|30|min|"
            "^^^20240311090000^20240311093000||||||||||||||Booked",
            PID,
            "AIS|1||99213^Office visit^C4",
            type_="SIU^S12^SIU_S12",
        ),
        context=ctx,
    )
    appointment = one(result, "Appointment")
    assert appointment["status"] == "booked"
    assert appointment["start"] == "2024-03-11T09:00:00-05:00"
    assert appointment["participant"][0]["actor"]["reference"].startswith("Patient/")


def test_z_segments_are_kept(ctx: NormalizeContext) -> None:
    result = normalize(message(PID, "ZPD|1|custom^data", type_="ADT^A04^ADT_A01"), context=ctx)
    header = one(result, "MessageHeader")
    assert header["extension"] == [{"url": Z_SEGMENT_URL, "valueString": "ZPD|1|custom^data"}]


def test_unsupported_and_dead_letter_errors(ctx: NormalizeContext) -> None:
    with pytest.raises(UnsupportedMessage):
        normalize(message("MSA|AA|X", type_="ACK^A01^ACK"), context=ctx)
    strict = NormalizeContext(facility_id="gh", unmapped_authority="dead-letter")
    with pytest.raises(NormalizeError) as caught:
        normalize(message(PID.replace("HOSP", "ELSEWHERE"), type_="ADT^A04"), context=strict)
    assert caught.value.fault == "config" and caught.value.path == "PID-3.4"


def test_invalid_optional_values_are_dropped_with_a_warning(ctx: NormalizeContext) -> None:
    result = normalize(message(PID.replace("19700115", "PIDDOB!"), type_="ADT^A04"), context=ctx)
    assert "birthDate" not in one(result, "Patient")
    assert result.warnings == ("PID-7: not a valid DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ])",)


def test_repr_and_errors_carry_no_phi(ctx: NormalizeContext) -> None:
    result = normalize(oru(), context=ctx)
    text = repr(result)
    assert "12345" not in text and "Doe" not in text and "C1" in text


def test_bundle_is_a_transaction_of_puts(ctx: NormalizeContext) -> None:
    result = normalize(oru(), context=ctx)
    bundle = json.loads(result.bundle_json())
    assert bundle["type"] == "transaction"
    assert bundle["timestamp"] == "2024-03-10T01:30:00-06:00"
    for entry in bundle["entry"]:
        resource = entry["resource"]
        assert entry["request"] == {
            "method": "PUT",
            "url": f"{resource['resourceType']}/{resource['id']}",
        }
    provenance = one(result, "Provenance")
    assert len(provenance["target"]) == len(result.resources) - 1


def test_shape_validation_agrees_with_full_validation(ctx: NormalizeContext) -> None:
    full, shaped = Validator("full"), Validator("shape")
    for ctl in ("S1", "S2", "S3"):
        for resource in normalize(oru(ctl=ctl), context=ctx, validator=full).resources:
            shaped.validate(resource)
    assert shaped.model_validations < full.model_validations
    bad = dict(normalize(oru(), context=ctx).by_type("Observation")[0])
    bad["status"] = "done"
    with pytest.raises(NormalizeError):
        shaped.validate(bad)
