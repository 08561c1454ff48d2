"""OBX -> Observation, for every OBX-2 value type (v2-to-FHIR IG OBX[Observation]).

OBX-3 -> code; OBX-5 per OBX-2: NM -> valueQuantity (with OBX-6 units), SN -> Quantity / Range
/ Ratio / string, ST/TX/FT -> valueString (repetitions joined by newlines), CWE/CE/CNE/CF/IS/ID
-> valueCodeableConcept, DT/DTM/TS -> valueDateTime, TM -> valueTime, DR -> valuePeriod,
NR -> valueRange, ED/RP -> the R5 Observation.value extension holding an Attachment, MO/CP ->
valueQuantity in the ISO 4217 currency, any other type -> valueString of the text sent;
OBX-7 -> referenceRange.text; OBX-8 -> interpretation; OBX-11 -> status; OBX-14 ->
effectiveDateTime (else the OBR's OBR-7); OBX-16 -> performer; OBX-17 -> method; OBX-20 ->
bodySite; OBX-23 -> performer (Organization); OBX-29 -> category.

An NM value that is not a number (``<5``, ``>10``, ``POS``) is kept: a leading comparator
gives a Quantity with ``comparator``, other text a valueString, since dropping or rejecting a
result the lab sent loses clinical content.

Ids come from the order (or parent record) identity + OBX-3 + OBX-4, so a correction
(OBX-11 ``C``) of the same result updates the same Observation.
"""

from __future__ import annotations

import re
from typing import Any, Final

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import dr, dtm, ed, ei, nm, sn, xcn, xon
from edge.normalize.datatypes.cwe import code_from_map, codeable_concept
from edge.normalize.errors import NormalizeError
from edge.normalize.validate import REQUIRED_BINDINGS

__all__ = ["map_obx", "observation_value"]

_STATUS_FALLBACK: Final = {
    "I": "registered",
    "O": "registered",
    "R": "preliminary",
    "S": "preliminary",
    "X": "cancelled",
    "W": "entered-in-error",
    "U": "final",
    "B": "amended",
    "N": "final",
}
_OBS_STATUS: Final = REQUIRED_BINDINGS[("Observation", "status")]
_CODED: Final = frozenset({"CWE", "CE", "CNE", "CF", "IS", "ID", "CV", "CN"})
_TEXT: Final = frozenset({"ST", "TX", "FT", "GTS"})
_R5_VALUE: Final = "http://hl7.org/fhir/5.0/StructureDefinition/extension-Observation.value"
_COMPARATOR_NM: Final = re.compile(r"^\s*(<=|>=|<|>)\s*([+-]?(?:\d+\.?\d*|\.\d+))\s*$")
_CATEGORY: Final = "http://terminology.hl7.org/CodeSystem/observation-category"


def observation_status(code: str) -> str:
    if not code:
        return "unknown"
    mapped = code_from_map(code, "ObservationResultStatusCodesInterpretation")
    if mapped in _OBS_STATUS:
        return mapped
    return _STATUS_FALLBACK.get(code.upper(), "unknown")


def _text_value(conv: Conversion, seg: Segment) -> str:
    field = seg.field(5)
    texts = []
    for i in range(1, len(field.repetitions) + 1):
        text = field.text(i)
        if text and text != '""':
            texts.append(text)
    return "\n".join(texts).strip()


def observation_value(conv: Conversion, seg: Segment, value_type: str) -> dict[str, Any]:
    """The ``value[x]`` (or value extension) elements for OBX-5 as OBX-2 types it."""
    path = conv.loc(seg, 5)
    reps = conv.reps(seg, 5)
    if not reps:
        return {}
    v = reps[0]
    units = conv.first(seg, 6)
    kind = value_type.upper()
    if kind == "NM":
        number = (
            nm.parse_number(v[1]) if len(v) == 1 or not any(v[i] for i in range(2, 5)) else None
        )
        if number is not None:
            return {"valueQuantity": nm.quantity(number, units, text=v[1])}
        match = _COMPARATOR_NM.match(v.text())
        if match is not None:
            parsed = nm.parse_number(match.group(2))
            assert parsed is not None
            bounded = nm.quantity(parsed, units, text=match.group(2))
            return {
                "valueQuantity": {
                    "value": bounded.pop("value"),
                    "comparator": match.group(1),
                    **bounded,
                }
            }
        return {"valueString": _text_value(conv, seg)}
    if kind == "SN":
        result = sn.structured_numeric(v, units)
        return {f"value{result[0]}": result[1]} if result else {}
    if kind == "VR":  # value range: OBX-5.1 "-" OBX-5.2 (IG OBX[Observation])
        text = "-".join(p for p in (v[1], v[2]) if p)
        return {"valueString": text} if text else {}
    if kind in _TEXT:
        text = _text_value(conv, seg)
        return {"valueString": text} if text else {}
    if kind in _CODED:
        concept = codeable_concept(v, conv.ctx)
        for extra in reps[1:]:
            more = codeable_concept(extra, conv.ctx)
            if concept is not None and more is not None and "coding" in more:
                concept.setdefault("coding", []).extend(more["coding"])
        return {"valueCodeableConcept": concept} if concept else {}
    if kind in ("DT", "DTM", "TS"):
        value = dtm.to_datetime(v[1], conv.ctx.zone, path, warn=conv.warnings)
        return {"valueDateTime": value} if value else {}
    if kind == "TM":
        value = dtm.to_time(v[1], path, warn=conv.warnings)
        return {"valueTime": value} if value else {}
    if kind == "DR":
        start, end = dr.bounds(v, conv.ctx.zone, path, conv.warnings)
        period = {k: x for k, x in (("start", start), ("end", end)) if x}
        return {"valuePeriod": period} if period else {}
    if kind == "NR":
        low, high = nm.parse_number(v[1]) if v[1] else None, nm.parse_number(v[2]) if v[2] else None
        if (v[1] and low is None) or (v[2] and high is None):
            raise NormalizeError(path, "NR bounds must be numbers")
        bounds: dict[str, Any] = {}
        for key, number, text in (("low", low, v[1]), ("high", high, v[2])):
            if number is not None:
                bound: dict[str, Any] = {}
                nm.with_precision(bound, "value", number, text)
                bounds[key] = bound
        return {"valueRange": bounds} if bounds else {}
    if kind in ("ED", "RP"):
        attachment = (
            ed.attachment(v, path, warn=conv.warnings) if kind == "ED" else ed.reference_pointer(v)
        )
        if attachment is None:
            return {}
        return {"extension": [{"url": _R5_VALUE, "valueAttachment": attachment}]}
    if kind in ("MO", "CP"):
        money = v.part(1) if kind == "CP" else v
        amount = nm.parse_number(money[1])
        if amount is not None:
            quantity: dict[str, Any] = {}
            nm.with_precision(quantity, "value", amount, money[1])
            if money[2]:
                quantity.update(unit=money[2], system="urn:iso:std:iso:4217", code=money[2])
            return {"valueQuantity": quantity}
    text = " ".join(p for p in v.text().replace(conv.delimiters.component, " ").split())
    return {"valueString": text} if text else {}


def map_obx(
    conv: Conversion,
    seg: Segment,
    *,
    parent_key: tuple[str, ...],
    effective: str | None = None,
    based_on: str | None = None,
    part_of: str | None = None,
) -> dict[str, Any]:
    """Add the Observation for ``seg`` and return it (the caller links it to its report)."""
    ctx, zone = conv.ctx, conv.ctx.zone
    code_value = conv.first(seg, 3)
    code = codeable_concept(code_value, ctx)
    code_key = (code_value[1] or code_value[2], code_value[3]) if code_value else ("", "")
    sub_id = conv.value(seg, 4)
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": conv.unique_id("Observation", *parent_key, *code_key, sub_id),
        "status": observation_status(conv.value(seg, 11)),
    }
    instance = ei.identifier(conv.first(seg, 21), ctx, conv.loc(seg, 21), type_code="FILL")
    if instance is not None:
        observation["identifier"] = [instance]
    if based_on:
        observation["basedOn"] = [{"reference": based_on}]
    if part_of:
        observation["partOf"] = [{"reference": part_of}]
    category = conv.value(seg, 29)
    if category:
        observation["category"] = [
            {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/v2-0936", "code": category}
                ]
            }
        ]
    if code is not None:
        observation["code"] = code
    else:  # Observation.code is 1..1: keep the value, mark the code absent
        conv.absent(observation, "code", conv.loc(seg, 3), "observation identifier is empty")
    subject = conv.subject()
    if subject:
        observation["subject"] = subject
    if conv.encounter_ref:
        observation["encounter"] = {"reference": conv.encounter_ref}
    when = (
        dtm.to_datetime(conv.value(seg, 14), zone, conv.loc(seg, 14), warn=conv.warnings)
        or effective
    )
    if when:
        observation["effectiveDateTime"] = when
    performers = []
    for v in conv.reps(seg, 16):
        who = xcn.practitioner(conv, v, conv.loc(seg, 16))
        if who is not None:
            performers.append(who)
    organization = xon.organization(conv, conv.first(seg, 23), conv.loc(seg, 23))
    if organization is not None:
        performers.append(organization)
    if performers:
        observation["performer"] = performers
    value = observation_value(conv, seg, conv.value(seg, 2) or "ST")
    extensions = value.pop("extension", None)
    observation.update(value)
    if extensions:
        observation["extension"] = extensions
    if conv.value(seg, 11).upper() == "N" and not value:
        observation["dataAbsentReason"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "code": "not-asked",
                }
            ]
        }
    interpretations = [
        c
        for c in (
            codeable_concept(v, ctx, concept_map="InterpretationCodes") for v in conv.reps(seg, 8)
        )
        if c
    ]
    if interpretations:
        observation["interpretation"] = interpretations
    method = codeable_concept(conv.first(seg, 17), ctx)
    if method:
        observation["method"] = method
    site = codeable_concept(conv.first(seg, 20), ctx)
    if site:
        observation["bodySite"] = site
    reference_range = conv.text(seg, 7)
    if reference_range:
        observation["referenceRange"] = [{"text": reference_range}]
    conv.add(observation)
    return observation
