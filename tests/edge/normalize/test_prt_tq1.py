"""PRT (participation) and TQ1 (timing/quantity) mapping: IG PRT[PractitionerRole],
PRT[Device], PRT[Observation-Location] in the contexts the ORU_R01 / OML_O21 / VXU_V04 message
maps give them, and TQ1[ServiceRequest]."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.normalize import NormalizeContext, NormalizedMessage, normalize
from edge.normalize.segments.prt import EVENT_LOCATION_URL
from tests.corpus import iter_all_messages
from tests.edge.normalize.golden import bundle_resources, facts
from tests.edge.normalize.support import resource

MSH = "MSH|^~\\&|LAB|GENHOSP|EHR|GENHOSP|20240310013000||{type}|{ctl}|P|2.8"
PID = "PID|1||12345^^^HOSP^MR||Doe^Jane||19700115|F"
PV1 = "PV1|1|I|4W^401^A||||||||||||||||V100^^^HOSP^VN"


def message(*segments: str, type_: str = "ORU^R01^ORU_R01", ctl: str = "P1") -> bytes:
    return ("\r".join([MSH.format(type=type_, ctl=ctl), *segments]) + "\r").encode()


def role_of(result: NormalizedMessage, reference: dict[str, str]) -> tuple[str, str]:
    """(PRT-4 code, practitioner family name) of a PractitionerRole reference."""
    role = resource(result, reference)
    assert role["resourceType"] == "PractitionerRole"
    practitioner = resource(result, role["practitioner"])
    return role["code"][0]["coding"][0]["code"], practitioner["name"][0]["family"]


def read(corpora_dir: Path, relative: str) -> bytes:
    return (corpora_dir / relative).read_bytes()


# -- PRT: corpus ------------------------------------------------------------------------------


def test_prt_after_obx_gives_device_location_and_performer(
    corpora_dir: Path, ctx: NormalizeContext
) -> None:
    # ReportStream's PRT[Device] sample: a PRT after an OBX with PRT-5, -8, -9, -10, -14 valued.
    result = normalize(
        read(corpora_dir, "cdc-prime-reportstream/mappinginventory/catchall/prt/prt-to-device.hl7"),
        context=ctx,
    )
    [observation] = result.by_type("Observation")
    device = resource(result, observation["device"])
    assert device["identifier"][0]["value"] == "CDC_3015822725"
    assert device["identifier"][0]["system"] == "urn:oid:1.111.122311.222.44.2.3.3"
    assert device["lotNumber"] == "LOT1A"
    assert device["serialNumber"] == "SERIAL32"
    assert device["distinctIdentifier"] == "DonorID"
    assert device["expirationDate"] == "2025-05-01T10:25:31-04:00"
    assert device["type"]["coding"][0]["code"] == "TestDeviceType"
    # PRT-9 (PL) and PRT-14 (XAD) -> two event-location extensions.
    locations = [
        resource(result, e["valueReference"])
        for e in observation["extension"]
        if e["url"] == EVENT_LOCATION_URL
    ]
    assert [loc.get("address", {}).get("city") for loc in locations] == [None, "THUNDER MOUNTAIN"]
    assert locations[0]["name"].startswith("CDC Atlanta")
    # PRT-5 -> performer: a PractitionerRole with the practitioner, organization and period.
    [performer] = observation["performer"]
    role = resource(result, performer)
    assert role["code"][0]["coding"][0]["code"] == "ParticipationTest"
    assert role["period"] == {
        "start": "2023-05-01T10:25:31-04:00",
        "end": "2023-06-01T10:25:31-04:00",
    }
    practitioner = resource(result, role["practitioner"])
    assert practitioner["name"][0]["family"] == "BEETHOVEN"
    assert "PHD" in practitioner["name"][0]["suffix"]  # XCN-21 professional suffix
    assert practitioner["address"][0]["city"] == "THUNDER MOUNTAIN"  # PRT-14
    assert resource(result, role["organization"])["name"] == "TestOrg"  # PRT-8
    assert role["telecom"][0]["value"] == "123-555-1234"


def test_prt_golden_folder_has_no_missing_facts(corpora_dir: Path) -> None:
    # The golden test lists "prt" facts as known differences; now every one is produced.
    root = corpora_dir / "cdc-prime-reportstream" / "mappinginventory" / "catchall" / "prt"
    ctx = NormalizeContext(facility_id="golden", timezone="UTC", validation="full")
    clinical = {"Patient", "Observation", "DiagnosticReport", "ServiceRequest", "Specimen"}
    for hl7 in sorted(root.glob("*.hl7")):
        expected = facts(
            [
                r
                for r in bundle_resources(json.loads(hl7.with_suffix(".fhir").read_text()))
                if r["resourceType"] in clinical
            ]
        )
        ours = facts(list(normalize(hl7.read_bytes(), context=ctx).resources))
        assert expected <= ours, sorted(expected - ours)


def test_prt_with_device_only(corpora_dir: Path, ctx: NormalizeContext) -> None:
    result = normalize(
        read(
            corpora_dir,
            "cdc-prime-reportstream/mappinginventory/catchall/ei/EI-to-Device-UDI-Carrier.hl7",
        ),
        context=ctx,
    )
    [observation] = result.by_type("Observation")
    assert resource(result, observation["device"])["identifier"][0]["value"] == "CDC_3015822725"
    assert "performer" not in observation
    assert not result.by_type("PractitionerRole")


def test_result_copies_to_is_not_mapped_as_the_ig_says(
    corpora_dir: Path, ctx: NormalizeContext
) -> None:
    # The IG's own ORU_R01 test message: PRT-4 RCT (result copies to) after OBR has no target
    # in the ORU_R01 message map.
    result = normalize(
        read(corpora_dir, "hl7-v2-to-fhir-ig/test_conversions/ORU_R01.hl7"), context=ctx
    )
    assert not result.by_type("PractitionerRole")
    [report] = result.by_type("DiagnosticReport")
    assert "performer" not in report


# -- PRT: each context of the message maps ---------------------------------------------------

ORDER = [
    PID,
    "PRT||AD||PP^Primary Care Provider^HL70912|"
    "111^Primary^Paula^^^^^^NPI&2.16.840.1.113883.4.6&ISO",
    PV1,
    "PRT||AD||AT^Attending^HL70912|222^Attending^Al",
    "ORC|RE|P1^EHR|F1^LAB",
    "PRT||AD||OP^Ordering Provider^HL70912|333^Orderer^Olga|||LabCorp^^^^^^^^^05D0000000",
    "OBR|1|P1^EHR|F1^LAB|24323-8^Metabolic panel^LN|||20240310010000||||||||||||||"
    "20240310013000|||F",
    "PRT||AD||PRI^Principal Result Interpreter^HL70912|444^Interpreter^Ida",
    "PRT||AD||TN^Technician^HL70912|555^Tech^Tom",
    "PRT||D||TR^Transcriptionist^HL70912|666^Deleted^Dan",
    "PRT||AD||SC^Specimen Collector^HL70912|777^Collector^Cora",
    "PRT||AD||RCT^Result Copies To^HL70912|888^Copies^Carl",
    "OBX|1|NM|2345-7^Glucose^LN||5.4|mmol/L^^UCUM|||||F",
    "PRT||AD||RO^Responsible Observer^HL70912|999^Observer^Otto",
    "SPM|1|S1&LAB||BLD^Whole blood^HL70487",
]


def test_prt_in_each_context_of_an_oru(ctx: NormalizeContext) -> None:
    result = normalize(message(*ORDER), context=ctx)
    [patient] = result.by_type("Patient")
    [general] = patient["generalPractitioner"]
    assert role_of(result, general) == ("PP", "Primary")
    [encounter] = result.by_type("Encounter")
    assert [role_of(result, p["individual"]) for p in encounter["participant"]][-1] == (
        "AT",
        "Attending",
    )
    [request] = result.by_type("ServiceRequest")
    assert role_of(result, request["requester"]) == ("OP", "Orderer")
    assert (
        resource(result, resource(result, request["requester"])["organization"])["identifier"][0][
            "value"
        ]
        == "05D0000000"
    )
    [report] = result.by_type("DiagnosticReport")
    assert [role_of(result, r) for r in report["resultsInterpreter"]] == [("PRI", "Interpreter")]
    # TR was deleted (PRT-2 D): only the technician performs.
    assert [role_of(result, r) for r in report["performer"]] == [("TN", "Tech")]
    [specimen] = result.by_type("Specimen")
    assert role_of(result, specimen["collection"]["collector"]) == ("SC", "Collector")
    [observation] = result.by_type("Observation")
    assert [role_of(result, r) for r in observation["performer"]] == [("RO", "Observer")]
    families = {n["family"] for p in result.by_type("Practitioner") for n in p.get("name", [])}
    assert "Copies" not in families and "Deleted" not in families


def test_ordering_provider_prt_does_not_replace_orc_12(ctx: NormalizeContext) -> None:
    segments = [s for s in ORDER]
    segments[4] = "ORC|RE|P1^EHR|F1^LAB|||||||||12^Welby^Marcus"
    result = normalize(message(*segments), context=ctx)
    [request] = result.by_type("ServiceRequest")
    assert resource(result, request["requester"])["resourceType"] == "Practitioner"


def test_prt_in_a_vxu_order_is_an_immunization_performer(ctx: NormalizeContext) -> None:
    result = normalize(
        message(
            PID,
            "ORC|RE||IZ-1^LAB",
            "PRT||AD||AP^Administering Provider^HL70443|101^Giver^Gina",
            "PRT||AD||OP^Ordering Provider^HL70443|102^Orderer^Oscar",
            "RXA|0|1|20240301||08^HepB^CVX|0.5|mL^^UCUM",
            type_="VXU^V04^VXU_V04",
        ),
        context=ctx,
    )
    [immunization] = result.by_type("Immunization")
    performers = [
        (p["function"]["coding"][0], role_of(result, p["actor"]))
        for p in immunization["performer"]
        if p["actor"]["reference"].startswith("PractitionerRole/")
    ]
    system = "http://terminology.hl7.org/CodeSystem/v2-0443"
    assert performers == [
        ({"system": system, "code": "AP"}, ("AP", "Giver")),
        ({"system": system, "code": "OP"}, ("OP", "Orderer")),
    ]


def test_same_prt_in_two_messages_is_one_practitioner_role(ctx: NormalizeContext) -> None:
    first = normalize(message(*ORDER, ctl="A"), context=ctx)
    second = normalize(message(*ORDER, ctl="B"), context=ctx)
    ids = [{r["id"] for r in m.by_type("PractitionerRole")} for m in (first, second)]
    assert ids[0] == ids[1] and len(ids[0]) >= 6


# -- TQ1 --------------------------------------------------------------------------------------


def test_tq1_priority_after_obr(corpora_dir: Path, ctx: NormalizeContext) -> None:
    result = normalize(
        read(corpora_dir, "cdc-trusted-intermediary/NewSTEPs/002_NewSTEPs_ORU_R01.hl7"),
        context=ctx,
    )
    # TQ1-9 R^Routine^HL70485 after the first OBR; the other orders send no TQ1.
    assert result.by_type("ServiceRequest")[0].get("priority") == "routine"


def test_tq1_start_and_end(corpora_dir: Path) -> None:
    ctx = NormalizeContext(facility_id="t", timezone="UTC", validation="full")
    result = normalize(
        read(corpora_dir, "node-hl7-complete/valid/athena-health/oru-example.hl7"), context=ctx
    )
    [request] = result.by_type("ServiceRequest")
    assert request["priority"] == "routine"
    assert request["occurrenceTiming"]["repeat"]["boundsPeriod"] == {
        "start": "2014-10-23T13:22:00-06:00",
        "end": "2014-10-23T13:22:00-06:00",
    }


@pytest.mark.parametrize(
    "name", ["hapi-hl7v2/example_oml_o21.hl7", "nhapi/Parser/OML_O21_messages.txt"]
)
def test_tq1_before_obr_in_oml(corpora_dir: Path, ctx: NormalizeContext, name: str) -> None:
    # OML_O21 ORDER.TIMING: ORC, TQ1 (TQ1-9 "A" -> asap), then OBR. Left out: the other
    # structures in those files, and messages with an empty MSH-10 (intake refuses them).
    requests = [
        r
        for mid, raw in iter_all_messages(corpora_dir)
        if mid.startswith(name) and b"OML^O21" in raw and b"|||OML^O21||" not in raw
        for r in normalize(raw, context=ctx).by_type("ServiceRequest")
    ]
    assert len(requests) >= 6
    assert {r.get("priority") for r in requests} == {"asap"}


def test_tq1_full_timing(ctx: NormalizeContext) -> None:
    result = normalize(
        message(
            PID,
            "ORC|NW|P9^EHR",
            "TQ1|1|2^{tbl}&tablet&UCUM|Q6H&Every 6 hours&HL70335^^^^6^h&hour&UCUM^^AC|0800~2000|"
            "30^min&minute&UCUM|3^d&day&UCUM|20240310080000||S^Stat^HL70485||Take with water||"
            "15.0^min&minute&UCUM|12",
            "OBR|1|P9^EHR||24323-8^Metabolic panel^LN",
            type_="OML^O21^OML_O21",
        ),
        context=ctx,
    )
    [request] = result.by_type("ServiceRequest")
    assert request["priority"] == "stat"
    assert request["quantityQuantity"]["value"] == 2
    timing = request["occurrenceTiming"]
    assert timing["code"]["coding"][0]["code"] == "Q6H"
    repeat = timing["repeat"]
    assert (repeat["period"], repeat["periodUnit"], repeat["when"]) == (6, "h", ["AC"])
    assert repeat["timeOfDay"] == ["08:00:00", "20:00:00"]
    assert repeat["offset"] == 30  # TQ1-5, minutes (there is a when)
    # TQ1-6 with only TQ1-7: the end is start + 3 days.
    assert repeat["boundsPeriod"] == {
        "start": "2024-03-10T08:00:00-05:00",
        "end": "2024-03-13T08:00:00-05:00",
    }
    assert (repeat["duration"], repeat["durationUnit"]) == (15.0, "min")
    assert repeat["_duration"]["extension"][0]["valueInteger"] == 1  # "15.0" kept
    assert repeat["countMax"] == 12
    assert request["note"] == [{"text": "Take with water"}]


def test_tq1_duration_without_dates_and_unknown_units(ctx: NormalizeContext) -> None:
    result = normalize(
        message(
            PID,
            "ORC|NW|P9^EHR",
            "OBR|1|P9^EHR||24323-8^Metabolic panel^LN",
            "TQ1|1||||30^min&minute&UCUM|2^wk&week&UCUM|||Z^Unknown^HL70485||||5^xx",
            "TQ1|2|||||||||R^Routine^HL70485",
        ),
        context=ctx,
    )
    [request] = result.by_type("ServiceRequest")
    repeat = request["occurrenceTiming"]["repeat"]
    assert repeat["boundsDuration"]["code"] == "wk"
    assert "offset" not in repeat  # no ``when``: an offset would break tim-9
    assert "duration" not in repeat  # "xx" is not a unit of time
    assert "priority" not in request  # Z is not in the map; the second TQ1 is ignored
