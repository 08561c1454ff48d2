"""NM (numeric, HL7 v2.5 section 2.A.47) -> FHIR decimal / integer, and CQ / units -> Quantity.

NM is an optional sign, digits and an optional decimal point; FHIR ``decimal`` keeps the
value (a JSON number: ``int`` when no decimal point was sent, else ``float``). A JSON number
cannot keep trailing zeros (``1.50`` is stored as ``1.5``: RFC 8785 canonical JSON, our leaf
format, writes the shortest form), yet in a result they state the precision measured (FHIR R4
2.24.0.1 "decimal": "the precision of the decimal value has significance"). So when the NM text
has trailing zeros after its decimal point, the primitive carries the standard extension
:data:`PRECISION_URL` (``valueInteger`` = digits after the decimal point) in its ``_value``
sibling (R4 2.6.2.6 JSON representation of primitive extensions). Units
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

__all__ = [
    "PRECISION_URL",
    "decimal",
    "parse_number",
    "precision",
    "precision_element",
    "quantity",
    "with_precision",
]

PRECISION_URL: Final = "http://hl7.org/fhir/StructureDefinition/quantity-precision"

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


def precision(text: str) -> int | None:
    """Digits after the decimal point of NM ``text`` when a JSON number would lose some of them
    (trailing zeros: ``1.50`` -> 2, ``3.0`` -> 1), else ``None``."""
    value = text.strip()
    point = value.find(".")
    if point < 0 or not value.endswith("0") or not _NM.fullmatch(value):
        return None
    return len(value) - point - 1


def precision_element(text: str) -> dict[str, Any] | None:
    """The ``_value`` element keeping the precision of NM ``text``, or ``None`` when the JSON
    number already keeps it."""
    digits = precision(text)
    if digits is None:
        return None
    return {"extension": [{"url": PRECISION_URL, "valueInteger": digits}]}


def with_precision(out: dict[str, Any], key: str, value: int | float, text: str | None) -> None:
    """Set ``out[key] = value`` and, when ``text`` (the NM as sent) has precision the JSON
    number loses, ``out["_" + key]``."""
    out[key] = value
    if text is not None:
        kept = precision_element(text)
        if kept is not None:
            out[f"_{key}"] = kept


def decimal(text: str, path: str) -> int | float | None:
    """The NM in ``text``; ``None`` when empty; :class:`NormalizeError` when not a number."""
    if not text.strip():
        return None
    number = parse_number(text)
    if number is None:
        raise NormalizeError(path, "not a valid NM (optional sign, digits, decimal point)")
    return number


def quantity(
    value: int | float, units: Composite | None, *, text: str | None = None
) -> dict[str, Any]:
    """A Quantity with ``value`` and the units CWE ``units`` (may be ``None``); ``text`` is the
    NM as sent, whose precision is kept (module docstring)."""
    out: dict[str, Any] = {}
    with_precision(out, "value", value, text)
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
