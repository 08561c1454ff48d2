"""CX (extended composite id, HL7 v2.5 section 2.A.14) -> Identifier (IG CX[Identifier]).

CX-1 -> value; CX-4 (HD) -> system via :func:`edge.normalize.datatypes.hd.authority_system`
under the facility's unmapped-authority policy; CX-5 (table 0203) -> type; CX-6 -> assigner
(display); CX-7/CX-8 -> period. With no CX-4 the identifier is the sending facility's own
(MSH-4), so MSH-4 is the authority.
"""

from __future__ import annotations

from typing import Any

from edge.normalize.context import NormalizeContext
from edge.normalize.datatypes import dtm
from edge.normalize.datatypes.cwe import code_from_map
from edge.normalize.datatypes.hd import authority_system, hd_name
from edge.normalize.v2 import Composite

__all__ = ["V2_0203", "identifier", "identifier_type"]

V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def identifier_type(code: str) -> dict[str, Any] | None:
    """Identifier.type for a table-0203 code (the IG's IdentifierType map)."""
    if not code:
        return None
    mapped = code_from_map(code, "IdentifierType")
    return {"coding": [{"system": V2_0203, "code": mapped or code}]}


def identifier(
    v: Composite | None,
    ctx: NormalizeContext,
    path: str,
    *,
    default_authority: Composite | None = None,
    warn: list[str] | None = None,
) -> dict[str, Any] | None:
    """An Identifier for a CX, or ``None`` when CX-1 is empty.

    ``default_authority`` (MSH-4) stands in for an empty CX-4. Raises
    :class:`~edge.normalize.errors.NormalizeError` (``path.4``) for an unmapped authority
    under the dead-letter policy.
    """
    if v is None or not v[1]:
        return None
    out: dict[str, Any] = {}
    authority = v.part(4)
    if not authority:
        authority = default_authority if default_authority is not None else authority
    system = authority_system(authority, ctx, f"{path}.4", strict=True)
    type_ = identifier_type(v[5])
    if type_ is not None:
        out["type"] = type_
    out["system"] = system or ctx.facility_system("local")
    out["value"] = v[1]
    start = dtm.to_datetime(v[7], ctx.zone, f"{path}.7", warn=warn)
    end = dtm.to_datetime(v[8], ctx.zone, f"{path}.8", warn=warn)
    if start or end:
        out["period"] = {k: x for k, x in (("start", start), ("end", end)) if x}
    assigner = hd_name(v.part(6)) or hd_name(v.part(4))
    if assigner:
        out["assigner"] = {"display": assigner}
    return out
