"""HD (hierarchic designator, HL7 v2.5 section 2.A.33) -> a FHIR system URI or a name.

HD-1 is a local namespace id, HD-2 a universal id whose kind HD-3 gives (table 0301: ISO =
an OID, UUID, URI, DNS...). v2-to-FHIR IG HD[uri]: an ISO universal id becomes ``urn:oid:``,
a UUID ``urn:uuid:``; the namespace id is looked up in ``[facility.identifier_systems]``.
"""

from __future__ import annotations

from edge.normalize.codesystems import is_oid, system_for_oid
from edge.normalize.context import NormalizeContext
from edge.normalize.errors import NormalizeError
from edge.normalize.v2 import Composite

__all__ = ["authority_system", "hd_name"]


def _self_describing(uid: str, uid_type: str) -> str | None:
    kind = uid_type.upper()
    if kind == "ISO" or (not kind and is_oid(uid)):
        return system_for_oid(uid) if is_oid(uid) else None
    if kind == "UUID":
        return f"urn:uuid:{uid.lower()}"
    if kind in ("URI", "URL", "") and uid.startswith(("http://", "https://", "urn:")):
        return uid if " " not in uid else None
    return None


def authority_system(
    hd: Composite | None, ctx: NormalizeContext, path: str, *, strict: bool
) -> str | None:
    """The ``Identifier.system`` for the assigning authority ``hd``; ``None`` when not sent.

    Order: the configured map (by HD-1, then HD-2), then a self-describing HD-2 (OID, UUID,
    URI), then an OID or URI sent in HD-1. An authority still unplaced is handled by the
    facility's policy when ``strict`` (CX assigning authorities), else gets the facility URI.
    Raises :class:`NormalizeError` (fault "config", ``path``) under the dead-letter policy.
    """
    if hd is None or not hd:
        return None
    ns, uid, uid_type = hd[1], hd[2], hd[3]
    systems = ctx.identifier_systems
    if ns and ns in systems:
        return systems[ns]
    if uid and uid in systems:
        return systems[uid]
    if uid:
        found = _self_describing(uid, uid_type)
        if found is not None:
            return found
    if ns:
        found = _self_describing(ns, "")
        if found is not None:
            return found
    if strict and ctx.unmapped_authority == "dead-letter":
        raise NormalizeError(
            path,
            "assigning authority is not in [facility.identifier_systems] "
            "(policy unmapped_authority = dead-letter)",
            fault="config",
        )
    return ctx.facility_system(ns or uid)


def hd_name(hd: Composite | None) -> str | None:
    """A display name for an HD: its namespace id, else its universal id."""
    if hd is None or not hd:
        return None
    return hd[1] or hd[2] or None
