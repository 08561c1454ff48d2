"""SPM -> Specimen (v2-to-FHIR IG SPM[Specimen]).

SPM-2 (EIP: placer and filler assigned ids, as subcomponents) -> identifier; SPM-4 -> type;
SPM-7 -> collection.method; SPM-8 -> collection.bodySite; SPM-17 (DR) -> collection.collected;
SPM-18 -> receivedTime; SPM-21 -> condition... (SPM-24 condition, SPM-21 reject reason).
"""

from __future__ import annotations

from typing import Any

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import dtm
from edge.normalize.datatypes.cwe import codeable_concept
from edge.normalize.datatypes.cx import identifier_type

__all__ = ["map_spm"]


def map_spm(
    conv: Conversion, seg: Segment, *, parent_key: tuple[str, ...], request: str | None
) -> dict[str, str]:
    """Add the Specimen for ``seg``; returns a Reference to it."""
    ctx, zone = conv.ctx, conv.ctx.zone
    specimen: dict[str, Any] = {"resourceType": "Specimen"}
    identifiers = []
    key: tuple[str, ...] = ()
    spm2 = conv.first(seg, 2)
    if spm2 is not None:
        for i, type_code in ((1, "PGN"), (2, "FGN")):
            part = spm2.part(i)
            if part[1]:
                ident: dict[str, Any] = {"type": identifier_type(type_code), "value": part[1]}
                if part[2]:
                    ident["system"] = ctx.facility_system(part[2])
                identifiers.append(ident)
                key = key or (part[1], part[2])
    specimen["id"] = (
        conv.make_id("Specimen", *key)
        if key
        else conv.unique_id("Specimen", *parent_key, conv.value(seg, 1))
    )
    if identifiers:
        specimen["identifier"] = identifiers
    type_ = codeable_concept(conv.first(seg, 4), ctx)
    if type_:
        specimen["type"] = type_
    subject = conv.subject()
    if subject:
        specimen["subject"] = subject
    if request:
        specimen["request"] = [{"reference": request}]
    received = dtm.to_datetime(conv.value(seg, 18), zone, conv.loc(seg, 18), warn=conv.warnings)
    if received:
        specimen["receivedTime"] = received
    collection: dict[str, Any] = {}
    collected = conv.first(seg, 17)
    if collected is not None:
        start = dtm.to_datetime(
            collected.part(1)[1], zone, conv.loc(seg, 17, 1), warn=conv.warnings
        )
        end = dtm.to_datetime(collected.part(2)[1], zone, conv.loc(seg, 17, 2), warn=conv.warnings)
        if start and end:
            collection["collectedPeriod"] = {"start": start, "end": end}
        elif start:
            collection["collectedDateTime"] = start
    method = codeable_concept(conv.first(seg, 7), ctx)
    if method:
        collection["method"] = method
    site = codeable_concept(conv.first(seg, 8), ctx)
    if site:
        collection["bodySite"] = site
    if collection:
        specimen["collection"] = collection
    conditions = [c for c in (codeable_concept(v, ctx) for v in conv.reps(seg, 24)) if c]
    if conditions:
        specimen["condition"] = conditions
    return {"reference": conv.add(specimen)}
