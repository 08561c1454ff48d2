"""RXA/RXR (+ ORC) -> Immunization (v2-to-FHIR IG RXA[Immunization], RXR[Immunization],
ORC[Immunization]).

RXA-3 -> occurrenceDateTime; RXA-5 -> vaccineCode (CVX); RXA-6/7 -> doseQuantity (999 =
unknown amount is left out); RXA-9 -> primarySource / reportOrigin (NIP001: 00 = new record,
otherwise historical); RXA-10 -> performer (AP); RXA-15 -> lotNumber; RXA-16 ->
expirationDate; RXA-17 -> manufacturer (Organization from the MVX code); RXA-18 ->
statusReason; RXA-19 -> reasonCode; RXA-20 -> status (CompletionStatus), RXA-21 ``D`` ->
entered-in-error; RXA-22 -> recorded. RXR-1 -> route, RXR-2 -> site.

The id comes from ORC-3 (filler order number, the IIS-unique immunization id) when sent, else
from the patient, vaccine and administration time, so a resent or corrected immunization
(RXA-21 ``U``) updates the same resource.
"""

from __future__ import annotations

from typing import Any, Final

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import dtm, ei, nm, xcn
from edge.normalize.datatypes.cwe import code_from_map, codeable_concept
from edge.normalize.errors import NormalizeError

__all__ = ["map_rxa", "map_rxr"]

_PERFORMER_FUNCTION: Final = "http://terminology.hl7.org/CodeSystem/v2-0443"
_IMMUNIZATION_STATUS: Final = frozenset({"completed", "entered-in-error", "not-done"})


def map_rxa(conv: Conversion, rxa: Segment, orc: Segment | None) -> dict[str, Any]:
    """Add the Immunization for ``rxa`` (with its ORC) and return it."""
    ctx, zone = conv.ctx, conv.ctx.zone
    if conv.patient_ref is None:
        raise NormalizeError(conv.loc(rxa), "no patient for this immunization (PID missing)")
    vaccine = conv.first(rxa, 5)
    vaccine_code = codeable_concept(vaccine, ctx, default_system="http://hl7.org/fhir/sid/cvx")
    when = conv.value(rxa, 3)
    occurrence = dtm.to_datetime(when, zone, conv.loc(rxa, 3), warn=conv.warnings)
    filler = ei.ei_key(conv.first(orc, 3)) if orc is not None else None
    key = (
        ("F", *filler)
        if filler
        else (conv.patient_ref, vaccine[1] if vaccine else "", vaccine[4] if vaccine else "", when)
    )
    immunization: dict[str, Any] = {
        "resourceType": "Immunization",
        "id": conv.unique_id("Immunization", *key),
    }
    identifiers = []
    if orc is not None:
        for n, code in ((2, "PLAC"), (3, "FILL")):
            ident = ei.identifier(conv.first(orc, n), ctx, conv.loc(orc, n), type_code=code)
            if ident is not None:
                identifiers.append(ident)
    if identifiers:
        immunization["identifier"] = identifiers
    status = "completed"
    completion = conv.value(rxa, 20)
    if completion:
        mapped = code_from_map(completion, "CompletionStatus")
        status = mapped if mapped in _IMMUNIZATION_STATUS else "completed"
    if conv.value(rxa, 21).upper() == "D":
        status = "entered-in-error"
    immunization["status"] = status
    refusal = codeable_concept(conv.first(rxa, 18), ctx)
    if refusal:
        immunization["statusReason"] = refusal
    if vaccine_code is not None:
        immunization["vaccineCode"] = vaccine_code
    else:  # vaccineCode is 1..1 and RXA-5 required: mark it absent, keep the record
        conv.absent(immunization, "vaccineCode", conv.loc(rxa, 5), "administered code is empty")
    immunization["patient"] = {"reference": conv.patient_ref}
    if conv.encounter_ref:
        immunization["encounter"] = {"reference": conv.encounter_ref}
    if occurrence is not None:
        immunization["occurrenceDateTime"] = occurrence
    else:  # occurrence[x] is 1..1: the time of administration is, truthfully, unknown
        immunization["occurrenceString"] = "unknown"
        conv.warnings.append(f"{conv.loc(rxa, 3)}: administration date/time is empty or invalid")
    recorded = dtm.to_datetime(conv.value(rxa, 22), zone, conv.loc(rxa, 22), warn=conv.warnings)
    if recorded:
        immunization["recorded"] = recorded
    source = conv.first(rxa, 9)
    if source is not None and source[1]:
        immunization["primarySource"] = source[1] == "00"
        origin = codeable_concept(source, ctx)
        if origin and source[1] != "00":
            immunization["reportOrigin"] = origin
    lot = conv.value(rxa, 15)
    if lot:
        immunization["lotNumber"] = lot
    expiration = dtm.to_date(conv.value(rxa, 16), conv.loc(rxa, 16), warn=conv.warnings)
    if expiration:
        immunization["expirationDate"] = expiration
    manufacturer = conv.first(rxa, 17)
    if manufacturer is not None and (manufacturer[1] or manufacturer[2]):
        organization: dict[str, Any] = {
            "resourceType": "Organization",
            "id": conv.make_id("Organization", "mvx", manufacturer[1] or manufacturer[2]),
        }
        if manufacturer[1]:
            organization["identifier"] = [
                {"system": "http://hl7.org/fhir/sid/mvx", "value": manufacturer[1]}
            ]
        if manufacturer[2]:
            organization["name"] = manufacturer[2]
        immunization["manufacturer"] = {"reference": conv.add(organization)}
    amount = conv.value(rxa, 6)
    number = nm.parse_number(amount) if amount else None
    if number is not None and number != 999:
        immunization["doseQuantity"] = nm.quantity(number, conv.first(rxa, 7), text=amount)
    performers = []
    for v in conv.reps(rxa, 10):
        actor = xcn.practitioner(conv, v, conv.loc(rxa, 10))
        if actor is not None:
            performers.append(
                {
                    "function": {"coding": [{"system": _PERFORMER_FUNCTION, "code": "AP"}]},
                    "actor": actor,
                }
            )
    if orc is not None:
        for n, code in ((12, "OP"), (10, "EP")):
            actor = xcn.practitioner(conv, conv.first(orc, n), conv.loc(orc, n))
            if actor is not None:
                performers.append(
                    {
                        "function": {"coding": [{"system": _PERFORMER_FUNCTION, "code": code}]},
                        "actor": actor,
                    }
                )
    if performers:
        immunization["performer"] = performers
    reasons = [c for c in (codeable_concept(v, ctx) for v in conv.reps(rxa, 19)) if c]
    if reasons:
        immunization["reasonCode"] = reasons
    conv.add(immunization)
    conv.focus.append(f"Immunization/{immunization['id']}")
    return immunization


def map_rxr(conv: Conversion, rxr: Segment, target: dict[str, Any] | None) -> None:
    """RXR -> route and site of the Immunization (or the MedicationRequest's dosage)."""
    if target is None:
        return
    route = codeable_concept(
        conv.first(rxr, 1),
        conv.ctx,
        concept_map="RouteOfAdministration",
        default_system="http://terminology.hl7.org/CodeSystem/v2-0162",
    )
    site = codeable_concept(
        conv.first(rxr, 2), conv.ctx, default_system="http://terminology.hl7.org/CodeSystem/v2-0163"
    )
    if target["resourceType"] == "Immunization":
        if route:
            target["route"] = route
        if site:
            target["site"] = site
    elif target["resourceType"] == "MedicationRequest":
        dosage = target.setdefault("dosageInstruction", [{}])[0]
        if route:
            dosage["route"] = route
        if site:
            dosage["site"] = site
