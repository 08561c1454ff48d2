"""SPM -> Specimen (``HL7 Segment - FHIR R4_ SPM[Specimen] - SPM.csv``), and the Specimen an
OBR describes when no SPM is sent (``HL7 Segment - FHIR R4_ OBR[Specimen] - Sheet1.csv`` with
``HL7 Data Type - FHIR R4_ SPS[Specimen-Source] - Sheet1.csv`` for OBR-15).

SPM rows mapped: SPM-2 (EIP: placer and filler assigned ids) -> identifier; SPM-3 -> parent
(a logical reference by identifier); SPM-4 -> type (SpecimenType map); SPM-6 ->
container.additiveCodeableConcept (AdditivePreservative map); SPM-7 -> collection.method
(SpecimenCollectionMethod map); SPM-8 -> collection.bodySite; SPM-12 (CQ) ->
collection.quantity; SPM-14 -> note; SPM-17 (DR) -> collection.collected[x]; SPM-18 ->
receivedTime; SPM-20 -> status (YesNoIndicator[AvailabilityStatus] map); SPM-24 -> condition
(SpecimenCondition map); SPM-27 -> container.type (ContainerType map, empty in the IG: as
sent); SPM-30 -> accessionIdentifier; SPM-31 -> identifier; SPM-32 -> identifier typed SHIP.
The IG leaves SPM-26 (number of containers) and SPM-28 (container condition) unmapped, and so
do we.

A concept map is applied only when the code is sent in that map's v2 table (or with no
coding system): the maps are keyed by code alone, and a SNOMED code must not be read as a
table 0487 one.
"""

from __future__ import annotations

from typing import Any, Final

from edge.er7 import Segment
from edge.normalize import vocab
from edge.normalize.context import NormalizeContext
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import cq, dr, dtm, ei, xcn
from edge.normalize.datatypes.cwe import code_from_map, codeable_concept
from edge.normalize.datatypes.cx import identifier_type
from edge.normalize.datatypes.hd import authority_system
from edge.normalize.v2 import Composite

__all__ = ["map_spm", "specimen_from_obr"]

_SPECIMEN_STATUS: Final = frozenset(
    {"available", "unavailable", "unsatisfactory", "entered-in-error"}
)
# IG concept map -> the v2 table its codes come from (generated: vocab "table").
_MAP_TYPE: Final = "SpecimenType"
_MAP_ADDITIVE: Final = "AdditivePreservative"
_MAP_METHOD: Final = "SpecimenCollectionMethod"
_MAP_SITE: Final = "SpecimenSourceSite"
_MAP_BODY_SITE: Final = "BodySite"
_MAP_CONDITION: Final = "SpecimenCondition"
_MAP_CONTAINER: Final = "ContainerType"


def coded(v: Composite | None, ctx: NormalizeContext, concept_map: str) -> dict[str, Any] | None:
    """A CodeableConcept for CWE ``v``, with ``concept_map`` applied when the code is sent in
    that map's v2 table or with no coding system (module docstring)."""
    if v is None or not v:
        return None
    table = vocab.concept_map_table(concept_map)
    system = v[3].upper().replace("-", "").replace(" ", "")
    applies = bool(table) and system in ("", table.upper())
    return codeable_concept(v, ctx, concept_map=concept_map if applies else None)


def _eip_identifiers(
    conv: Conversion, v: Composite | None
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    identifiers: list[dict[str, Any]] = []
    key: tuple[str, ...] = ()
    if v is None:
        return identifiers, key
    for i, type_code in ((1, "PGN"), (2, "FGN")):
        part = v.part(i)
        if part[1]:
            ident: dict[str, Any] = {"type": identifier_type(type_code), "value": part[1]}
            if part[2]:
                ident["system"] = conv.ctx.facility_system(part[2])
            identifiers.append(ident)
            key = key or (part[1], part[2])
    return identifiers, key


def _cx(conv: Conversion, v: Composite, path: str, type_code: str = "") -> dict[str, Any] | None:
    # Specimen ids are not patient ids: an unknown authority gets the facility URI (as EI)
    # instead of the CX dead-letter policy.
    if not v[1]:
        return None
    out: dict[str, Any] = {}
    type_ = identifier_type(type_code or v[5])
    if type_ is not None:
        out["type"] = type_
    system = authority_system(v.part(4), conv.ctx, f"{path}.4", strict=False)
    if system:
        out["system"] = system
    out["value"] = v[1]
    return out


def _type_subject_received(conv: Conversion, specimen: dict[str, Any], type_value: Composite | None,
                           seg: Segment, received_field: int) -> None:
    """Specimen.type, .subject and .receivedTime, set alike by the SPM and OBR[Specimen] maps
    (SPM-4 / SPS-1 type, the message's patient, SPM-18 / OBR-14 received time)."""
    type_ = coded(type_value, conv.ctx, _MAP_TYPE)
    if type_:
        specimen["type"] = type_
    subject = conv.subject()
    if subject:
        specimen["subject"] = subject
    received = dtm.to_datetime(conv.value(seg, received_field), conv.ctx.zone,
                               conv.loc(seg, received_field), warn=conv.warnings)
    if received:
        specimen["receivedTime"] = received


def map_spm(
    conv: Conversion, seg: Segment, *, parent_key: tuple[str, ...], request: str | None
) -> dict[str, str]:
    """Add the Specimen for ``seg``; returns a Reference to it."""
    ctx, zone = conv.ctx, conv.ctx.zone
    specimen: dict[str, Any] = {"resourceType": "Specimen"}
    identifiers, key = _eip_identifiers(conv, conv.first(seg, 2))
    for v in conv.reps(seg, 31):
        other = _cx(conv, v, conv.loc(seg, 31))
        if other is not None:
            identifiers.append(other)
    shipment = ei.identifier(conv.first(seg, 32), ctx, conv.loc(seg, 32), type_code="SHIP")
    if shipment is not None:
        identifiers.append(shipment)
    specimen["id"] = (
        conv.make_id("Specimen", *key)
        if key
        else conv.unique_id("Specimen", *parent_key, conv.value(seg, 1))
    )
    if identifiers:
        specimen["identifier"] = identifiers
    accession = conv.first(seg, 30)
    if accession is not None:
        found = _cx(conv, accession, conv.loc(seg, 30))
        if found is not None:
            specimen["accessionIdentifier"] = found
    availability = conv.value(seg, 20)
    if availability:
        status = code_from_map(availability, "YesNoIndicator[AvailabilityStatus]")
        if status in _SPECIMEN_STATUS:
            specimen["status"] = status
    _type_subject_received(conv, specimen, conv.first(seg, 4), seg, 18)
    parents = []
    for v in conv.reps(seg, 3):
        parent_ids, _ = _eip_identifiers(conv, v)
        if parent_ids:
            parents.append({"type": "Specimen", "identifier": parent_ids[-1]})
    if parents:
        specimen["parent"] = parents
    if request:
        specimen["request"] = [{"reference": request}]
    collection: dict[str, Any] = {}
    dr.period_or_datetime(collection, "collected",
                          *dr.bounds(conv.first(seg, 17), zone, conv.loc(seg, 17), conv.warnings))
    amount = cq.quantity(conv.first(seg, 12))
    if amount is not None:
        collection["quantity"] = amount
    method = coded(conv.first(seg, 7), ctx, _MAP_METHOD)
    if method:
        collection["method"] = method
    site = coded(conv.first(seg, 8), ctx, _MAP_SITE)
    if site:
        collection["bodySite"] = site
    if collection:
        specimen["collection"] = collection
    container: dict[str, Any] = {}
    container_type = coded(conv.first(seg, 27), ctx, _MAP_CONTAINER)
    if container_type:
        container["type"] = container_type
    additive = coded(conv.first(seg, 6), ctx, _MAP_ADDITIVE)
    if additive:
        container["additiveCodeableConcept"] = additive
    if container:
        specimen["container"] = [container]
    conditions = [c for c in (coded(v, ctx, _MAP_CONDITION) for v in conv.reps(seg, 24)) if c]
    if conditions:
        specimen["condition"] = conditions
    notes = [{"text": v.text()} for v in conv.reps(seg, 14) if v.text().strip()]
    if notes:
        specimen["note"] = notes
    return {"reference": conv.add(specimen)}


def specimen_from_obr(
    conv: Conversion, obr: Segment, *, parent_key: tuple[str, ...], request: str | None
) -> dict[str, str] | None:
    """Add the Specimen OBR-15 (SPS) describes, with the OBR[Specimen] fields: OBR-7/8 ->
    collection.collected[x], OBR-9 (CQ) -> collection.quantity, OBR-10 -> collection.collector,
    OBR-14 -> receivedTime, OBR-39 -> note. ``None`` when OBR-15 is empty.

    SPS (IG SPS[Specimen-Source]): SPS-1 -> type (SpecimenType), SPS-2 ->
    container.additiveCodeableConcept, SPS-3 -> note, SPS-4 -> collection.bodySite (BodySite),
    SPS-6 -> condition (SpecimenCondition); SPS-5 and SPS-7 are not mapped by the IG.
    """
    source = conv.first(obr, 15)
    if source is None:
        return None
    ctx, zone = conv.ctx, conv.ctx.zone
    specimen: dict[str, Any] = {
        "resourceType": "Specimen",
        "id": conv.unique_id("Specimen", *parent_key, "OBR-15"),
    }
    _type_subject_received(conv, specimen, source.part(1), obr, 14)
    if request:
        specimen["request"] = [{"reference": request}]
    collection: dict[str, Any] = {}
    collector = xcn.practitioner(conv, conv.first(obr, 10), conv.loc(obr, 10))
    if collector is not None:
        collection["collector"] = collector
    start = dtm.to_datetime(conv.value(obr, 7), zone, conv.loc(obr, 7), warn=conv.warnings)
    end = dtm.to_datetime(conv.value(obr, 8), zone, conv.loc(obr, 8), warn=conv.warnings)
    dr.period_or_datetime(collection, "collected", start, end)
    volume = cq.quantity(conv.first(obr, 9))
    if volume is not None:
        collection["quantity"] = volume
    site = coded(source.part(4), ctx, _MAP_BODY_SITE)
    if site:
        collection["bodySite"] = site
    if collection:
        specimen["collection"] = collection
    additive = coded(source.part(2), ctx, _MAP_ADDITIVE)
    if additive:
        specimen["container"] = [{"additiveCodeableConcept": additive}]
    condition = coded(source.part(6), ctx, _MAP_CONDITION)
    if condition:
        specimen["condition"] = [condition]
    notes = [{"text": source.part(3).text()}] if source.part(3).text().strip() else []
    for v in conv.reps(obr, 39):
        comment = codeable_concept(v, ctx)
        text = (comment or {}).get("text") or v[2] or v[1]
        if text:
            notes.append({"text": text})
    if notes:
        specimen["note"] = notes
    return {"reference": conv.add(specimen)}
