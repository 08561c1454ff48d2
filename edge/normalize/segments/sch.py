"""SCH (+ AIS, AIL, AIP) -> Appointment (v2-to-FHIR IG SCH[Appointment], AIS[Appointment]).

SCH-1/2 -> identifier; SCH-7 -> reasonCode; SCH-8 -> appointmentType; SCH-9/10 ->
minutesDuration; SCH-11.4 (TQ start) -> start; SCH-16 -> participant; SCH-25 -> status
(FillerStatusCodes[Appointment]). AIS-3 -> serviceType, AIS-4 -> start; AIL/AIP ->
participants. The patient is a participant. The id comes from the filler (else placer)
appointment id, so S13..S26 updates reach the Appointment S12 created.
"""

from __future__ import annotations

from typing import Any, Final

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import dtm, ei, pl, xcn
from edge.normalize.datatypes.cwe import code_from_map, codeable_concept
from edge.normalize.validate import REQUIRED_BINDINGS

__all__ = ["map_ail", "map_aip", "map_ais", "map_sch"]

_APPOINTMENT_STATUS: Final = REQUIRED_BINDINGS[("Appointment", "status")]
_BY_EVENT: Final = {"S15": "cancelled", "S16": "cancelled", "S26": "noshow", "S17": "cancelled"}


def map_sch(conv: Conversion, seg: Segment) -> dict[str, Any]:
    ctx, zone = conv.ctx, conv.ctx.zone
    identifiers = [
        i
        for i in (
            ei.identifier(conv.first(seg, n), ctx, conv.loc(seg, n), type_code=code)
            for n, code in ((1, "PLAC"), (2, "FILL"))
        )
        if i
    ]
    key = ei.ei_key(conv.first(seg, 2)) or ei.ei_key(conv.first(seg, 1))
    status = (
        code_from_map(conv.value(seg, 25), "FillerStatusCodes[Appointment]")
        if conv.value(seg, 25)
        else None
    )
    if status not in _APPOINTMENT_STATUS:
        status = _BY_EVENT.get(conv.header.trigger_event, "booked")
    appointment: dict[str, Any] = {
        "resourceType": "Appointment",
        "id": conv.make_id("Appointment", *key)
        if key
        else conv.message_scoped_id("Appointment", str(seg.index)),
        "status": status,
    }
    if identifiers:
        appointment["identifier"] = identifiers
    reason = codeable_concept(conv.first(seg, 7), ctx)
    if reason:
        appointment["reasonCode"] = [reason]
    kind = codeable_concept(
        conv.first(seg, 8), ctx, default_system="http://terminology.hl7.org/CodeSystem/v2-0277"
    )
    if kind:
        appointment["appointmentType"] = kind
    timing = conv.first(seg, 11)
    if timing is not None:
        start = dtm.to_instant(timing.part(4)[1], zone, conv.loc(seg, 11, 4), warn=conv.warnings)
        end = dtm.to_instant(timing.part(5)[1], zone, conv.loc(seg, 11, 5), warn=conv.warnings)
        if start:
            appointment["start"] = start
        if end:
            appointment["end"] = end
    duration = conv.value(seg, 9)
    if duration.isdigit() and int(duration) > 0 and conv.value(seg, 10).lower() in ("", "min"):
        appointment["minutesDuration"] = int(duration)
    participants: list[dict[str, Any]] = []
    if conv.patient_ref:
        participants.append({"actor": {"reference": conv.patient_ref}, "status": "accepted"})
    for n in (12, 16, 20):
        actor = xcn.practitioner(conv, conv.first(seg, n), conv.loc(seg, n))
        if actor is not None:
            participants.append({"actor": actor, "status": "accepted"})
    appointment["participant"] = participants or [{"status": "needs-action"}]
    conv.add(appointment)
    conv.focus.append(f"Appointment/{appointment['id']}")
    return appointment


def map_ais(conv: Conversion, seg: Segment, appointment: dict[str, Any] | None) -> None:
    if appointment is None:
        return
    service = codeable_concept(conv.first(seg, 3), conv.ctx)
    if service:
        appointment.setdefault("serviceType", []).append(service)
    start = dtm.to_instant(conv.value(seg, 4), conv.ctx.zone, conv.loc(seg, 4), warn=conv.warnings)
    if start and "start" not in appointment:
        appointment["start"] = start


def map_ail(conv: Conversion, seg: Segment, appointment: dict[str, Any] | None) -> None:
    if appointment is None:
        return
    where = pl.location(conv, conv.first(seg, 3))
    if where is not None:
        appointment["participant"].append({"actor": where, "status": "accepted"})


def map_aip(conv: Conversion, seg: Segment, appointment: dict[str, Any] | None) -> None:
    if appointment is None:
        return
    who = xcn.practitioner(conv, conv.first(seg, 3), conv.loc(seg, 3))
    if who is not None:
        appointment["participant"].append({"actor": who, "status": "accepted"})
