"""FT1 -> ChargeItem in DFT_P03 (edge.normalize.segments.ft1: the IG has no FT1 map)."""

from __future__ import annotations

from pathlib import Path

from edge.normalize import NormalizeContext, normalize
from tests.corpus import iter_all_messages

MSH = "MSH|^~\\&|BILL|GENHOSP|EHR|GENHOSP|20240310013000||DFT^P03^DFT_P03|F1|P|2.5.1"
PID = "PID|1||12345^^^HOSP^MR||Doe^Jane||19700115|F"
PV1 = "PV1|1|O|CLINIC^1^1||||||||||||||||V100^^^HOSP^VN"


def dft(*segments: str) -> bytes:
    return ("\r".join([MSH, PID, PV1, *segments]) + "\r").encode()


def ft1(fields: dict[int, str]) -> str:
    return "|".join(["FT1", *(fields.get(n, "1" if n == 1 else "") for n in range(1, 27))])


def test_corpus_dft_charges(corpora_dir: Path, ctx: NormalizeContext) -> None:
    messages = dict(iter_all_messages(corpora_dir))
    first = normalize(messages["node-hl7-complete/valid/mieweb/dft-example.hl7#1"], context=ctx)
    second = normalize(messages["node-hl7-complete/valid/mieweb/dft-example.hl7#2"], context=ctx)
    [charge] = first.by_type("ChargeItem")
    assert charge["status"] == "billable"
    assert charge["code"]["coding"][0]["code"] == "73630"  # FT1-7
    assert charge["quantity"] == {"value": 1}  # FT1-10
    assert charge["occurrenceDateTime"].startswith("2008-05-28T11:47:00")  # FT1-4
    [patient] = first.by_type("Patient")
    assert charge["subject"] == {"reference": f"Patient/{patient['id']}"}
    [performer] = charge["performer"]  # FT1-20
    [practitioner] = [
        p for p in first.by_type("Practitioner") if p["id"] in performer["actor"]["reference"]
    ]
    assert practitioner["name"][0]["family"] == "mie"
    [charge2] = second.by_type("ChargeItem")
    assert [r["coding"][0]["code"] for r in charge2["reason"]] == ["440.0", "441.4"]  # FT1-19


def test_linuxforhealth_dft_charge_has_encounter_context(
    corpora_dir: Path, ctx: NormalizeContext
) -> None:
    messages = dict(iter_all_messages(corpora_dir))
    result = normalize(
        messages["linuxforhealth-hl7v2-fhir-converter/inline/Hl7DFTMessageTest_L31.hl7"],
        context=ctx,
    )
    [charge] = result.by_type("ChargeItem")
    [encounter] = result.by_type("Encounter")
    assert charge["context"] == {"reference": f"Encounter/{encounter['id']}"}
    assert charge["code"]["coding"][0]["code"] == "FAKE"


def test_ft1_fields_and_non_charges(ctx: NormalizeContext) -> None:
    raw = dft(
        ft1(
            {
                2: "TX-77^BILL",
                4: "20240301080000^20240301090000",
                5: "20240302",
                6: "CG",
                7: "99213^Office visit^CPT4",
                8: "Established patient",
                10: "2.50",
                19: "J45.909^Asthma^I10",
                20: "5^Welby^Marcus",
                24: "9^Clerk^Carla",
            }
        ),
        "FT1|2|TX-78^BILL||20240301||PY|PAY^Payment",
    )
    result = normalize(raw, context=ctx)
    [charge] = result.by_type("ChargeItem")  # the payment (FT1-6 PY) is not a ChargeItem
    assert charge["identifier"][0]["value"] == "TX-77"
    assert charge["code"]["coding"][0]["code"] == "99213"
    assert charge["occurrencePeriod"] == {
        "start": "2024-03-01T08:00:00-06:00",
        "end": "2024-03-01T09:00:00-06:00",
    }
    assert charge["enteredDate"] == "2024-03-02"
    assert charge["quantity"]["value"] == 2.5
    assert charge["quantity"]["_value"]["extension"][0]["valueInteger"] == 2  # "2.50"
    assert charge["reason"][0]["coding"][0]["code"] == "J45.909"
    families = {p["id"]: p["name"][0]["family"] for p in result.by_type("Practitioner")}
    assert families[charge["enterer"]["reference"].split("/")[1]] == "Clerk"  # FT1-24
    assert families[charge["performer"][0]["actor"]["reference"].split("/")[1]] == "Welby"
    assert any(w.startswith("FT1[2]-6") for w in result.warnings)
    # Resent, the same transaction id updates the same ChargeItem.
    again = normalize(raw.replace(b"|F1|", b"|F2|"), context=ctx)
    assert again.by_type("ChargeItem")[0]["id"] == charge["id"]


def test_ft1_outside_dft_is_not_a_charge(ctx: NormalizeContext) -> None:
    raw = dft("FT1|1|TX-77||20240301||CG|99213").replace(b"DFT^P03^DFT_P03", b"ADT^A08^ADT_A01")
    assert normalize(raw, context=ctx).by_type("ChargeItem") == []
