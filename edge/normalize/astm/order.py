"""O (E1394 section 9) -> Specimen, ServiceRequest (one per test ordered) and, once its
results are mapped, DiagnosticReport.

An ASTM order is a specimen and the tests asked of it: O-3 (specimen id, the laboratory's
accession) and O-4 (the instrument's specimen id) identify it; O-5 repeats the universal test
ids. FHIR's ServiceRequest has one code, so each test of O-5 is a ServiceRequest, grouped by
``requisition`` = the specimen id. O-6 -> priority; O-7 -> authoredOn; O-8 (collection
time) -> Specimen.collection and the results' effective time; O-12 (action code; C cancel)
and the results -> status; O-16 (specimen descriptor) -> Specimen.type; O-26 (report type)
-> DiagnosticReport.status. C records after the O are notes on the Specimen (or, with no
Specimen, on the ServiceRequests).

Ids come from facility + specimen id (O-3, else the instrument's O-4 scoped to the
instrument) (+ the test code for a ServiceRequest, + the tests ordered for a
DiagnosticReport), so a correction of the same specimen updates the same resources. R4 makes
ServiceRequest.subject required: with no patient in the message, none is made.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from edge.astm.records import OrderGroup
from edge.normalize.astm.codes import annotation, priority, report_status, test_concept
from edge.normalize.astm.state import ASTMConversion
from edge.normalize.codesystems import LOINC
from edge.normalize.conversion import Resource

__all__ = ["MappedOrder", "map_order", "map_report"]

_V2_0203: Final = "http://terminology.hl7.org/CodeSystem/v2-0203"
_V2_0074: Final = "http://terminology.hl7.org/CodeSystem/v2-0074"
# A report of several tests has no single test code: LOINC's generic laboratory report.
_LAB_REPORT: Final = {"coding": [{"system": LOINC, "code": "11502-2",
                                  "display": "Laboratory report"}]}
_SPECIMEN_AUTHORITY: Final = "astm-specimen-id"
_INSTRUMENT_SPECIMEN_AUTHORITY: Final = "astm-instrument-specimen-id"


@dataclass(slots=True)
class MappedOrder:
    """One O record's resources while its results are mapped."""

    key: tuple[str, ...]
    report_type: str = ""
    collected: str | None = None
    specimen_ref: str | None = None
    requests: dict[str, str] = field(default_factory=dict)  # test code -> ServiceRequest ref
    request_resources: list[Resource] = field(default_factory=list)
    concepts: list[dict[str, Any]] = field(default_factory=list)
    codes: list[str] = field(default_factory=list)  # of the tests ordered (O-5)
    identifiers: list[dict[str, Any]] = field(default_factory=list)


def _order_key(conv: ASTMConversion, group: OrderGroup) -> tuple[str, ...]:
    order = group.order
    if order is not None:
        specimen = conv.first(order, 3)
        if specimen:
            return ("astm-specimen", specimen)
        instrument_specimen = conv.first(order, 4)
        if instrument_specimen:
            return ("astm-instrument-specimen", conv.sender_name, instrument_specimen)
        return ("astm", conv.sender_name, "message", conv.message_scoped_id("Order",
                                                                           str(order.position)))
    first = group.results[0].result if group.results else None
    position = str(first.position) if first is not None else "0"
    return ("astm", conv.sender_name, "message", conv.message_scoped_id("Order", position))


def _identifiers(conv: ASTMConversion, group: OrderGroup) -> list[dict[str, Any]]:
    order = group.order
    if order is None:
        return []
    out = []
    specimen = conv.first(order, 3)
    if specimen:
        out.append({"type": {"coding": [{"system": _V2_0203, "code": "ACSN"}]},
                    "system": conv.ctx.facility_system(_SPECIMEN_AUTHORITY),
                    "value": specimen})
    instrument_specimen = conv.first(order, 4)
    if instrument_specimen:
        authority = f"{_INSTRUMENT_SPECIMEN_AUTHORITY}:{conv.sender_name or 'instrument'}"
        out.append({"system": conv.ctx.facility_system(authority),
                    "value": instrument_specimen})
    return out


def map_order(conv: ASTMConversion, group: OrderGroup, subject: str | None) -> MappedOrder:
    """Add the Specimen and ServiceRequests of an order group (an R without an O gets a
    message-scoped key and no resources)."""
    mapped = MappedOrder(key=_order_key(conv, group))
    order = group.order
    if order is None:
        return mapped
    mapped.report_type = conv.first(order, 26)
    mapped.collected = conv.datetime(order, 8)
    mapped.identifiers = _identifiers(conv, group)
    notes = [n for n in (annotation(c) for c in group.comments) if n]
    if mapped.identifiers:
        specimen: dict[str, Any] = {
            "resourceType": "Specimen",
            "id": conv.unique_id("Specimen", *mapped.key),
            "identifier": [dict(i) for i in mapped.identifiers],
            "accessionIdentifier": dict(mapped.identifiers[0]),
        }
        kind = conv.first(order, 16)
        if kind:
            specimen["type"] = {"text": kind}
        if subject:
            specimen["subject"] = {"reference": subject}
        if mapped.collected:
            specimen["collection"] = {"collectedDateTime": mapped.collected}
        if notes:
            specimen["note"] = notes
            notes = []
        mapped.specimen_ref = conv.add(specimen)
    tests = order.test_ids
    requested = conv.datetime(order, 7)
    urgency = priority(conv.first(order, 6))
    for index, test_id in enumerate(tests, start=1):
        code, concept = test_concept(conv, test_id)
        if not concept:
            conv.warnings.append(f"{conv.loc(order, 5)}[{index}]: universal test id is empty")
            continue
        mapped.concepts.append(concept)
        mapped.codes.append(code)
        if subject is None:
            continue
        request: dict[str, Any] = {
            "resourceType": "ServiceRequest",
            "id": conv.unique_id("ServiceRequest", *mapped.key, code),
            "status": _request_status(order.action_code),
            "intent": "order",
        }
        if mapped.identifiers:
            request["identifier"] = [dict(i) for i in mapped.identifiers]
            request["requisition"] = dict(mapped.identifiers[0])
        if urgency:
            request["priority"] = urgency
        request["code"] = concept
        request["subject"] = {"reference": subject}
        if requested:
            request["authoredOn"] = requested
        if mapped.specimen_ref:
            request["specimen"] = [{"reference": mapped.specimen_ref}]
        if notes:
            request["note"] = [dict(n) for n in notes]
        mapped.requests.setdefault(code, conv.add(request))
        mapped.request_resources.append(request)
    if tests and subject is None:
        conv.warnings.append(f"{conv.loc(order, 5)}: no patient, so no ServiceRequest "
                             "(its subject is required)")
    return mapped


def _request_status(action_code: str) -> str:
    # 9.4.12: C cancels the tests; A (add), N (new), P (pending sample), L, X (in process),
    # Q (QC) leave them active. Results complete it (see map_report).
    return "revoked" if action_code.strip().upper() == "C" else "active"


def map_report(conv: ASTMConversion, group: OrderGroup, mapped: MappedOrder,
               observations: list[Resource], subject: str | None) -> Resource | None:
    """Add the DiagnosticReport of an order with results (or whose O-26 reports on it);
    completes or revokes its ServiceRequests to match."""
    reports_on_it = mapped.report_type.strip().upper()[:1] in ("F", "P", "C", "X")
    if group.order is None or not (observations or reports_on_it):
        return None
    status = report_status(mapped.report_type, [o["status"] for o in observations])
    if status in ("final", "corrected"):
        for request in mapped.request_resources:
            if request["status"] == "active":
                request["status"] = "completed"
    elif status == "cancelled":
        for request in mapped.request_resources:
            request["status"] = "revoked"
    report: dict[str, Any] = {
        "resourceType": "DiagnosticReport",
        # A report is on an order: the specimen and the tests asked of it. A later message
        # about some of them (a correction, a rerun) reports on those, in its own report,
        # and leaves the panel's report, with every result it lists, as it was.
        "id": conv.unique_id("DiagnosticReport", *mapped.key, *sorted(set(mapped.codes))),
        "status": status,
    }
    if mapped.identifiers:
        report["identifier"] = [dict(i) for i in mapped.identifiers]
    if mapped.request_resources:
        report["basedOn"] = [{"reference": f"ServiceRequest/{r['id']}"}
                             for r in mapped.request_resources]
    report["category"] = [{"coding": [{"system": _V2_0074, "code": "LAB",
                                       "display": "Laboratory"}]}]
    # A copy: the same concept is its ServiceRequest's code, and resources share no objects.
    report["code"] = copy.deepcopy(mapped.concepts[0] if len(mapped.concepts) == 1
                                   else _LAB_REPORT)
    if subject:
        report["subject"] = {"reference": subject}
    effective = mapped.collected or next(
        (o["effectiveDateTime"] for o in observations if "effectiveDateTime" in o), None)
    if effective:
        report["effectiveDateTime"] = effective
    # The report is issued when its last result is (instants always carry an offset).
    issued = max((o["issued"] for o in observations if "issued" in o),
                 key=datetime.fromisoformat, default=None)
    if issued:
        report["issued"] = issued
    if mapped.specimen_ref:
        report["specimen"] = [{"reference": mapped.specimen_ref}]
    if observations:
        report["result"] = [{"reference": f"Observation/{o['id']}"} for o in observations]
    conv.add(report)
    return report

