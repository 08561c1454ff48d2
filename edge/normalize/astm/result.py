"""R (E1394 section 10) -> Observation.

R-3 universal test id -> code (through the device profile: the code's component and
system); R-4 -> value: a number -> valueQuantity with the unit (R-5, or the profile's
override), coded in UCUM when the unit is a UCUM unit (the same table the HL7 side uses,
``vocab/ucum_units.json``) and kept as text otherwise; ``<5`` / ``>10`` -> a Quantity with
its comparator; anything else -> valueString. R-6 reference range (``70 to 105``) ->
referenceRange low/high (and its text); R-7 abnormal flag -> interpretation; R-9 result
status (else the order's O-26) -> status; O-8 (collection), else R-13 (completed) ->
effectiveDateTime; R-13 -> issued; H-5 / R-14 -> device; C records after the R -> note.

The id is facility + specimen id + test code, so a correction (R-9 ``C``) of the same test
on the same specimen updates the Observation it corrects.
"""

from __future__ import annotations

import re
from typing import Any, Final

from edge.astm.records import ResultGroup
from edge.normalize import vocab
from edge.normalize.astm.codes import (
    LAB_CATEGORY,
    annotation,
    interpretation,
    observation_status,
    test_concept,
)
from edge.normalize.astm.order import MappedOrder
from edge.normalize.astm.state import ASTMConversion
from edge.normalize.codesystems import UCUM
from edge.normalize.conversion import Resource
from edge.normalize.datatypes.nm import parse_number
from edge.normalize.errors import NormalizeError

__all__ = ["map_result", "quantity", "reference_range"]

_NUMBER: Final = r"[+-]?(?:\d+\.?\d*|\.\d+)"
_COMPARATOR: Final = re.compile(rf"^\s*(<=|>=|<|>)\s*({_NUMBER})\s*$")
# 10.1.6: "lower limit to upper limit"; instruments also write "70-105" or "70^105".
_RANGE: Final = re.compile(rf"^\s*({_NUMBER})\s*(?:to|TO|-|\^)\s*({_NUMBER})\s*$")
_DATA_ABSENT: Final = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
# Why an R record has no value, by result status (10.1.9).
_ABSENT_BY_STATUS: Final = {"X": "not-performed", "I": "temp-unknown"}


def quantity(value: int | float, unit: str) -> dict[str, Any]:
    """A Quantity; the unit in UCUM when it is one (a common UCUM unit as written, or a
    known ISO+/ANSI+ unit), else as text only: never guessed into a code."""
    out: dict[str, Any] = {"value": value}
    unit = unit.strip()
    if unit:
        out["unit"] = unit
        ucum = vocab.ucum_for(unit)
        if ucum:
            out["system"] = UCUM
            out["code"] = ucum
    return out


def _value(parts: list[str], unit: str) -> dict[str, Any]:
    # 10.1.4: a quantitative value is the first component; a qualitative one may use more
    # (``POS^1:40``), kept together as text.
    text = parts[0]
    number = parse_number(text)
    if number is not None:
        return {"valueQuantity": quantity(number, unit)}
    bounded = _COMPARATOR.match(text)
    if bounded is not None:
        limit = parse_number(bounded.group(2))
        assert limit is not None
        out = quantity(limit, unit)
        return {"valueQuantity": {"value": out.pop("value"), "comparator": bounded.group(1),
                                  **out}}
    return {"valueString": " ".join(p for p in parts if p)}


def reference_range(text: str, unit: str) -> dict[str, Any] | None:
    """R-6 as a referenceRange: low and high when the range is two numbers (or one bound,
    ``<5``), always the text as sent."""
    text = text.strip()
    if not text:
        return None
    out: dict[str, Any] = {}
    both = _RANGE.match(text)
    if both is not None:
        low, high = parse_number(both.group(1)), parse_number(both.group(2))
        if low is not None and high is not None and low <= high:
            out["low"] = quantity(low, unit)
            out["high"] = quantity(high, unit)
    else:
        bound = _COMPARATOR.match(text)
        if bound is not None:
            limit = parse_number(bound.group(2))
            assert limit is not None
            out["high" if bound.group(1).startswith("<") else "low"] = quantity(limit, unit)
    out["text"] = text
    return out


def map_result(conv: ASTMConversion, group: ResultGroup, order: MappedOrder,
               subject: str | None) -> Resource:
    """Add the Observation of an R record and return it. Raises :class:`NormalizeError`
    (``R[n]-3``) for a result that names no test: a value of nothing cannot be kept."""
    record = group.result
    code, concept = test_concept(conv, record.test_id)
    if not concept:
        raise NormalizeError(conv.loc(record, 3), "universal test id is empty")
    result_status = conv.first(record, 9)
    observation: dict[str, Any] = {
        "resourceType": "Observation",
        "id": conv.unique_id("Observation", *order.key, code),
        "status": observation_status(result_status, order.report_type),
    }
    based_on = order.requests.get(code) or (
        next(iter(order.requests.values())) if len(order.requests) == 1 else None)
    if based_on:
        observation["basedOn"] = [{"reference": based_on}]
    observation["category"] = [LAB_CATEGORY]
    observation["code"] = concept
    if subject:
        observation["subject"] = {"reference": subject}
    completed = conv.datetime(record, 13)
    effective = order.collected or completed
    if effective:
        observation["effectiveDateTime"] = effective
    issued = conv.instant(record, 13) if completed else None
    if issued:
        observation["issued"] = issued
    unit = conv.profile.unit(record)
    parts = [p.strip() for p in record.components(4)]
    if any(parts):
        observation.update(_value(parts, unit))
    else:
        reason = _ABSENT_BY_STATUS.get(result_status.upper()[:1], "unknown")
        observation["dataAbsentReason"] = {"coding": [{"system": _DATA_ABSENT, "code": reason}]}
    flags = [c for c in (interpretation(r[0]) for r in record.repeats(7) if r) if c]
    if flags:
        observation["interpretation"] = flags
    notes = [n for n in (annotation(c) for c in group.comments) if n]
    if notes:
        observation["note"] = notes
    if order.specimen_ref:
        observation["specimen"] = {"reference": order.specimen_ref}
    device = _device(conv, conv.first(record, 14))
    if device:
        observation["device"] = device
    range_ = reference_range(record.reference_range, unit)
    if range_:
        observation["referenceRange"] = [range_]
    conv.add(observation)
    return observation


def _device(conv: ASTMConversion, instrument: str) -> dict[str, str] | None:
    # The instrument (H-5) is the Device; R-14 names the unit of it that ran the test.
    out: dict[str, str] = {}
    if conv.device_ref:
        out["reference"] = conv.device_ref
    display = instrument or conv.sender_name
    if display:
        out["display"] = display
    return out or None
