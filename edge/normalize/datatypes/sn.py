"""SN (structured numeric, HL7 v2.5 section 2.A.74) -> Quantity, Range, Ratio or string.

IG OBX[Observation] rows for SN: SN-1 comparator, SN-2 first number, SN-3 separator or
suffix, SN-4 second number. ``<>`` (no comparator meaning) and shapes FHIR cannot hold become
a string; ``n1 - n2`` a Range; ``n1 : n2`` or ``n1 / n2`` a Ratio; ``[comparator] n1`` a
Quantity with ``comparator`` (``=`` is dropped: it means exactly the value). Each number keeps
the precision it was sent with (:func:`edge.normalize.datatypes.nm.precision`).
"""

from __future__ import annotations

from typing import Any, Final

from edge.normalize.datatypes.nm import parse_number, quantity
from edge.normalize.v2 import Composite

__all__ = ["structured_numeric"]

_COMPARATORS: Final = frozenset({"<", "<=", ">", ">="})


def _as_string(v: Composite) -> str:
    return " ".join(p for p in (v[1], v[2], v[3], v[4]) if p)


def structured_numeric(v: Composite, units: Composite | None) -> tuple[str, Any] | None:
    """``(element suffix, value)``: ``("Quantity", {...})``, ``("Range", ...)``,
    ``("Ratio", ...)`` or ``("String", text)``; ``None`` when the SN is empty."""
    if not v:
        return None
    comparator, n1_text, separator, n2_text = v[1], v[2], v[3], v[4]
    n1 = parse_number(n1_text) if n1_text else None
    n2 = parse_number(n2_text) if n2_text else None
    if comparator == "<>" or (n1_text and n1 is None) or (n2_text and n2 is None):
        return ("String", _as_string(v))
    if n1 is not None and not separator and n2 is None:
        q = quantity(n1, units, text=n1_text)
        if comparator in _COMPARATORS:
            q = {"value": q.pop("value"), "comparator": comparator, **q}
        elif comparator not in ("", "="):
            return ("String", _as_string(v))
        return ("Quantity", q)
    if n1 is not None and n2 is not None and not comparator:
        if separator == "-":
            low, high = quantity(n1, units, text=n1_text), quantity(n2, units, text=n2_text)
            return ("Range", {"low": low, "high": high})
        if separator in (":", "/"):
            numerator = quantity(n1, units, text=n1_text)
            return (
                "Ratio",
                {"numerator": numerator, "denominator": quantity(n2, units, text=n2_text)},
            )
    text = _as_string(v)
    return ("String", text) if text else None
