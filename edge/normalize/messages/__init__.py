"""HL7 v2 message structures -> how their segments are read (v2-to-FHIR IG "Message Maps").

Each module names one message family and declares the :class:`MessageMap` of the structures
it supports; :data:`REGISTRY` collects them. The segment walk itself is shared
(:mod:`edge.normalize.messages.walk`): what differs between structures is whether an OBR
group carries results (a DiagnosticReport), and whether OBX segments are document content.
"""

from __future__ import annotations

from edge.normalize.messages import adt, dft, mdm, oml, orm, oru, ppr, rde, siu, vxu
from edge.normalize.messages.base import MessageMap

__all__ = ["REGISTRY", "MessageMap", "supported_structures"]

REGISTRY: dict[str, MessageMap] = {
    structure: message_map
    for module in (adt, dft, mdm, oml, orm, oru, ppr, rde, siu, vxu)
    for message_map in module.MAPS
    for structure in message_map.structures
}


def supported_structures() -> list[str]:
    return sorted(REGISTRY)
