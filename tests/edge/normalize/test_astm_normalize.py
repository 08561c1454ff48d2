"""ASTM E1394 (LIS2-A2) messages -> FHIR R4: the clinical content of what comes out.

The messages are written for these tests after the record layouts of E1394 sections 7-13;
people, ids and values are made up. The facility's zone is America/Chicago: CDT (-05:00) on
2026-03-15 (DST began 2026-03-08), CST (-06:00) in January.
"""

from __future__ import annotations

import json
import pickle
import uuid
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.astm.profile import DeviceProfile
from edge.er7 import parse
from edge.normalize import NormalizeContext, NormalizeError, UnsupportedMessage
from edge.normalize.astm import normalize_astm
from edge.normalize.conversion import Conversion
from edge.normalize.result import NormalizedMessage
from edge.processing.worker import Converted, Failed, convert

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
COBAS = "http://lab.example.org/codes/cobas"


def astm(*records: str, codec: str = "latin-1") -> bytes:
    return "".join(r + "\r" for r in records).encode(codec)


CHEM_PANEL = astm(
    "H|\\^&|||COBAS-C311^1.04^SN-880021|||||LIS||P|LIS2-A2|20260315093012",
    "P|1|MRN-4410|LAB-77|NAT-9|MILLER^ANNA^M^JR^DR|SMITH|19580704|F",
    "O|1|S-26031501|C311-0042|^^^GLU\\^^^BUN\\^^^CREA\\^^^NA\\^^^K|S|20260315081500"
    "|20260315080000||||N||||SERUM||||||||||F",
    "R|1|^^^GLU^Glucose|182|mg/dL|70 to 105|H||F||OP1|20260315090000|20260315091000|C311",
    "R|2|^^^BUN^Urea nitrogen|14|mg/dL|7 to 20|N||F||OP1|20260315090000|20260315091100|C311",
    "R|3|^^^CREA^Creatinine|0.9|mg/dL|0.6 to 1.1|N||F||OP1|20260315090000|20260315091200|C311",
    "R|4|^^^NA^Sodium|128|mmol/L|136 to 145|L||F||OP1|20260315090000|20260315091300|C311",
    "R|5|^^^K^Potassium|4.1|mmol/L|3.5 to 5.1|N||F||OP1|20260315090000|20260315091400|C311",
    "L|1|N",
)


@pytest.fixture
def ctx() -> NormalizeContext:
    return NormalizeContext(facility_id="general-hospital", timezone="America/Chicago",
                            validation="full")


def run(raw: bytes, ctx: NormalizeContext, profile: DeviceProfile | None = None,
        ) -> NormalizedMessage:
    return normalize_astm(raw, context=ctx, profile=profile or DeviceProfile(COBAS))


def by_code(message: NormalizedMessage) -> dict[str, dict[str, Any]]:
    """Observations by their (last) coding's code."""
    return {o["code"]["coding"][-1]["code"]: o for o in message.by_type("Observation")}


def quantity(observation: dict[str, Any]) -> tuple[Any, ...]:
    q = observation["valueQuantity"]
    return (q.get("comparator"), q["value"], q.get("unit"), q.get("system"), q.get("code"))


def flag(observation: dict[str, Any]) -> str | None:
    found = observation.get("interpretation")
    if not found:
        return None
    coding = found[0]["coding"][0]
    assert coding["system"] == INTERPRETATION
    return str(coding["code"])


# -- a chemistry panel ------------------------------------------------------------------------

def test_chemistry_panel_results(ctx: NormalizeContext) -> None:
    message = run(CHEM_PANEL, ctx)
    assert (message.message_type, message.control_id) == ("ASTM^E1394", "20260315093012")
    assert message.timestamp == "2026-03-15T09:30:12-05:00"
    observations = by_code(message)
    assert list(observations) == ["GLU", "BUN", "CREA", "NA", "K"]
    glucose = observations["GLU"]
    assert glucose["code"] == {"coding": [{"system": COBAS, "code": "GLU", "display": "Glucose"}]}
    assert quantity(glucose) == (None, 182, "mg/dL", UCUM, "mg/dL")
    assert quantity(observations["CREA"]) == (None, 0.9, "mg/dL", UCUM, "mg/dL")
    assert quantity(observations["NA"]) == (None, 128, "mmol/L", UCUM, "mmol/L")
    assert {c: flag(o) for c, o in observations.items()} == \
        {"GLU": "H", "BUN": "N", "CREA": "N", "NA": "L", "K": "N"}
    assert {o["status"] for o in observations.values()} == {"final"}
    assert glucose["referenceRange"] == [{
        "low": {"value": 70, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
        "high": {"value": 105, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
        "text": "70 to 105"}]
    # Effective = O-8 (specimen collection); issued = R-13 (completed); both in CDT.
    assert glucose["effectiveDateTime"] == "2026-03-15T08:00:00-05:00"
    assert glucose["issued"] == "2026-03-15T09:10:00-05:00"
    assert observations["K"]["issued"] == "2026-03-15T09:14:00-05:00"
    assert glucose["category"][0]["coding"][0]["code"] == "laboratory"
    [device] = message.by_type("Device")
    assert glucose["device"] == {"reference": f"Device/{device['id']}", "display": "C311"}
    assert device["deviceName"] == [{"name": "COBAS-C311", "type": "user-friendly-name"}]
    assert (device["serialNumber"], device["version"]) == ("SN-880021", [{"value": "1.04"}])


def test_chemistry_panel_patient_orders_and_report(ctx: NormalizeContext) -> None:
    message = run(CHEM_PANEL, ctx)
    [patient] = message.by_type("Patient")
    system = "urn:hie-edge:general-hospital:id:astm-practice-patient-id"
    assert patient["identifier"] == [
        {"system": system, "value": "MRN-4410"},
        {"system": "urn:hie-edge:general-hospital:id:astm-laboratory-patient-id",
         "value": "LAB-77"},
        {"system": "urn:hie-edge:general-hospital:id:astm-patient-id-3", "value": "NAT-9"}]
    assert message.patient_key == f"{system}|MRN-4410"
    assert patient["name"] == [{"family": "MILLER", "given": ["ANNA", "M"], "prefix": ["DR"],
                                "suffix": ["JR"]}]
    assert (patient["birthDate"], patient["gender"]) == ("1958-07-04", "female")
    assert patient["extension"] == [{
        "url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName",
        "valueString": "SMITH"}]
    subject = {"reference": f"Patient/{patient['id']}"}

    [specimen] = message.by_type("Specimen")
    assert specimen["accessionIdentifier"]["value"] == "S-26031501"
    assert [i["value"] for i in specimen["identifier"]] == ["S-26031501", "C311-0042"]
    assert specimen["type"] == {"text": "SERUM"}
    assert specimen["collection"] == {"collectedDateTime": "2026-03-15T08:00:00-05:00"}

    requests = message.by_type("ServiceRequest")
    assert [r["code"]["coding"][0]["code"] for r in requests] == ["GLU", "BUN", "CREA", "NA", "K"]
    assert {(r["status"], r["intent"], r["priority"]) for r in requests} == \
        {("completed", "order", "stat")}
    assert all(r["subject"] == subject for r in requests)
    assert {r["requisition"]["value"] for r in requests} == {"S-26031501"}
    assert requests[0]["authoredOn"] == "2026-03-15T08:15:00-05:00"
    observations = by_code(message)
    for request in requests:
        code = request["code"]["coding"][0]["code"]
        assert observations[code]["basedOn"] == [{"reference": f"ServiceRequest/{request['id']}"}]
        assert observations[code]["subject"] == subject
        assert observations[code]["specimen"] == {"reference": f"Specimen/{specimen['id']}"}

    [report] = message.by_type("DiagnosticReport")
    assert report["status"] == "final"  # O-26 F
    assert report["code"]["coding"][0] == {"system": LOINC, "code": "11502-2",
                                           "display": "Laboratory report"}
    assert report["result"] == [{"reference": f"Observation/{o['id']}"}
                                for o in observations.values()]
    assert report["effectiveDateTime"] == "2026-03-15T08:00:00-05:00"
    assert report["issued"] == "2026-03-15T09:14:00-05:00"  # the last result's
    assert len(report["basedOn"]) == 5

    [provenance] = message.by_type("Provenance")
    assert provenance is message.resources[-1]
    assert {t["reference"] for t in provenance["target"]} == \
        {f"{r['resourceType']}/{r['id']}" for r in message.resources[:-1]}
    assert provenance["recorded"] == "2026-03-15T09:30:12-05:00"
    assert provenance["activity"]["coding"][0]["code"] == "CREATE"
    [device] = message.by_type("Device")
    assert provenance["agent"][0]["who"] == {"display": "COBAS-C311",
                                             "reference": f"Device/{device['id']}"}
    assert provenance["entity"][0]["what"]["identifier"] == {
        "system": "urn:hie-edge:general-hospital", "value": "20260315093012"}
    assert {r["meta"]["source"] for r in message.resources} == \
        {"urn:hie-edge:general-hospital#20260315093012"}
    assert message.warnings == ()
    bundle = message.bundle()
    assert {e["request"]["method"] for e in bundle["entry"]} == {"PUT"}


def test_ids_are_deterministic_and_follow_the_hl7_scheme(ctx: NormalizeContext) -> None:
    first, second = run(CHEM_PANEL, ctx), run(CHEM_PANEL, ctx)
    assert [r["id"] for r in first.resources] == [r["id"] for r in second.resources]
    assert len({r["id"] for r in first.resources}) == len(first.resources)
    # The same identifier makes the same Patient id as the HL7 v2 side would.
    hl7 = parse(b"MSH|^~\\&|A|B|C|D|20260101||ADT^A01|1|P|2.5.1\r")
    conversion = Conversion(hl7, ctx, "ADT_A01")
    system = "urn:hie-edge:general-hospital:id:astm-practice-patient-id"
    [patient] = first.by_type("Patient")
    assert patient["id"] == conversion.make_id("Patient", system, "MRN-4410")
    uuid.UUID(patient["id"])
    # Another facility, other ids.
    other = run(CHEM_PANEL, NormalizeContext(facility_id="clinic", timezone="America/Chicago"))
    assert not {r["id"] for r in other.resources} & {r["id"] for r in first.resources}


# -- a CBC with flags, another instrument's habits ------------------------------------------

CBC = astm(
    "H|\\^&|||XN-550^00-22^SX-1234|||||||P|1|20260112143000",
    "P|1||H-552||ROE^RICHARD||19851224|M",
    "O|1|S-26011207||^^^^CBC|R||20260112140500||||N||||WB",
    "R|1|^^^^WBC^1|31.5|10^3/uL|4.0-10.0|HH||F||||20260112142500",
    "R|2|^^^^HGB^1|6.1|g/dL|13.5-17.5|LL||F||||20260112142500",
    "R|3|^^^^PLT^1|  95 |||L||F||||20260112142500",
    "R|4|^^^^NEUT%^1|85.2|%|40.0-75.0|H||F||||20260112142500",
    "R|5|^^^^CRP^1|<0.3|mg/dL|<0.5|N||F||||20260112142500",
    "R|6|^^^^RET^1|----|||||F||||20260112142500",
    "R|7|^^^^BLAST^1|POS^few|||A||P||||20260112142500",
    "R|8|^^^^HCT^1||%||||X",
    "L|1|N",
)
SYSMEX = DeviceProfile("http://lab.example.org/codes/xn", 5, {"PLT": "10*3/uL"})


def test_cbc_values_flags_and_statuses(ctx: NormalizeContext) -> None:
    message = run(CBC, ctx, SYSMEX)
    observations = by_code(message)
    assert list(observations) == ["WBC", "HGB", "PLT", "NEUT%", "CRP", "RET", "BLAST", "HCT"]
    assert observations["WBC"]["code"]["coding"] == [
        {"system": "http://lab.example.org/codes/xn", "code": "WBC"}]  # "1" is no name
    # A unit that is not UCUM is kept as text, never guessed into a code.
    assert quantity(observations["WBC"]) == (None, 31.5, "10^3/uL", None, None)
    assert quantity(observations["HGB"]) == (None, 6.1, "g/dL", UCUM, "g/dL")
    # The profile supplies the unit the instrument did not send; the value is trimmed.
    assert quantity(observations["PLT"]) == (None, 95, "10*3/uL", UCUM, "10*3/uL")
    assert quantity(observations["NEUT%"]) == (None, 85.2, "%", UCUM, "%")
    assert quantity(observations["CRP"]) == ("<", 0.3, "mg/dL", UCUM, "mg/dL")
    assert observations["CRP"]["referenceRange"] == [
        {"high": {"value": 0.5, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
         "text": "<0.5"}]
    assert observations["WBC"]["referenceRange"][0]["low"]["value"] == 4.0
    assert observations["RET"]["valueString"] == "----"
    assert observations["BLAST"]["valueString"] == "POS few"
    assert {c: flag(o) for c, o in observations.items()} == {
        "WBC": "HH", "HGB": "LL", "PLT": "L", "NEUT%": "H", "CRP": "N", "RET": None,
        "BLAST": "A", "HCT": None}
    assert {c: o["status"] for c, o in observations.items()} == {
        "WBC": "final", "HGB": "final", "PLT": "final", "NEUT%": "final", "CRP": "final",
        "RET": "final", "BLAST": "preliminary", "HCT": "cancelled"}
    # No value: why, from the status (X: the test could not be done).
    assert not [k for k in observations["HCT"] if k.startswith("value")]
    assert observations["HCT"]["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    # January: CST.
    assert observations["WBC"]["effectiveDateTime"] == "2026-01-12T14:05:00-06:00"
    assert observations["WBC"]["issued"] == "2026-01-12T14:25:00-06:00"
    assert observations["HCT"]["effectiveDateTime"] == "2026-01-12T14:05:00-06:00"
    assert "issued" not in observations["HCT"]
    [report] = message.by_type("DiagnosticReport")
    # One test ordered (CBC): the report carries its code; one preliminary result.
    assert report["code"]["coding"][0]["code"] == "CBC"
    assert report["status"] == "partial"
    [request] = message.by_type("ServiceRequest")
    assert (request["status"], request["priority"]) == ("active", "routine")
    assert all(o["basedOn"] == [{"reference": f"ServiceRequest/{request['id']}"}]
               for o in observations.values())
    [patient] = message.by_type("Patient")
    assert patient["gender"] == "male"
    assert message.patient_key == \
        "urn:hie-edge:general-hospital:id:astm-laboratory-patient-id|H-552"


def test_universal_loinc_code_comes_first(ctx: NormalizeContext) -> None:
    raw = astm("H|\\^&|||ANALYZER", "P|1|MRN-1", "O|1|S-1||2345-7^Glucose^LN^GLU",
               "R|1|2345-7^Glucose^LN^GLU|5.4|mmol/L||N||F", "L|1|N")
    [observation] = run(raw, ctx, DeviceProfile()).by_type("Observation")
    assert observation["code"]["coding"] == [
        {"system": LOINC, "code": "2345-7", "display": "Glucose"},
        {"system": "urn:hie-edge:general-hospital:cs:astm:ANALYZER", "code": "GLU",
         "display": "Glucose"}]


# -- corrections ------------------------------------------------------------------------------

def test_a_correction_updates_the_same_observation(ctx: NormalizeContext) -> None:
    original = run(CHEM_PANEL, ctx)
    corrected_raw = astm(
        "H|\\^&|||COBAS-C311^1.04^SN-880021|||||LIS||P|LIS2-A2|20260315110500",
        "P|1|MRN-4410|LAB-77",
        "O|1|S-26031501|C311-0042|^^^NA|S||||||N||||SERUM||||||||||C",
        "R|1|^^^NA^Sodium|138|mmol/L|136 to 145|N||C||OP1|20260315090000|20260315110000|C311",
        "C|1|L|Sample re-run after dilution error|G",
        "L|1|N")
    corrected = run(corrected_raw, ctx)
    before, after = by_code(original)["NA"], by_code(corrected)["NA"]
    assert after["id"] == before["id"]
    assert (after["status"], quantity(after)[1], flag(after)) == ("corrected", 138, "N")
    assert after["note"] == [{"authorString": "laboratory information system",
                              "text": "Sample re-run after dilution error"}]
    assert after["issued"] == "2026-03-15T11:00:00-05:00"
    # This O record gives no collection time (O-8): the result's completion time stands in.
    assert after["effectiveDateTime"] == "2026-03-15T11:00:00-05:00"
    assert corrected.patient_key == original.patient_key
    assert corrected.by_type("Patient")[0]["id"] == original.by_type("Patient")[0]["id"]
    assert corrected.by_type("Specimen")[0]["id"] == original.by_type("Specimen")[0]["id"]
    # The correction reports on the one test it is about; the panel's report (five results,
    # the corrected one among them by reference) is not replaced by a one-result report.
    [report] = corrected.by_type("DiagnosticReport")
    assert report["id"] != original.by_type("DiagnosticReport")[0]["id"]
    assert report["status"] == "corrected"
    assert report["result"] == [{"reference": f"Observation/{after['id']}"}]
    assert {"reference": f"Observation/{after['id']}"} in \
        original.by_type("DiagnosticReport")[0]["result"]
    assert run(corrected_raw, ctx).by_type("DiagnosticReport")[0]["id"] == report["id"]
    [request] = corrected.by_type("ServiceRequest")
    assert request["id"] == next(r["id"] for r in original.by_type("ServiceRequest")
                                 if r["code"]["coding"][0]["code"] == "NA")
    [provenance] = corrected.by_type("Provenance")
    assert provenance["activity"]["coding"][0]["code"] == "UPDATE"
    assert provenance["id"] != original.by_type("Provenance")[0]["id"]


def test_result_status_without_meaning_defers_to_the_report_type(ctx: NormalizeContext) -> None:
    raw = astm("H|\\^&|||ANALYZER", "P|1|MRN-1", "O|1|S-2||^^^A\\^^^B|||||||||||||||||||||P",
               "R|1|^^^A|1|||||R", "R|2|^^^B|2|||||I", "L|1|N")
    observations = by_code(run(raw, ctx))
    assert observations["A"]["status"] == "preliminary"  # R (sent before) -> O-26 P
    assert observations["B"]["status"] == "registered"  # I: in instrument, pending
    assert observations["B"]["valueQuantity"]["value"] == 2


# -- patients ---------------------------------------------------------------------------------

def test_no_patient_id_gives_no_patient_key(ctx: NormalizeContext) -> None:
    raw = astm("H|\\^&|||URINE-1|||||||||20260315120000", "P|1",
               "O|1|S-9001||^^^PH|R", "R|1|^^^PH|6.0|||||F", "L|1|N")
    message = run(raw, ctx)
    assert message.patient_key is None
    assert message.by_type("Patient") == []
    # ServiceRequest.subject is required in R4: no patient, no ServiceRequest.
    assert message.by_type("ServiceRequest") == []
    assert "O-5: no patient, so no ServiceRequest (its subject is required)" in message.warnings
    [observation] = message.by_type("Observation")
    assert "subject" not in observation and "basedOn" not in observation
    assert observation["valueQuantity"]["value"] == 6.0
    [specimen] = message.by_type("Specimen")
    assert observation["specimen"] == {"reference": f"Specimen/{specimen['id']}"}
    assert "subject" not in message.by_type("DiagnosticReport")[0]


def test_demographics_without_an_id_stay_scoped_to_the_message(ctx: NormalizeContext) -> None:
    raw = astm("H|\\^&|||ANALYZER|||||||||20260315120000", "P|1||||DOE^JOHN||19900101|X",
               "O|1|S-1||^^^GLU", "R|1|^^^GLU|5|mmol/L||N||F", "L|1|N")
    message = run(raw, ctx)
    assert message.patient_key is None
    [patient] = message.by_type("Patient")
    assert "identifier" not in patient and "gender" not in patient
    assert patient["name"] == [{"family": "DOE", "given": ["JOHN"]}]
    assert "P-9: sex is not M, F or U" in message.warnings
    assert message.by_type("Observation")[0]["subject"] == {"reference": f"Patient/{patient['id']}"}
    other = run(raw.replace(b"20260315120000", b"20260315120100"), ctx)
    assert other.by_type("Patient")[0]["id"] != patient["id"]


def test_latin1_and_utf8_names(ctx: NormalizeContext) -> None:
    records = ("H|\\^&|||ANALYZER", "P|1|MRN-7||| MÜLLER^JÖRG", "O|1|S-1||^^^GLU",
               "R|1|^^^GLU|5|mmol/L||N||F", "L|1|N")
    for codec in ("latin-1", "utf-8"):
        message = run(astm(*records, codec=codec), ctx)
        assert message.by_type("Patient")[0]["name"][0]["family"] == "MÜLLER", codec


def test_several_patients_in_one_message_are_not_converted(ctx: NormalizeContext) -> None:
    raw = astm("H|\\^&|||ANALYZER", "P|1|MRN-1", "O|1|S-1||^^^GLU", "R|1|^^^GLU|5",
               "P|2|MRN-2", "O|1|S-2||^^^GLU", "R|1|^^^GLU|6", "L|1|N")
    with pytest.raises(UnsupportedMessage) as info:
        run(raw, ctx)
    assert info.value.path == "P[2]"
    assert "MRN" not in str(info.value)
    # Several specimens of one patient are fine.
    same = run(raw.replace(b"MRN-2", b"MRN-1"), ctx)
    assert len(same.by_type("Observation")) == 2 and len(same.by_type("Patient")) == 1
    assert len(same.by_type("DiagnosticReport")) == 2


# -- comments ---------------------------------------------------------------------------------

def test_comments_become_notes_on_the_record_they_follow(ctx: NormalizeContext) -> None:
    raw = astm(
        "H|\\^&|||ANALYZER|||||||||20260315120000",
        "C|1|L|Header remark|G",
        "P|1|MRN-1",
        "C|1|P|Patient on dialysis|G",
        "O|1|S-1||^^^K|R",
        "C|1|I|LIPEMIC^Lipemic sample\\HEMOLYSIS^Slight hemolysis|I",
        "R|1|^^^K|5.9|mmol/L|3.5 to 5.1|H||F",
        "C|1|I|Result checked &F& repeated|G",
        "C|2|I|Delta check failed|G",
        "L|1|N")
    message = run(raw, ctx)
    [specimen] = message.by_type("Specimen")
    assert specimen["note"] == [{"authorString": "instrument",
                                 "text": "LIPEMIC; Lipemic sample\nHEMOLYSIS; Slight hemolysis"}]
    [observation] = message.by_type("Observation")
    assert [n["text"] for n in observation["note"]] == \
        ["Result checked | repeated", "Delta check failed"]
    assert "note" not in message.by_type("ServiceRequest")[0]  # on the Specimen instead
    assert set(message.warnings) == {"C: comment on the header is not mapped",
                                     "C[2]: comment on the patient is not mapped"}
    assert all("dialysis" not in w for w in message.warnings)


def test_order_comment_without_specimen_id_goes_on_the_requests(ctx: NormalizeContext) -> None:
    raw = astm("H|\\^&|||ANALYZER", "P|1|MRN-1", "O|1|||^^^K|R", "C|1|L|Fasting|G",
               "R|1|^^^K|4.0", "L|1|N")
    message = run(raw, ctx)
    assert message.by_type("Specimen") == []
    assert message.by_type("ServiceRequest")[0]["note"] == \
        [{"authorString": "laboratory information system", "text": "Fasting"}]


# -- what is not converted, and errors ----------------------------------------------------------

def test_a_query_is_unsupported(ctx: NormalizeContext) -> None:
    raw = astm("H|\\^&|||ANALYZER|||||||||20260315120000",
               "Q|1|^S-26031501||ALL||||||||O", "L|1|N")
    with pytest.raises(UnsupportedMessage) as info:
        run(raw, ctx)
    assert info.value.path == "Q"
    with pytest.raises(UnsupportedMessage) as empty:
        run(astm("H|\\^&|||ANALYZER", "L|1|N"), ctx)
    assert empty.value.path == "H"
    # Through the processing stage: stored, not converted.
    outcome = convert(raw, "astm", ctx, SYSMEX)
    assert isinstance(outcome, Failed) and outcome.state == "unsupported"


def test_a_result_without_a_test_id_names_its_path(ctx: NormalizeContext) -> None:
    raw = astm("H|\\^&|||ANALYZER", "P|1|MRN-SECRET", "O|1|S-1||^^^GLU",
               "R|1|^^^GLU|5", "R|2||7.7|mmol/L", "L|1|N")
    with pytest.raises(NormalizeError) as info:
        run(raw, ctx)
    assert (info.value.path, info.value.reason) == ("R[2]-3", "universal test id is empty")
    assert info.value.fault == "peer"
    outcome = convert(raw, "astm", ctx, SYSMEX)
    assert outcome == Failed("dead-letter", "R[2]-3: universal test id is empty")


def test_unreadable_message_is_a_normalize_error(ctx: NormalizeContext) -> None:
    with pytest.raises(NormalizeError) as info:
        run(b"P|1|MRN-SECRET\rL|1|N\r", ctx)
    assert info.value.path == "record 1"
    assert "SECRET" not in str(info.value)


def test_invalid_optional_times_are_dropped_with_a_warning(ctx: NormalizeContext) -> None:
    raw = astm("H|\\^&|||ANALYZER|||||||P|1|2026031",
               "P|1|MRN-1|||||19991399", "O|1|S-1||^^^GLU|||||||||||||||||||||F",
               "R|1|^^^GLU|5|mmol/L||N||F||||202603151261", "L|1|N")
    message = run(raw, ctx)
    [observation] = message.by_type("Observation")
    assert "effectiveDateTime" not in observation and "issued" not in observation
    assert "birthDate" not in message.by_type("Patient")[0]
    paths = {w.split(":")[0] for w in message.warnings}
    assert paths == {"H-14", "P-8", "R-13"}
    [provenance] = message.by_type("Provenance")
    assert "recorded" not in provenance and "_recorded" in provenance
    assert message.timestamp is None


def test_ambiguous_autumn_time_takes_the_first_occurrence(ctx: NormalizeContext) -> None:
    # 2026-11-01 01:30 happens twice in Chicago; without an offset, the first (CDT) is taken.
    raw = astm("H|\\^&|||ANALYZER", "P|1|MRN-1", "O|1|S-1||^^^GLU",
               "R|1|^^^GLU|5|mmol/L||N||F||||20261101013000", "L|1|N")
    [observation] = run(raw, ctx).by_type("Observation")
    assert observation["effectiveDateTime"] == "2026-11-01T01:30:00-05:00"


def test_cancelled_order_revokes_its_requests(ctx: NormalizeContext) -> None:
    raw = astm("H|\\^&|||ANALYZER", "P|1|MRN-1", "O|1|S-1||^^^GLU\\^^^K|A||||||C", "L|1|N")
    message = run(raw, ctx)
    requests = message.by_type("ServiceRequest")
    assert [(r["status"], r["priority"]) for r in requests] == \
        [("revoked", "asap"), ("revoked", "asap")]
    assert message.by_type("DiagnosticReport") == []  # nothing reported on it


def test_device_profile_survives_pickling_into_workers(ctx: NormalizeContext) -> None:
    profile: DeviceProfile = pickle.loads(pickle.dumps(SYSMEX))
    assert profile == SYSMEX and profile.units["PLT"] == "10*3/uL"
    with pytest.raises(TypeError):
        profile.units["X"] = "y"  # type: ignore[index]
    outcome = pickle.loads(pickle.dumps(convert(CBC, "astm", pickle.loads(pickle.dumps(ctx)),
                                                profile)))
    assert isinstance(outcome, Converted)
    stored = [json.loads(r.canonical(1, "2024-01-01T00:00:00.000Z")) for r in outcome.records]
    observations = {o["code"]["coding"][-1]["code"]: o for o in stored
                    if o["resourceType"] == "Observation"}
    assert quantity(observations["PLT"])[2] == "10*3/uL"


def test_repr_and_errors_hold_no_phi(ctx: NormalizeContext) -> None:
    message = run(CHEM_PANEL, ctx)
    assert "MILLER" not in repr(message) and "MRN" not in repr(message)
    assert all("MILLER" not in w and "MRN" not in w for w in message.warnings)


# -- whatever an instrument puts in a result's fields ----------------------------------------

_FIELD = st.text(st.characters(codec="latin-1", exclude_characters="|\\^&\r\n"), max_size=12)


@settings(max_examples=80, deadline=None)
@given(value=_FIELD, unit=_FIELD, reference=_FIELD, flag=_FIELD, status=_FIELD,
       completed=_FIELD, name=_FIELD)
def test_any_result_fields_give_valid_fhir_or_a_path(value: str, unit: str, reference: str,
                                                     flag: str, status: str, completed: str,
                                                     name: str) -> None:
    ctx = NormalizeContext(facility_id="general-hospital", timezone="America/Chicago",
                           validation="full")
    raw = astm("H|\\^&|||ANALYZER", f"P|1|MRN-1|||{name}^X", "O|1|S-1||^^^T",
               f"R|1|^^^T|{value}|{unit}|{reference}|{flag}||{status}||||{completed}",
               "L|1|N")
    try:
        message = run(raw, ctx)  # every resource validated with the R4B models
    except NormalizeError as exc:
        assert exc.path.startswith(("R", "P", "O", "H", "record")), exc.path
        for secret in (value, unit, name):
            if len(secret) > 3:
                assert secret not in str(exc)
        return
    [observation] = message.by_type("Observation")
    assert observation["code"]["coding"][0]["code"] == "T"
    assert ("dataAbsentReason" in observation) == (not value.strip())
