"""XAD (extended address, HL7 v2.5 section 2.A.85) -> Address (IG XAD[Address]).

XAD-1.1 (street or mailing address) and XAD-2 (other designation) -> line; XAD-3 city; XAD-4
state; XAD-5 postalCode; XAD-6 country; XAD-9 district (county); XAD-7 (table 0190) -> use and
type through the IG's AddressType[Use] / AddressType[Type] maps; XAD-13/14 (else XAD-12, a DR)
-> period.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from edge.normalize.datatypes import dtm
from edge.normalize.datatypes.cwe import code_from_map
from edge.normalize.v2 import Composite

__all__ = ["address"]


def address(
    v: Composite | None, zone: ZoneInfo, path: str, *, warn: list[str] | None = None
) -> dict[str, Any] | None:
    """An Address, or ``None`` when XAD carries no address part."""
    if v is None:
        return None
    lines = [x for x in (v.part(1)[1], v[2]) if x]
    out: dict[str, Any] = {}
    kind = v[7]
    if kind:
        use = code_from_map(kind, "AddressType[Use]")
        if use:
            out["use"] = use
        type_ = code_from_map(kind, "AddressType[Type]")
        if type_:
            out["type"] = type_
    if lines:
        out["line"] = lines
    for key, value in (
        ("city", v[3]),
        ("district", v[9]),
        ("state", v[4]),
        ("postalCode", v[5]),
        ("country", v[6]),
    ):
        if value:
            out[key] = value
    if not any(k in out for k in ("line", "city", "district", "state", "postalCode", "country")):
        return None
    start = dtm.to_datetime(v[13] or v.part(12)[1], zone, f"{path}.13", warn=warn)
    end = dtm.to_datetime(v[14] or v.part(12)[2], zone, f"{path}.14", warn=warn)
    if start or end:
        out["period"] = {k: x for k, x in (("start", start), ("end", end)) if x}
    return out
