"""EI (entity identifier, HL7 v2.5 section 2.A.24) and EIP -> Identifier (IG EI[Identifier]).

EI-1 -> value; EI-2..4 (an HD: namespace id, universal id, its type) -> system. Order and
specimen numbers are not patient identifiers, so an unknown namespace gets the facility URI
rather than the CX dead-letter policy.
"""

from __future__ import annotations

from typing import Any

from edge.normalize.context import NormalizeContext
from edge.normalize.datatypes.cx import identifier_type
from edge.normalize.datatypes.hd import authority_system
from edge.normalize.v2 import Composite

__all__ = ["ei_key", "identifier"]


def identifier(
    v: Composite | None, ctx: NormalizeContext, path: str, *, type_code: str = ""
) -> dict[str, Any] | None:
    """An Identifier for an EI, ``None`` when EI-1 is empty; ``type_code`` from table 0203."""
    if v is None or not v[1]:
        return None
    out: dict[str, Any] = {}
    type_ = identifier_type(type_code)
    if type_ is not None:
        out["type"] = type_
    system = authority_system(v.tail(2), ctx, f"{path}.2", strict=False)
    if system:
        out["system"] = system
    out["value"] = v[1]
    return out


def ei_key(v: Composite | None) -> tuple[str, ...] | None:
    """The parts that identify an EI across messages (for deterministic ids), or ``None``."""
    if v is None or not v[1]:
        return None
    return (v[1], v[2], v[3])
