"""CQ (composite quantity with units, HL7 v2.5 section 2.A.11) -> Quantity, decimal, time code.

IG CQ[Quantity]: CQ-1 -> value, CQ-2 (CWE, as subcomponents) -> unit (with a UCUM code when
the unit is one: :func:`edge.normalize.datatypes.nm.quantity`). IG CQ[decimal] and CQ[code]
split the same CQ into ``Timing.repeat.duration`` and ``durationUnit``; IG CQ[unsignedInt]
gives minutes (``Timing.repeat.offset``). Units of a FHIR Timing are bound (required) to
UnitsOfTime (R4 section 2.24.0.17, ``s | min | h | d | wk | mo | a``): a CQ whose unit is not
one of those UCUM codes gives no Timing element rather than a guessed one.
"""

from __future__ import annotations

from typing import Any, Final

from edge.normalize.datatypes import nm
from edge.normalize.v2 import Composite

__all__ = ["UNITS_OF_TIME", "minutes", "quantity", "time_unit"]

UNITS_OF_TIME: Final = frozenset({"s", "min", "h", "d", "wk", "mo", "a"})
# Exact minutes per unit of time (a month or a year has no fixed length in minutes).
_MINUTES: Final = {"min": 1, "h": 60, "d": 1440, "wk": 10080}


def quantity(v: Composite | None) -> dict[str, Any] | None:
    """A Quantity for a CQ field or component (``None`` when CQ-1 is not a number)."""
    if v is None or not v:
        return None
    text = v[1]
    number = nm.parse_number(text) if text else None
    if number is None:
        return None
    return nm.quantity(number, v.part(2), text=text)


def time_unit(v: Composite | None) -> str | None:
    """The UnitsOfTime code of a CQ's units (``None`` when it is not a unit of time)."""
    if v is None or not v:
        return None
    code = nm.quantity(0, v.part(2)).get("code")
    return code if code in UNITS_OF_TIME else None


def minutes(v: Composite | None) -> int | None:
    """A CQ of time as whole non-negative minutes (IG CQ[unsignedInt]), or ``None``."""
    if v is None or not v:
        return None
    number = nm.parse_number(v[1]) if v[1] else None
    unit = time_unit(v)
    if number is None or number < 0:
        return None
    if unit == "s":
        total = number / 60
    elif unit in _MINUTES:
        total = number * _MINUTES[unit]
    else:
        return None
    return int(total) if float(total).is_integer() else None
