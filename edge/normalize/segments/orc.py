"""ORC (common order) -> the parts of a ServiceRequest it carries (IG ORC[ServiceRequest]).

ORC-1 -> status (OrderControlCode[ServiceRequest.status]) when ORC-5 is empty; ORC-5 ->
status (OrderStatus); ORC-2/3 -> identifier (PLAC/FILL) when OBR-2/3 are empty; ORC-4 ->
requisition; ORC-9 -> authoredOn; ORC-12 -> requester (Practitioner).
"""

from __future__ import annotations

from typing import Any

from edge.er7 import Segment
from edge.normalize.conversion import Conversion
from edge.normalize.datatypes import dtm, ei, xcn
from edge.normalize.datatypes.cwe import code_from_map

__all__ = ["apply_orc", "order_status"]

_REQUEST_STATUS = frozenset(
    {"draft", "active", "on-hold", "revoked", "completed", "entered-in-error", "unknown"}
)


def order_status(conv: Conversion, orc: Segment | None) -> str:
    """ServiceRequest.status from ORC-5, else ORC-1; ``unknown`` when neither maps."""
    if orc is None:
        return "unknown"
    for code, concept_map in (
        (conv.value(orc, 5), "OrderStatus"),
        (conv.value(orc, 1), "OrderControlCode[ServiceRequest.status]"),
    ):
        mapped = code_from_map(code, concept_map) if code else None
        if mapped in _REQUEST_STATUS:
            return mapped
    return "unknown"


def apply_orc(conv: Conversion, orc: Segment, request: dict[str, Any]) -> None:
    """Fill a ServiceRequest from ORC (fields OBR did not already give)."""
    ctx = conv.ctx
    identifiers = request.setdefault("identifier", [])
    have = {c["code"] for i in identifiers for c in i.get("type", {}).get("coding", [])}
    for n, code in ((2, "PLAC"), (3, "FILL")):
        if code not in have:
            ident = ei.identifier(conv.first(orc, n), ctx, conv.loc(orc, n), type_code=code)
            if ident is not None:
                identifiers.append(ident)
    if not identifiers:
        del request["identifier"]
    group = ei.identifier(conv.first(orc, 4), ctx, conv.loc(orc, 4), type_code="PGN")
    if group is not None:
        request["requisition"] = group
    authored = dtm.to_datetime(conv.value(orc, 9), ctx.zone, conv.loc(orc, 9), warn=conv.warnings)
    if authored:
        request.setdefault("authoredOn", authored)
    if "requester" not in request:
        requester = xcn.practitioner(conv, conv.first(orc, 12), conv.loc(orc, 12))
        if requester is not None:
            request["requester"] = requester
