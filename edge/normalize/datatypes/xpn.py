"""XPN (extended person name, HL7 v2.5 section 2.A.88) -> HumanName (IG XPN[HumanName]).

XPN-1.1 family; XPN-2, XPN-3 given (first, then middle names); XPN-4 and XPN-14 suffix,
XPN-6 (degree, deprecated) suffix too; XPN-5 prefix; XPN-7 (table 0200) -> use through the
IG's NameType map; XPN-12/13 (else XPN-10, a DR) -> period.
"""

from __future__ import annotations

from typing import Any
from zoneinfo import ZoneInfo

from edge.normalize.datatypes import dtm
from edge.normalize.datatypes.cwe import code_from_map
from edge.normalize.v2 import Composite

__all__ = ["human_name", "name_text"]


def human_name(
    v: Composite | None, zone: ZoneInfo, path: str, *, warn: list[str] | None = None
) -> dict[str, Any] | None:
    """A HumanName, or ``None`` when XPN carries no name part."""
    if v is None:
        return None
    family, given, middle = v[1], v[2], v[3]
    suffixes = [s for s in (v[4], v[6], v[14]) if s]
    prefix = v[5]
    if not (family or given or middle or prefix or suffixes):
        return None
    out: dict[str, Any] = {}
    use = code_from_map(v[7], "NameType")
    if use:
        out["use"] = use
    if family:
        out["family"] = family
    given_names = [g for g in (given, middle) if g]
    if given_names:
        out["given"] = given_names
    if prefix:
        out["prefix"] = [prefix]
    if suffixes:
        out["suffix"] = suffixes
    start = dtm.to_datetime(v[12] or v.part(10)[1], zone, f"{path}.12", warn=warn)
    end = dtm.to_datetime(v[13] or v.part(10)[2], zone, f"{path}.13", warn=warn)
    if start or end:
        out["period"] = {k: x for k, x in (("start", start), ("end", end)) if x}
    return out


def name_text(v: Composite | None) -> str | None:
    """The name as one string ("given middle family"), for elements typed ``string``."""
    if v is None:
        return None
    text = " ".join(p for p in (v[5], v[2], v[3], v[1], v[4]) if p)
    return text or None
