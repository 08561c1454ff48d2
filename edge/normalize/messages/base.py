"""What a message map declares: :class:`MessageMap`."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["MessageMap"]


@dataclass(frozen=True, slots=True)
class MessageMap:
    """How the segments of the given abstract message ``structures`` are read.

    ``results``: an OBR group reports results (ORU): OBR -> DiagnosticReport + ServiceRequest,
    its OBX are the report's results; otherwise an OBR is an order (ServiceRequest) and its
    OBX are supporting observations. ``document``: OBX segments carry the content of the TXA
    document (MDM). ``requires_patient``: the message is about a patient; without a PID it is
    rejected rather than converted into resources about no one. ``charges``: FT1 segments are
    charges to map (DFT): FT1 -> ChargeItem.
    """

    name: str
    structures: frozenset[str]
    results: bool = False
    document: bool = False
    requires_patient: bool = True
    charges: bool = False
