"""NK1 -> RelatedPerson (v2-to-FHIR IG NK1[RelatedPerson]).

NK1-2/30 -> name; NK1-3 -> relationship (Relationship map, v3-RoleCode); NK1-7 ->
relationship (ContactRole); NK1-4/32 -> address; NK1-5/6/31/40/41 -> telecom; NK1-8/9 ->
period; NK1-12/33 -> identifier; NK1-15 -> gender; NK1-16 -> birthDate.
NK1 identifies no one on its own, so its id is scoped to the patient and NK1-1 (set id).
"""

from __future__ import annotations

from typing import Any

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import cx, dtm, xad, xpn, xtn
from edge.normalize.datatypes.cwe import codeable_concept
from edge.normalize.segments.pid import administrative_gender

__all__ = ["map_nk1"]


def map_nk1(conv: Conversion, seg: Segment) -> str | None:
    """Add the RelatedPerson for ``seg``; ``None`` when there is no patient to relate to."""
    if conv.patient_ref is None:
        return None
    ctx, zone = conv.ctx, conv.ctx.zone
    person: dict[str, Any] = {
        "resourceType": "RelatedPerson",
        "id": conv.unique_id("RelatedPerson", conv.patient_ref, conv.value(seg, 1)),
        "patient": {"reference": conv.patient_ref},
    }
    identifiers = [
        i
        for i in (
            cx.identifier(v, ctx, conv.loc(seg, n), warn=conv.warnings)
            for n in (12, 33)
            for v in conv.reps(seg, n)
        )
        if i
    ]
    if identifiers:
        person["identifier"] = identifiers
    relationships = [
        c
        for c in (
            codeable_concept(conv.first(seg, 3), ctx, concept_map="Relationship"),
            codeable_concept(conv.first(seg, 7), ctx, concept_map="ContactRole"),
        )
        if c
    ]
    if relationships:
        person["relationship"] = relationships
    names = [
        n
        for n in (
            xpn.human_name(v, zone, conv.loc(seg, k), warn=conv.warnings)
            for k in (2, 30)
            for v in conv.reps(seg, k)
        )
        if n
    ]
    if names:
        person["name"] = names
    telecom = [
        t
        for t in (
            xtn.contact_point(
                v,
                zone,
                conv.loc(seg, k),
                default_use="work" if k == 6 else None,
                warn=conv.warnings,
            )
            for k in (5, 6, 31, 40, 41)
            for v in conv.reps(seg, k)
        )
        if t
    ]
    if telecom:
        person["telecom"] = telecom
    sex = conv.value(seg, 15)
    if sex:
        gender = administrative_gender(conv, sex, conv.loc(seg, 15))
        if gender is not None:
            person["gender"] = gender
    birth = dtm.to_date(conv.value(seg, 16), conv.loc(seg, 16), warn=conv.warnings)
    if birth:
        person["birthDate"] = birth
    language = codeable_concept(conv.first(seg, 20), ctx)
    if language:
        person["communication"] = [{"language": language}]
    addresses = [
        a
        for a in (
            xad.address(v, zone, conv.loc(seg, k), warn=conv.warnings)
            for k in (4, 32)
            for v in conv.reps(seg, k)
        )
        if a
    ]
    if addresses:
        person["address"] = addresses
    start = dtm.to_datetime(conv.value(seg, 8), zone, conv.loc(seg, 8), warn=conv.warnings)
    end = dtm.to_datetime(conv.value(seg, 9), zone, conv.loc(seg, 9), warn=conv.warnings)
    if start or end:
        person["period"] = {k: x for k, x in (("start", start), ("end", end)) if x}
    return conv.add(person)
