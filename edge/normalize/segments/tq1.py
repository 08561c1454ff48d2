"""TQ1 (timing/quantity, v2.5+) -> the timing of a ServiceRequest.

Follows the IG's ``HL7 Segment - FHIR R4_ TQ1[ServiceRequest] - TQ1.csv``:

- TQ1-2 (CQ) -> ``quantityQuantity`` (CQ[Quantity]);
- TQ1-3 (RPT) -> ``occurrenceTiming`` (RPT[Timing]: code, period, when, offset);
- TQ1-4 (TM) -> ``occurrenceTiming.repeat.timeOfDay``;
- TQ1-5 (CQ) -> ``occurrenceTiming.repeat.offset`` in minutes, when TQ1-3.9 is empty (CQ
  [unsignedInt]); FHIR allows an offset only with a ``when`` (invariant tim-9);
- TQ1-6 (CQ) -> ``occurrenceTiming.repeat.boundsDuration`` when neither TQ1-7 nor TQ1-8 is
  sent, else the missing end of ``boundsPeriod`` (start + duration, or end - duration);
- TQ1-7/8 (DTM) -> ``occurrenceTiming.repeat.boundsPeriod.start/end``;
- TQ1-9 (CWE) -> ``priority`` (ExtendedPriorityCodes map; R4 binds it to RequestPriority);
- TQ1-11 (TX) -> ``note.text``;
- TQ1-13 (CQ) -> ``occurrenceTiming.repeat.duration`` and ``durationUnit`` (CQ[decimal],
  CQ[code]);
- TQ1-14 (NM) -> ``occurrenceTiming.repeat.countMax`` (NM[positiveInt]).

TQ1-10 (condition text) maps to an extension the IG has not defined yet; TQ1-12
(conjunction) is not mapped by the IG. Only the first TQ1 of an order is mapped: FHIR has one
``occurrence[x]`` (a second TQ1 with conjunction ``S``/``A`` has no FHIR equivalent).
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any, Final

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import cq, dtm, nm, rpt
from edge.normalize.datatypes.cwe import code_from_map

__all__ = ["apply_tq1"]

_PRIORITY: Final = frozenset({"routine", "urgent", "asap", "stat"})
_STEP: Final = {"s": 1, "min": 60, "h": 3600, "d": 86400, "wk": 604800}


def _shift(moment: str, seconds: float) -> str | None:
    """FHIR dateTime ``moment`` moved by ``seconds`` at its own precision; ``None`` when the
    precision is coarser than the step (a year or month cannot be moved by hours)."""
    if "T" in moment:
        return (datetime.fromisoformat(moment) + timedelta(seconds=seconds)).isoformat()
    if len(moment) == 10 and seconds % 86400 == 0:
        return (date.fromisoformat(moment) + timedelta(seconds=seconds)).isoformat()
    return None


def apply_tq1(conv: Conversion, seg: Segment, request: dict[str, Any]) -> None:
    """Fill ``request`` (a ServiceRequest) from TQ1 ``seg`` (the caller passes an order's first
    TQ1 only)."""
    ctx, zone = conv.ctx, conv.ctx.zone
    quantity = cq.quantity(conv.first(seg, 2))
    if quantity is not None:
        request["quantityQuantity"] = quantity
    pattern = conv.first(seg, 3)
    timing: dict[str, Any] = rpt.timing(pattern, ctx) or {}
    repeat: dict[str, Any] = timing.pop("repeat", {})
    times = [
        t
        for t in (
            dtm.to_time(v[1], conv.loc(seg, 4), warn=conv.warnings) for v in conv.reps(seg, 4)
        )
        if t
    ]
    if times:
        repeat["timeOfDay"] = times
    if (pattern is None or not pattern[9]) and "when" in repeat and "offset" not in repeat:
        offset = cq.minutes(conv.first(seg, 5))
        if offset is not None:
            repeat["offset"] = offset
    start = dtm.to_datetime(conv.value(seg, 7), zone, conv.loc(seg, 7), warn=conv.warnings)
    end = dtm.to_datetime(conv.value(seg, 8), zone, conv.loc(seg, 8), warn=conv.warnings)
    service = conv.first(seg, 6)
    service_unit = cq.time_unit(service)
    service_amount = nm.parse_number(service[1]) if service is not None and service[1] else None
    if service is not None and service_unit and service_amount is not None and service_amount >= 0:
        if not start and not end:
            duration = cq.quantity(service)
            if duration is not None:
                repeat["boundsDuration"] = duration
        elif start and not end and service_unit in _STEP:
            end = _shift(start, service_amount * _STEP[service_unit])
        elif end and not start and service_unit in _STEP:
            start = _shift(end, -service_amount * _STEP[service_unit])
    period = {k: v for k, v in (("start", start), ("end", end)) if v}
    if period:
        repeat["boundsPeriod"] = period
    occurrence = conv.first(seg, 13)
    unit = cq.time_unit(occurrence)
    amount = nm.parse_number(occurrence[1]) if occurrence is not None and occurrence[1] else None
    if occurrence is not None and unit and amount is not None and amount >= 0:
        nm.with_precision(repeat, "duration", amount, occurrence[1])
        repeat["durationUnit"] = unit
    total = conv.value(seg, 14)
    if total.isdigit() and int(total) > 0:
        repeat["countMax"] = int(total)
    if repeat:
        timing["repeat"] = repeat
    if timing:
        request["occurrenceTiming"] = timing
    for v in conv.reps(seg, 9):
        priority = code_from_map(v[1], "ExtendedPriorityCodes")
        if priority in _PRIORITY:
            request["priority"] = priority
            break
    instruction = conv.text(seg, 11)
    if instruction:
        request.setdefault("note", []).append({"text": instruction})
