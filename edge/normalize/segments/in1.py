"""IN1 -> Coverage (v2-to-FHIR IG IN1[Coverage]).

IN1-2 -> identifier (health plan id); IN1-3/4 -> payor (Organization); IN1-12/13 -> period;
IN1-15 -> type; IN1-17 -> relationship (Relationship map); IN1-36 -> subscriberId. The
patient is the beneficiary. The id comes from the patient, plan and policy number.
"""

from __future__ import annotations

from typing import Any

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import dtm, xon
from edge.normalize.datatypes.cwe import codeable_concept
from edge.normalize.errors import NormalizeError

__all__ = ["map_in1"]


def map_in1(conv: Conversion, seg: Segment) -> str:
    ctx, zone = conv.ctx, conv.ctx.zone
    if conv.patient_ref is None:
        raise NormalizeError(conv.loc(seg), "no patient for this coverage (PID missing)")
    plan = conv.first(seg, 2)
    policy = conv.value(seg, 36)
    coverage: dict[str, Any] = {
        "resourceType": "Coverage",
        "id": conv.unique_id(
            "Coverage",
            conv.patient_ref,
            plan.text() if plan else "",
            policy,
            "" if plan or policy else conv.value(seg, 1),
        ),
        "status": "active",
    }
    if plan is not None and plan[1]:
        coverage["identifier"] = [{"system": ctx.facility_system("health-plan"), "value": plan[1]}]
    type_ = codeable_concept(conv.first(seg, 15), ctx)
    if type_:
        coverage["type"] = type_
    if policy:
        coverage["subscriberId"] = policy
    coverage["beneficiary"] = {"reference": conv.patient_ref}
    relationship = codeable_concept(conv.first(seg, 17), ctx, concept_map="Relationship")
    if relationship:
        coverage["relationship"] = relationship
    start = dtm.to_datetime(conv.value(seg, 12), zone, conv.loc(seg, 12), warn=conv.warnings)
    end = dtm.to_datetime(conv.value(seg, 13), zone, conv.loc(seg, 13), warn=conv.warnings)
    if start or end:
        coverage["period"] = {k: x for k, x in (("start", start), ("end", end)) if x}
    payor = xon.organization(conv, conv.first(seg, 4), conv.loc(seg, 4))
    if payor is None:
        company = conv.first(seg, 3)
        if company is not None and company[1]:
            payor = xon.organization(conv, company, conv.loc(seg, 3))
    coverage["payor"] = [payor or {"display": "unknown payor"}]
    return conv.add(coverage)
