"""NM (numeric, HL7 v2.5 section 2.A.47) -> FHIR decimal / integer, and CQ / units -> Quantity.

NM is an optional sign, digits and an optional decimal point; FHIR ``decimal`` keeps the
value (a JSON number: ``int`` when no decimal point was sent, else ``float``). Units
(CWE, IG CWE[Quantity]): UCUM when CWE-3 says UCUM (or ISO+/ANS+, mapped to UCUM through the
IG-packaged v2->UCUM map), or when the unit sent without a system is a common UCUM unit;
otherwise the unit is kept as text only (``Quantity.unit``), never guessed into a code.
"""

from __future__ import annotations

import math
import re
from typing import Any, Final

from edge.normalize import vocab
from edge.normalize.codesystems import UCUM
from edge.normalize.errors import NormalizeError
from edge.normalize.v2 import Composite

__all__ = ["decimal", "parse_number", "quantity"]

_NM: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)")
_UCUM_NAMES: Final = frozenset({"UCUM", "ISO+", "ANS+", "ANSI+", "2.16.840.1.113883.6.8"})


def parse_number(text: str) -> int | float | None:
    """The number ``text`` holds, or ``None`` when it is not an NM."""
    value = text.strip()
    if not _NM.fullmatch(value):
        return None
    if "." not in value:
        return int(value)
    number = float(value)
    return number if math.isfinite(number) else None


def decimal(text: str, path: str) -> int | float | None:
    """The NM in ``text``; ``None`` when empty; :class:`NormalizeError` when not a number."""
    if not text.strip():
        return None
    number = parse_number(text)
    if number is None:
        raise NormalizeError(path, "not a valid NM (optional sign, digits, decimal point)")
    return number


def quantity(value: int | float, units: Composite | None) -> dict[str, Any]:
    """A Quantity with ``value`` and the units CWE ``units`` (may be ``None``)."""
    out: dict[str, Any] = {"value": value}
    if units is None or not units:
        return out
    code, text, system_name = units[1], units[2], units[3]
    label = text or code
    ucum: str | None = None
    if code:
        if system_name.upper() in _UCUM_NAMES or units[14] == "2.16.840.1.113883.6.8":
            ucum = vocab.ucum_for(code) or (code if system_name.upper() == "UCUM" else None)
        elif not system_name:
            ucum = vocab.ucum_for(code)
    if label:
        out["unit"] = label
    if ucum:
        out["system"] = UCUM
        out["code"] = ucum
    return out
