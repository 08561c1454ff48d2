"""PL (person location, HL7 v2.5 section 2.A.53) -> Location (IG PL[Location]).

PL-1 point of care, PL-2 room, PL-3 bed, PL-4 facility (HD), PL-7 building, PL-8 floor, PL-9
description. One Location per distinct PL, named by its parts joined with spaces; its id comes
from the facility and those parts, so every message naming the same bed refers to one resource.
"""

from __future__ import annotations

from typing import Any

from edge.normalize.conversion import Conversion
from edge.normalize.v2 import Composite

__all__ = ["location"]


def location(conv: Conversion, v: Composite | None) -> dict[str, str] | None:
    """Add a Location for a PL and return a Reference to it, or ``None`` when empty."""
    if v is None or not v:
        return None
    facility = v.part(4)[1]
    parts = [p for p in (facility, v[7], v[8], v[1], v[2], v[3]) if p]
    description = v[9]
    if not parts and not description:
        return None
    name = " ".join(parts) or description
    resource: dict[str, Any] = {
        "resourceType": "Location",
        "id": conv.make_id("Location", *parts, description),
        "name": name,
        "mode": "instance",
    }
    if description and parts:
        resource["description"] = description
    physical = "bd" if v[3] else "ro" if v[2] else None
    if physical:
        resource["physicalType"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/location-physical-type",
                    "code": physical,
                }
            ]
        }
    return {"reference": conv.add(resource)}
