"""RPT (repeat pattern, HL7 v2.5 section 2.A.65) -> Timing (IG RPT[Timing]).

RPT-1 -> ``Timing.code`` (RepeatPattern map); RPT-5/6 -> ``repeat.period``/``periodUnit``;
RPT-8 -> ``repeat.when`` (EventRelatedPeriod map); RPT-9/10 -> ``repeat.offset`` in minutes
(only with a ``when``: invariant tim-9).
``periodUnit`` and ``when`` have required bindings (UnitsOfTime, EventTiming): a value the
maps do not turn into one of those codes is left out, never guessed. RPT-2..4 (calendar
alignment and phase, v2 "DW" day-of-week numbers) and RPT-11 (GTS) are not mapped.
"""

from __future__ import annotations

from typing import Any, Final

from edge.normalize import vocab
from edge.normalize.context import NormalizeContext
from edge.normalize.datatypes import nm
from edge.normalize.datatypes.cq import UNITS_OF_TIME
from edge.normalize.datatypes.cwe import codeable_concept
from edge.normalize.v2 import Composite

__all__ = ["timing"]

_V3_TIMING_EVENT: Final = "http://terminology.hl7.org/CodeSystem/v3-TimingEvent"
_MINUTES: Final = {"min": 1, "h": 60, "d": 1440, "wk": 10080}


def _time_unit(units: Composite) -> str | None:
    code = nm.quantity(0, units).get("code") if units else None
    return code if code in UNITS_OF_TIME else None


def timing(v: Composite | None, ctx: NormalizeContext) -> dict[str, Any] | None:
    """A Timing for an RPT, or ``None`` when nothing in it maps."""
    if v is None or not v:
        return None
    out: dict[str, Any] = {}
    code = codeable_concept(
        v.part(1),
        ctx,
        concept_map="RepeatPattern",
        default_system="http://terminology.hl7.org/CodeSystem/v2-0335",
    )
    if code:
        out["code"] = code
    repeat: dict[str, Any] = {}
    period = nm.parse_number(v[5]) if v[5] else None
    period_unit = _time_unit(v.part(6))
    if period is not None and period >= 0 and period_unit:
        nm.with_precision(repeat, "period", period, v[5])
        repeat["periodUnit"] = period_unit
    event = vocab.concept("EventRelatedPeriod", v[8]) if v[8] else None
    if event is not None and event.system == _V3_TIMING_EVENT:
        repeat["when"] = [event.code]
    offset = nm.parse_number(v[9]) if v[9] else None
    offset_unit = _time_unit(v.part(10))
    # tim-9: an offset needs a ``when`` (it is relative to that event).
    if "when" in repeat and offset is not None and offset >= 0 and offset_unit in _MINUTES:
        total = offset * _MINUTES[offset_unit]
        if float(total).is_integer():
            repeat["offset"] = int(total)
    if repeat:
        out["repeat"] = repeat
    return out or None
