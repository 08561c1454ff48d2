"""OBR (+ its ORC) -> ServiceRequest and DiagnosticReport (IG OBR[ServiceRequest],
OBR[DiagnosticReport], ORC[ServiceRequest], ORC[DiagnosticReport]).

OBR-2/3 -> identifier (PLAC/FILL); OBR-4 -> code; OBR-7/8 -> effective; OBR-16 -> requester;
OBR-22 -> issued; OBR-24 -> category (DiagnosticServiceSectionID); OBR-25 -> status
(ResultStatus[Non-Queries]); OBR-31 -> reasonCode; OBR-32 -> resultsInterpreter. OBR-15
(specimen source, when the group has no SPM) -> a Specimen (:func:`close_group`, IG
``HL7 Segment - FHIR R4_ OBR[Specimen] - Sheet1.csv``).

Ids come from the order numbers (filler, else placer) and OBR-4, so a corrected report
(OBR-25 ``C``) updates the same DiagnosticReport and ServiceRequest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import cx, dr, dtm, ei, xcn
from edge.normalize.datatypes.cwe import code_from_map, codeable_concept
from edge.normalize.errors import NormalizeError
from edge.normalize.segments import spm
from edge.normalize.segments.orc import apply_orc, order_status
from edge.normalize.v2 import Composite
from edge.normalize.validate import REQUIRED_BINDINGS

__all__ = ["OrderGroup", "close_group", "map_obr", "order_key"]

_REPORT_STATUS: Final = REQUIRED_BINDINGS[("DiagnosticReport", "status")]


@dataclass
class OrderGroup:
    """One ORC/OBR group while its OBX, SPM, PRT, TQ1 and NTE segments are read.

    ``specimens``: references to the group's Specimens (SPM); ``observations``: its OBX
    Observations; ``collectors``: specimen collectors named by PRT (role ``SC``); ``timed``:
    a TQ1 was applied. :func:`close_group` finishes the group when the next one starts.
    """

    key: tuple[str, ...]
    orc: Segment | None = None
    obr: Segment | None = None
    request: dict[str, Any] | None = None
    report: dict[str, Any] | None = None
    effective: str | None = None
    specimens: list[dict[str, str]] = field(default_factory=list)
    observations: list[dict[str, Any]] = field(default_factory=list)
    collectors: list[dict[str, str]] = field(default_factory=list)
    timed: bool = False


def order_key(conv: Conversion, obr: Segment | None, orc: Segment | None) -> tuple[str, ...]:
    """Source identity of an order: filler number, else placer number (OBR, then ORC)."""
    for seg, n, kind in ((obr, 3, "F"), (orc, 3, "F"), (obr, 2, "P"), (orc, 2, "P")):
        if seg is not None:
            key = ei.ei_key(conv.first(seg, n))
            if key is not None:
                return (kind, *key)
    return ()


def _first_composite(conv: Conversion, obr: Segment, n: int) -> Composite | None:
    return conv.first(obr, n)


def map_obr(conv: Conversion, obr: Segment, orc: Segment | None, *, report: bool) -> OrderGroup:
    """Add the ServiceRequest (and, when ``report``, the DiagnosticReport) for an OBR."""
    ctx, zone = conv.ctx, conv.ctx.zone
    key = order_key(conv, obr, orc)
    service = _first_composite(conv, obr, 4)
    code = codeable_concept(service, ctx)
    service_code = (service[1], service[3]) if service is not None else ("", "")
    id_parts = key or ("msh", conv.header.sending_facility, conv.control_id, str(obr.index))
    identifiers = []
    for n, type_code in ((2, "PLAC"), (3, "FILL")):
        ident = ei.identifier(conv.first(obr, n), ctx, conv.loc(obr, n), type_code=type_code)
        if ident is not None:
            identifiers.append(ident)
    for v in conv.reps(obr, 53):  # OBR-53 alternate placer order number (CX)
        alternate = cx.identifier(v, ctx, conv.loc(obr, 53), warn=conv.warnings)
        if alternate is not None:
            identifiers.append(alternate)
    group = OrderGroup(key=id_parts, orc=orc, obr=obr)
    request: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": conv.unique_id("ServiceRequest", *id_parts, *service_code),
        "status": order_status(conv, orc),
        "intent": "order",
    }
    if identifiers:
        request["identifier"] = list(identifiers)
    if code is not None:
        request["code"] = code
    request["subject"] = _subject(conv, obr)
    if conv.encounter_ref:
        request["encounter"] = {"reference": conv.encounter_ref}
    requester = xcn.practitioner(conv, conv.first(obr, 16), conv.loc(obr, 16))
    if requester is not None:
        request["requester"] = requester
    if orc is not None:
        apply_orc(conv, orc, request)
    reasons = [c for c in (codeable_concept(v, ctx) for v in conv.reps(obr, 31)) if c]
    if reasons:
        request["reasonCode"] = reasons
    request_ref = conv.add(request)
    group.request = request
    start = dtm.to_datetime(conv.value(obr, 7), zone, conv.loc(obr, 7), warn=conv.warnings)
    end = dtm.to_datetime(conv.value(obr, 8), zone, conv.loc(obr, 8), warn=conv.warnings)
    group.effective = start
    if not report:
        return group
    status = "unknown"
    result_status = conv.value(obr, 25)
    if result_status:
        mapped = code_from_map(result_status, "ResultStatus[Non-Queries]")
        status = (
            mapped
            if mapped in _REPORT_STATUS
            else {"A": "partial"}.get(result_status.upper(), "unknown")
        )
    diagnostic: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        "id": conv.unique_id("DiagnosticReport", *id_parts, *service_code),
        "basedOn": [{"reference": request_ref}],
        "status": status,
    }
    if identifiers:
        diagnostic["identifier"] = [
            i for i in identifiers if i.get("type", {}).get("coding", [{}])[0].get("code") == "FILL"
        ] or identifiers
    category = codeable_concept(
        conv.first(obr, 24),
        ctx,
        concept_map="DiagnosticServiceSectionID",
        default_system="http://terminology.hl7.org/CodeSystem/v2-0074",
    )
    if category:
        diagnostic["category"] = [category]
    if code is not None:
        diagnostic["code"] = code
    else:  # DiagnosticReport.code is 1..1; OBR-4 is required in v2 too, but was not sent
        conv.absent(diagnostic, "code", conv.loc(obr, 4), "universal service identifier is empty")
    diagnostic["subject"] = request["subject"]
    if conv.encounter_ref:
        diagnostic["encounter"] = {"reference": conv.encounter_ref}
    dr.period_or_datetime(diagnostic, "effective", start, end)
    issued = dtm.to_instant(conv.value(obr, 22), zone, conv.loc(obr, 22), warn=conv.warnings)
    if issued:
        diagnostic["issued"] = issued
    interpreter = conv.first(obr, 32)
    if interpreter is not None:
        who = xcn.practitioner(conv, interpreter.part(1), conv.loc(obr, 32))
        if who is not None:
            diagnostic["resultsInterpreter"] = [who]
    conv.add(diagnostic)
    conv.focus.append(f"DiagnosticReport/{diagnostic['id']}")
    group.report = diagnostic
    return group


def _subject(conv: Conversion, seg: Segment) -> dict[str, str]:
    subject = conv.subject()
    if subject is None:
        raise NormalizeError(conv.loc(seg), "no patient for this order (PID missing)")
    return subject


def close_group(conv: Conversion, group: OrderGroup) -> None:
    """Finish an order group once all its segments are read.

    Without an SPM, the Specimen OBR-15 describes (v2.3-2.6 senders) is made and linked from
    the ServiceRequest, the DiagnosticReport and every Observation of the group (IG
    ``HL7 Message - FHIR R4_ ORU_R01``: "The OBR specimen data yields one Specimen resource
    that all Observations generated for the same OBR need to reference"). A specimen
    collector named by PRT becomes the collector of the group's specimens that have none.
    """
    if group.request is None:
        return
    if not group.specimens and group.obr is not None:
        found = spm.specimen_from_obr(
            conv,
            group.obr,
            parent_key=group.key,
            request=f"ServiceRequest/{group.request['id']}",
        )
        if found is not None:
            group.specimens.append(found)
            for resource in (group.request, group.report):
                if resource is not None:
                    resource.setdefault("specimen", []).append(found)
            for observation in group.observations:
                observation.setdefault("specimen", found)
    if group.collectors:
        for ref in group.specimens:
            specimen = conv.resources[("Specimen", ref["reference"].split("/", 1)[1])]
            specimen.setdefault("collection", {}).setdefault("collector", group.collectors[0])
