"""XCN (extended composite id and name for persons, HL7 v2.5 section 2.A.87) -> Practitioner.

IG XCN[Practitioner]: XCN-1 -> identifier.value with XCN-9 (HD) -> system and XCN-13 ->
type; XCN-2..7 -> name (family, given, middle, suffix, prefix, degree as suffix), XCN-21
(professional suffix) -> name.suffix. The
Practitioner's id comes from its identifier when sent (so every message naming the same
provider refers to one resource), else from its name within this message.
"""

from __future__ import annotations

from typing import Any

from edge.normalize.conversion import Conversion
from edge.normalize.datatypes.cx import identifier_type
from edge.normalize.datatypes.hd import authority_system
from edge.normalize.v2 import Composite

__all__ = ["practitioner"]


def _name(v: Composite) -> dict[str, Any] | None:
    family = v.part(2)[1]
    given = [g for g in (v[3], v[4]) if g]
    # XCN-21 professional suffix -> name.suffix (IG XCN[Practitioner] row XCN.21).
    suffix = list(dict.fromkeys(s for s in (v[5], v[7], v[21]) if s))
    if not (family or given):
        return None
    out: dict[str, Any] = {}
    if family:
        out["family"] = family
    if given:
        out["given"] = given
    if v[6]:
        out["prefix"] = [v[6]]
    if suffix:
        out["suffix"] = suffix
    return out


def practitioner(conv: Conversion, v: Composite | None, path: str) -> dict[str, str] | None:
    """Add a Practitioner for an XCN and return a Reference to it, or ``None`` if empty."""
    if v is None or not v:
        return None
    resource: dict[str, Any] = {"resourceType": "Practitioner"}
    name = _name(v)
    ident: dict[str, Any] | None = None
    if v[1]:
        ident = {}
        type_ = identifier_type(v[13])
        if type_:
            ident["type"] = type_
        system = authority_system(v.part(9), conv.ctx, f"{path}.9", strict=False)
        if system:
            ident["system"] = system
        ident["value"] = v[1]
        resource["id"] = conv.make_id("Practitioner", ident.get("system", ""), v[1])
        resource["identifier"] = [ident]
    elif name is not None:
        resource["id"] = conv.message_scoped_id("Practitioner", repr(sorted(name.items())))
    else:
        return None
    if name is not None:
        resource["name"] = [name]
    reference = conv.add(resource)
    out = {"reference": reference}
    return out
