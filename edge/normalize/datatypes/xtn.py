"""XTN (extended telecommunication number, HL7 v2.5 section 2.A.89) -> ContactPoint.

IG XTN[ContactPoint]: value = XTN-4 for Internet/X.400 addresses, else XTN-12 (unformatted
number), else XTN-1 (the deprecated formatted number); XTN-5..8 (country, area, local
number, extension) go into the contactpoint-country/-area/-local/-extension extensions, and,
when no XTN-1/12 was sent, are also composed into ``value`` so the number is usable. XTN-3
(table 0202) -> system (``CP`` = a phone whose use is mobile), defaulting to email when only
XTN-4 is sent and phone for a number; XTN-2 (table 0201) -> use; XTN-13/14 -> period; XTN-18 ->
rank.
"""

from __future__ import annotations

import re
from typing import Any, Final
from zoneinfo import ZoneInfo

from edge.normalize.datatypes import dtm
from edge.normalize.datatypes.cwe import code_from_map
from edge.normalize.v2 import Composite

__all__ = ["contact_point"]

_EXT: Final = "http://hl7.org/fhir/StructureDefinition/contactpoint-"
_EMAIL_TYPES: Final = frozenset({"INTERNET", "X.400"})
_PHONE_LIKE: Final = re.compile(r"^[\d\s()+\-.xX#*/]+$")


def contact_point(
    v: Composite | None,
    zone: ZoneInfo,
    path: str,
    *,
    default_use: str | None = None,
    warn: list[str] | None = None,
) -> dict[str, Any] | None:
    """A ContactPoint, or ``None`` when XTN carries no number or address."""
    if v is None:
        return None
    equipment = v[3]
    email = equipment.upper() in _EMAIL_TYPES or (not equipment and v[4] and not v[7])
    country, area, local, extension = v[5], v[6], v[7], v[8]
    if email:
        value = v[4] or v[1]
    else:
        value = v[12] or v[1]
        if not value and local:
            value = " ".join(
                p
                for p in (
                    f"+{country}" if country else "",
                    f"({area})" if area else "",
                    local,
                    f"ext. {extension}" if extension else "",
                )
                if p
            )
    if not value:
        return None
    out: dict[str, Any] = {}
    exts = [
        {"url": f"{_EXT}{name}", "valueString": part}
        for name, part in (
            ("country", country),
            ("area", area),
            ("local", local),
            ("extension", extension),
        )
        if part and not email
    ]
    if exts:
        out["extension"] = exts
    use = code_from_map(v[2], "TelecommunicationUseCode") if v[2] else default_use
    if email:
        system = "email"
    elif equipment:
        mapped = code_from_map(equipment, "TelecommunicationEquipmentType")
        if mapped == "mobile":  # CP: the IG maps it to ContactPoint.use
            system, use = "phone", "mobile"
        else:
            system = mapped or ("phone" if _PHONE_LIKE.match(value) else "other")
    else:
        system = "phone" if _PHONE_LIKE.match(value) else "other"
    out["system"] = system
    out["value"] = value
    if use:
        out["use"] = use
    rank = v[18]
    if rank.isdigit() and int(rank) > 0:
        out["rank"] = int(rank)
    start = dtm.to_datetime(v[13], zone, f"{path}.13", warn=warn)
    end = dtm.to_datetime(v[14], zone, f"{path}.14", warn=warn)
    if start or end:
        out["period"] = {k: x for k, x in (("start", start), ("end", end)) if x}
    return out
