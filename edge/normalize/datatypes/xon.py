"""XON (extended composite name and id for organizations, HL7 v2.5 section 2.A.86) ->
Organization (IG XON[Organization]): XON-1 -> name; XON-10 (else XON-3) -> identifier.value
with XON-6 (HD) -> system and XON-7 -> type."""

from __future__ import annotations

from typing import Any

from edge.normalize.codesystems import is_oid
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes.cx import identifier_type
from edge.normalize.datatypes.hd import authority_system
from edge.normalize.v2 import Composite

__all__ = ["organization", "organization_from_hd"]


def organization(conv: Conversion, v: Composite | None, path: str) -> dict[str, str] | None:
    """Add an Organization for an XON and return a Reference to it, or ``None`` if empty."""
    if v is None or not v:
        return None
    name, number = v[1], v[10] or v[3]
    resource: dict[str, Any] = {"resourceType": "Organization"}
    if number:
        ident: dict[str, Any] = {}
        type_ = identifier_type(v[7])
        if type_:
            ident["type"] = type_
        system = authority_system(v.part(6), conv.ctx, f"{path}.6", strict=False)
        if system:
            ident["system"] = system
        ident["value"] = number
        resource["id"] = conv.make_id("Organization", ident.get("system", ""), number)
        resource["identifier"] = [ident]
    elif name:
        resource["id"] = conv.make_id("Organization", "name", name)
    else:
        return None
    if name:
        resource["name"] = name
    return {"reference": conv.add(resource)}


def organization_from_hd(
    conv: Conversion, hd: Composite | None, path: str
) -> dict[str, str] | None:
    """An Organization for an HD (MSH-4, a performing facility): HD-1 -> name, HD-2 -> id."""
    if hd is None or not hd:
        return None
    resource: dict[str, Any] = {"resourceType": "Organization"}
    if hd[2]:
        kind = hd[3].upper()
        if kind == "ISO" and is_oid(hd[2]):
            ident = {"system": "urn:ietf:rfc:3986", "value": f"urn:oid:{hd[2]}"}
        elif kind == "UUID":
            ident = {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{hd[2].lower()}"}
        else:
            ident = {"system": conv.ctx.facility_system(kind or "hd"), "value": hd[2]}
        resource["identifier"] = [ident]
        resource["id"] = conv.make_id("Organization", "hd", hd[2])
    else:
        resource["id"] = conv.make_id("Organization", "name", hd[1])
    if hd[1]:
        resource["name"] = hd[1]
    return {"reference": conv.add(resource)}
