"""PRT (participation information, v2.7+) -> PractitionerRole, Device, event location.

What a PRT becomes depends on the segment group it is in (the IG's message maps
``HL7 Message - FHIR R4_ ORU_R01``, ``OML_O21``, ``VXU_V04``), and its content follows the
IG's segment maps:

- ``HL7 Segment - FHIR R4_ PRT[PractitionerRole] - Sheet1.csv``: PRT-4 -> code (Participation
  map), PRT-5 -> practitioner (XCN[Practitioner]), PRT-6 -> specialty, PRT-8 -> organization
  (XON[Organization]), PRT-9 -> location (PL[Location]), PRT-11/12 -> period, PRT-14 ->
  the practitioner's address, PRT-15 -> telecom;
- ``HL7 Segment - FHIR R4_ PRT[Device] - Sheet1.csv``: PRT-10 -> identifier, PRT-16 ->
  udiCarrier.deviceIdentifier, PRT-17/18 -> manufactureDate/expirationDate, PRT-19/20 ->
  lotNumber/serialNumber, PRT-21 -> distinctIdentifier, PRT-22 -> type;
- ``HL7 Segment - FHIR R4_ PRT[Observation-Location] - Sheet1.csv``: PRT-9 (PL) and PRT-14
  (XAD) -> the ``event-location`` extension of the Observation.

Where the message maps attach them (:func:`apply_to_patient` and the others below): PRT-4
``PP`` after PID -> Patient.generalPractitioner; after PV1 -> Encounter.participant; after
ORC or OBR, by PRT-4: ``OP`` -> ServiceRequest.requester, ``ARI``/``TN``/``TR`` ->
DiagnosticReport.performer, ``PRI`` -> DiagnosticReport.resultsInterpreter, ``SC`` -> the
order's Specimen.collection.collector; after OBX: PRT-10 -> Observation.device, PRT-9/14 ->
event-location, PRT-5 -> Observation.performer; in a VXU order, ``OP``/``AP`` ->
Immunization.performer (function from table 0443).

The IG's conditions name PRT-4.3 ``HL70443``; PRT-4 is bound to table 0912 from v2.7 on and
shares these codes, so a role coded in 0443, 0912 or with no coding system is read. A PRT-2
action code ``D`` (delete) removes the participation: nothing is linked (a snapshot has no
"inactive link" to record). Roles the IG does not map in a context (``RCT`` result copies
to, a non-``PP`` patient-level PRT, which the IG maps to RelatedPerson) are not mapped.
"""

from __future__ import annotations

from typing import Any, Final

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import dtm, ei, pl, xad, xcn, xon, xtn
from edge.normalize.datatypes.cwe import codeable_concept

__all__ = [
    "EVENT_LOCATION_URL",
    "apply_to_encounter",
    "apply_to_observation",
    "apply_to_order",
    "apply_to_patient",
    "deleted",
    "immunization_performer",
    "practitioner_role",
    "role",
]

EVENT_LOCATION_URL: Final = "http://hl7.org/fhir/StructureDefinition/event-location"
_ROLE_TABLES: Final = frozenset({"", "HL70443", "HL70912", "HL7-0443", "HL7-0912"})
_PARTICIPATION: Final = "http://terminology.hl7.org/CodeSystem/v2-0912"
_PROVIDER_ROLE: Final = "http://terminology.hl7.org/CodeSystem/v2-0443"


def role(conv: Conversion, seg: Segment) -> str:
    """PRT-4.1 (upper case) when PRT-4.3 is table 0443, 0912 or empty; else ``""``."""
    if conv.value(seg, 4, 3).upper() not in _ROLE_TABLES:
        return ""
    return conv.value(seg, 4).upper()


def deleted(conv: Conversion, seg: Segment) -> bool:
    """PRT-2 action code ``D``: the participation is removed (IG: "inactivate")."""
    return conv.value(seg, 2).upper() == "D"


def _practitioner(conv: Conversion, seg: Segment) -> dict[str, str] | None:
    # PRT-5 repeats; the IG: "rare ... the implementer needs to determine how to best
    # resolve that". The first person is the participant.
    who = xcn.practitioner(conv, conv.first(seg, 5), conv.loc(seg, 5))
    if who is None:
        return None
    address = xad.address(conv.first(seg, 14), conv.ctx.zone, conv.loc(seg, 14), warn=conv.warnings)
    if address is not None:
        resource_type, resource_id = who["reference"].split("/", 1)
        conv.resources[(resource_type, resource_id)].setdefault("address", [address])
    return who


def practitioner_role(conv: Conversion, seg: Segment) -> dict[str, str] | None:
    """Add the PractitionerRole of PRT ``seg`` (PRT[PractitionerRole]); ``None`` when the PRT
    names no person, organization or location."""
    ctx = conv.ctx
    practitioner = _practitioner(conv, seg)
    organization = xon.organization(conv, conv.first(seg, 8), conv.loc(seg, 8))
    location = pl.location(conv, conv.first(seg, 9))
    if practitioner is None and organization is None and location is None:
        return None
    code = codeable_concept(
        conv.first(seg, 4), ctx, concept_map="Participation", default_system=_PARTICIPATION
    )
    parts = [ref["reference"] if ref else "" for ref in (practitioner, organization, location)]
    resource: dict[str, Any] = {
        "resourceType": "PractitionerRole",
        "id": conv.make_id("PractitionerRole", *parts, conv.value(seg, 4)),
    }
    start = dtm.to_datetime(conv.value(seg, 11), ctx.zone, conv.loc(seg, 11), warn=conv.warnings)
    end = dtm.to_datetime(conv.value(seg, 12), ctx.zone, conv.loc(seg, 12), warn=conv.warnings)
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        resource["period"] = period
    if practitioner is not None:
        resource["practitioner"] = practitioner
    if organization is not None:
        resource["organization"] = organization
    if code:
        resource["code"] = [code]
    specialty = codeable_concept(conv.first(seg, 6), ctx)
    if specialty:
        resource["specialty"] = [specialty]
    if location is not None:
        resource["location"] = [location]
    telecom = [
        t
        for t in (
            xtn.contact_point(v, ctx.zone, conv.loc(seg, 15), warn=conv.warnings)
            for v in conv.reps(seg, 15)
        )
        if t
    ]
    if telecom:
        resource["telecom"] = telecom
    return {"reference": conv.add(resource)}


def device(conv: Conversion, seg: Segment) -> dict[str, str] | None:
    """Add the Device of PRT ``seg`` (PRT[Device]); ``None`` when PRT-10 is empty."""
    ctx, zone = conv.ctx, conv.ctx.zone
    identifiers = [
        i
        for i in (ei.identifier(v, ctx, conv.loc(seg, 10)) for v in conv.reps(seg, 10))
        if i is not None
    ]
    if not identifiers:
        return None
    first = identifiers[0]
    resource: dict[str, Any] = {
        "resourceType": "Device",
        "id": conv.make_id("Device", first.get("system", ""), first["value"]),
        "identifier": identifiers,
    }
    udi = conv.value(seg, 16)
    if udi:
        resource["udiCarrier"] = [{"deviceIdentifier": udi}]
    distinct = conv.value(seg, 21)
    if distinct:
        resource["distinctIdentifier"] = distinct
    for n, element in ((17, "manufactureDate"), (18, "expirationDate")):
        moment = dtm.to_datetime(conv.value(seg, n), zone, conv.loc(seg, n), warn=conv.warnings)
        if moment:
            resource[element] = moment
    for n, element in ((19, "lotNumber"), (20, "serialNumber")):
        text = conv.text(seg, n)
        if text:
            resource[element] = text
    kind = codeable_concept(conv.first(seg, 22), ctx)
    if kind:
        resource["type"] = kind
    return {"reference": conv.add(resource)}


def _event_locations(conv: Conversion, seg: Segment) -> list[dict[str, Any]]:
    out = []
    place = pl.location(conv, conv.first(seg, 9))
    if place is not None:
        out.append({"url": EVENT_LOCATION_URL, "valueReference": place})
    address = xad.address(conv.first(seg, 14), conv.ctx.zone, conv.loc(seg, 14), warn=conv.warnings)
    if address is not None:
        resource = {
            "resourceType": "Location",
            "id": conv.make_id("Location", "address", repr(sorted(address.items()))),
            "mode": "instance",
            "address": address,
        }
        out.append({"url": EVENT_LOCATION_URL, "valueReference": {"reference": conv.add(resource)}})
    return out


def apply_to_observation(conv: Conversion, seg: Segment, observation: dict[str, Any]) -> None:
    """PRT after an OBX (OBSERVATION.PRT rows): device, event location, performer."""
    if deleted(conv, seg):
        return
    if conv.first(seg, 10) is not None and "device" not in observation:
        found = device(conv, seg)
        if found is not None:
            observation["device"] = found
    locations = _event_locations(conv, seg)
    if locations:
        observation.setdefault("extension", []).extend(locations)
    if conv.first(seg, 5) is not None:
        performer = practitioner_role(conv, seg)
        if performer is not None and performer not in observation.get("performer", []):
            observation.setdefault("performer", []).append(performer)


def apply_to_patient(conv: Conversion, seg: Segment, patient: dict[str, Any]) -> None:
    """PRT after PID (PATIENT.PRT): a primary care provider -> generalPractitioner."""
    if deleted(conv, seg) or role(conv, seg) != "PP":
        return
    who = practitioner_role(conv, seg)
    if who is not None and who not in patient.get("generalPractitioner", []):
        patient.setdefault("generalPractitioner", []).append(who)


def apply_to_encounter(conv: Conversion, seg: Segment, encounter: dict[str, Any]) -> None:
    """PRT after PV1 (VISIT.PRT): Encounter.participant.individual."""
    if deleted(conv, seg):
        return
    who = practitioner_role(conv, seg)
    if who is not None:
        participants = encounter.setdefault("participant", [])
        if not any(p.get("individual") == who for p in participants):
            participants.append({"individual": who})


def apply_to_order(
    conv: Conversion,
    seg: Segment,
    request: dict[str, Any] | None,
    report: dict[str, Any] | None,
    collectors: list[dict[str, str]],
) -> None:
    """PRT after ORC or OBR (COMMON_ORDER.PRT, ORDER_OBSERVATION.PRT, OBSERVATION_REQUEST.PRT).

    A specimen collector (``SC``) is appended to ``collectors``: the order's specimens (SPM,
    or OBR-15) are read after the PRT, so the caller sets their collector when the order
    group ends. ORC-12 / OBR-16 stay the requester when sent (the IG maps both to requester;
    the first one read wins).
    """
    if deleted(conv, seg):
        return
    code = role(conv, seg)
    if code == "OP":
        if request is not None and "requester" not in request:
            who = practitioner_role(conv, seg)
            if who is not None:
                request["requester"] = who
    elif code in ("ARI", "TN", "TR", "PRI") and report is not None:
        element = "resultsInterpreter" if code == "PRI" else "performer"
        who = practitioner_role(conv, seg)
        if who is not None and who not in report.get(element, []):
            report.setdefault(element, []).append(who)
    elif code == "SC":
        who = practitioner_role(conv, seg)
        if who is not None:
            collectors.append(who)


def immunization_performer(conv: Conversion, seg: Segment) -> dict[str, Any] | None:
    """PRT in a VXU order (ORDER.PRT): ``OP``/``AP`` -> an Immunization.performer."""
    code = role(conv, seg)
    if deleted(conv, seg) or code not in ("OP", "AP"):
        return None
    who = practitioner_role(conv, seg)
    if who is None:
        return None
    return {"function": {"coding": [{"system": _PROVIDER_ROLE, "code": code}]}, "actor": who}
