"""PV1/PV2 -> Encounter (v2-to-FHIR IG PV1[Encounter], PV2[Encounter]).

PV1-2 -> class (PatientClass[EncounterClass]) and, without PV1-45, status
(PatientClass[EncounterStatus]); the trigger event refines the status (Event[EncounterStatus]:
A03 -> finished, A11 -> cancelled...); PV1-3/6/11/42 -> location; PV1-4 -> type; PV1-7/8/9/17
-> participant (ATND, REF, CON, ADM); PV1-10 -> serviceType; PV1-19 -> identifier (VN); PV1-36
-> hospitalization.dischargeDisposition; PV1-44/45 -> period. PV2-3 -> reasonCode.

The Encounter's id comes from PV1-19 (the visit number) when sent, so A01, A02, A08 and A03
for one visit all update one Encounter; else it is scoped to the message.
"""

from __future__ import annotations

from typing import Any, Final

from edge.er7 import Segment
from edge.normalize import vocab
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import cx, dtm, pl, xcn
from edge.normalize.datatypes.cwe import code_from_map, codeable_concept
from edge.normalize.v2 import Composite

__all__ = ["map_pv1", "map_pv2"]

_PARTICIPATION: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
_DOCTORS: Final = (
    (7, "ATND", "attender"),
    (8, "REF", "referrer"),
    (9, "CON", "consultant"),
    (17, "ADM", "admitter"),
)
_UNKNOWN_CLASS: Final = {
    "system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
    "code": "UNK",
    "display": "unknown",
}


def _class(v: Composite | None) -> dict[str, Any]:
    code = v[1] if v is not None else ""
    mapped = vocab.concept("PatientClass[EncounterClass]", code) if code else None
    if mapped is None:
        return dict(_UNKNOWN_CLASS)
    coding = {"system": mapped.system, "code": mapped.code}
    if mapped.display:
        coding["display"] = mapped.display
    return coding


def encounter_status(conv: Conversion, patient_class: str, discharged: bool) -> str:
    event = conv.header.trigger_event
    if conv.header.message_code == "ADT" and event:
        by_event = code_from_map(event, "Event[EncounterStatus]")
        if by_event:
            return by_event
    if discharged:
        return "finished"
    if patient_class:
        by_class = code_from_map(patient_class, "PatientClass[EncounterStatus]")
        if by_class:
            return by_class
    return "unknown"


def map_pv1(conv: Conversion, seg: Segment) -> str:
    """Add the Encounter for ``seg``; sets ``conv.encounter_ref``; returns the reference."""
    ctx, zone = conv.ctx, conv.ctx.zone
    visit = conv.first(seg, 19)
    identifiers = []
    ident = cx.identifier(visit, ctx, conv.loc(seg, 19), warn=conv.warnings)
    if ident is not None:
        ident["type"] = {"coding": [{"system": cx.V2_0203, "code": "VN"}], "text": "visit number"}
        identifiers.append(ident)
    alternate = cx.identifier(conv.first(seg, 50), ctx, conv.loc(seg, 50), warn=conv.warnings)
    if alternate is not None:
        identifiers.append(alternate)
    if ident is not None:
        encounter_id = conv.make_id("Encounter", ident["system"], ident["value"])
    else:
        encounter_id = conv.message_scoped_id("Encounter", str(seg.index))
    patient_class = conv.first(seg, 2)
    end = dtm.to_datetime(conv.value(seg, 45), zone, conv.loc(seg, 45), warn=conv.warnings)
    encounter: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": encounter_id,
        "status": encounter_status(conv, patient_class[1] if patient_class else "", bool(end)),
        "class": _class(patient_class),
    }
    if identifiers:
        encounter["identifier"] = identifiers
    admission_type = codeable_concept(conv.first(seg, 4), ctx, concept_map="AdmissionType")
    if admission_type:
        encounter["type"] = [admission_type]
    service = codeable_concept(conv.first(seg, 10), ctx, concept_map="HospitalService")
    if service:
        encounter["serviceType"] = service
    subject = conv.subject()
    if subject:
        encounter["subject"] = subject
    participants = []
    for n, code, text in _DOCTORS:
        for v in conv.reps(seg, n):
            who = xcn.practitioner(conv, v, conv.loc(seg, n))
            if who is not None:
                participants.append(
                    {
                        "type": [
                            {"coding": [{"system": _PARTICIPATION, "code": code}], "text": text}
                        ],
                        "individual": who,
                    }
                )
    if participants:
        encounter["participant"] = participants
    start = dtm.to_datetime(conv.value(seg, 44), zone, conv.loc(seg, 44), warn=conv.warnings)
    if start or end:
        encounter["period"] = {k: x for k, x in (("start", start), ("end", end)) if x}
    hospitalization: dict[str, Any] = {}
    for n, key, concept_map in (
        (13, "reAdmission", "ReadmissionIndicator"),
        (14, "admitSource", None),
        (36, "dischargeDisposition", "DischargeDisposition"),
    ):
        value = codeable_concept(conv.first(seg, n), ctx, concept_map=concept_map)
        if value:
            hospitalization[key] = value
    if hospitalization:
        encounter["hospitalization"] = hospitalization
    locations = []
    planned = patient_class is not None and patient_class[1] == "P"
    for n, status in (
        (3, "planned" if planned else "active"),
        (6, "completed"),
        (11, "active"),
        (42, "reserved"),
    ):
        where = pl.location(conv, conv.first(seg, n))
        if where is not None:
            locations.append({"location": where, "status": status})
    if locations:
        encounter["location"] = locations
    reference = conv.add(encounter)
    if conv.encounter_ref is None:
        conv.encounter_ref = reference
    return reference


def map_pv2(conv: Conversion, seg: Segment) -> None:
    """PV2-3 (admit reason) -> reasonCode of the message's Encounter (IG PV2[Encounter])."""
    if conv.encounter_ref is None:
        return
    encounter = conv.resources[("Encounter", conv.encounter_ref.split("/", 1)[1])]
    reason = codeable_concept(conv.first(seg, 3), conv.ctx)
    if reason:
        encounter.setdefault("reasonCode", []).append(reason)
