"""VXU (unsolicited vaccination record update, IG VXU_V04).

PID, PD1, NK1 -> RelatedPerson, PV1, IN1, then ORC + RXA + RXR -> Immunization; the OBX after
an RXA -> Observations that are part of that Immunization (VFC eligibility, funding source,
VIS dates).
"""

from __future__ import annotations

from edge.normalize.messages.base import MessageMap

__all__ = ["MAPS"]

MAPS = (
    MessageMap(
        name="VXU",
        structures=frozenset({"VXU_V04"}),
    ),
)
