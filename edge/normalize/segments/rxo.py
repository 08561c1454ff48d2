"""RXO / RXE (+ ORC) -> MedicationRequest (v2-to-FHIR IG RXO[MedicationRequest]; RXE read the
same way at its own positions: RXE-2 give code, RXE-3/4 amount, RXE-5 units, RXE-10/11
dispense amount/units, RXE-12 refills, RXE-13 ordering provider).

The medication is a ``medicationCodeableConcept`` (RXO-1 / RXE-2). ``intent`` is ``order``;
``status`` from ORC as for a ServiceRequest. Ids come from the order numbers.
"""

from __future__ import annotations

from typing import Any, Final

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import dtm, ei, nm, xcn
from edge.normalize.datatypes.cwe import codeable_concept
from edge.normalize.errors import NormalizeError
from edge.normalize.segments.obr import order_key
from edge.normalize.segments.orc import order_status

__all__ = ["map_rx_order"]

# (give code, amount min, amount max, units, dispense amount, dispense units, refills,
#  provider)
_POSITIONS: Final = {"RXO": (1, 2, 3, 4, 11, 12, 13, 14), "RXE": (2, 3, 4, 5, 10, 11, 12, 13)}
_MED_STATUS: Final = {
    "active": "active",
    "on-hold": "on-hold",
    "revoked": "cancelled",
    "completed": "completed",
    "entered-in-error": "entered-in-error",
    "draft": "draft",
    "unknown": "unknown",
}


def map_rx_order(conv: Conversion, seg: Segment, orc: Segment | None) -> dict[str, Any]:
    """Add the MedicationRequest for an RXO or RXE segment and return it."""
    ctx = conv.ctx
    give, low, high, units, dispense, dispense_units, refills, provider = _POSITIONS[seg.id]
    if conv.patient_ref is None:
        raise NormalizeError(conv.loc(seg), "no patient for this medication order (PID missing)")
    medication = codeable_concept(conv.first(seg, give), ctx)
    if medication is None:
        raise NormalizeError(conv.loc(seg, give), "requested give code is empty")
    key = order_key(conv, None, orc) or (
        "msh",
        conv.header.sending_facility,
        conv.control_id,
        str(seg.index),
    )
    request: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": conv.unique_id("MedicationRequest", *key),
        "status": _MED_STATUS[order_status(conv, orc)],
        "intent": "order",
        "medicationCodeableConcept": medication,
        "subject": {"reference": conv.patient_ref},
    }
    if orc is not None:
        identifiers = [
            i
            for i in (
                ei.identifier(conv.first(orc, n), ctx, conv.loc(orc, n), type_code=code)
                for n, code in ((2, "PLAC"), (3, "FILL"))
            )
            if i
        ]
        if identifiers:
            request["identifier"] = identifiers
        authored = dtm.to_datetime(
            conv.value(orc, 9), ctx.zone, conv.loc(orc, 9), warn=conv.warnings
        )
        if authored:
            request["authoredOn"] = authored
    if conv.encounter_ref:
        request["encounter"] = {"reference": conv.encounter_ref}
    requester = xcn.practitioner(conv, conv.first(seg, provider), conv.loc(seg, provider))
    if requester is None and orc is not None:
        requester = xcn.practitioner(conv, conv.first(orc, 12), conv.loc(orc, 12))
    if requester is not None:
        request["requester"] = requester
    unit = conv.first(seg, units)
    low_value = nm.parse_number(conv.value(seg, low)) if conv.value(seg, low) else None
    high_value = nm.parse_number(conv.value(seg, high)) if conv.value(seg, high) else None
    if low_value is not None:
        if high_value is not None and high_value != low_value:
            dose: dict[str, Any] = {
                "doseRange": {
                    "low": nm.quantity(low_value, unit, text=conv.value(seg, low)),
                    "high": nm.quantity(high_value, unit, text=conv.value(seg, high)),
                }
            }
        else:
            dose = {"doseQuantity": nm.quantity(low_value, unit, text=conv.value(seg, low))}
        request["dosageInstruction"] = [{"doseAndRate": [dose]}]
    amount = conv.value(seg, dispense)
    amount_value = nm.parse_number(amount) if amount else None
    dispense_request: dict[str, Any] = {}
    if amount_value is not None:
        dispense_request["quantity"] = nm.quantity(
            amount_value, conv.first(seg, dispense_units), text=amount
        )
    repeats = conv.value(seg, refills)
    if repeats.isdigit():
        dispense_request["numberOfRepeatsAllowed"] = int(repeats)
    if dispense_request:
        request["dispenseRequest"] = dispense_request
    conv.add(request)
    conv.focus.append(f"MedicationRequest/{request['id']}")
    return request
