"""RDE (pharmacy encoded order; events O11, O25).

ORC + RXE (or RXO when no RXE) -> MedicationRequest; RXR -> its route; PID/PV1/AL1 as in ADT.
"""

from __future__ import annotations

from edge.normalize.messages.base import MessageMap

__all__ = ["MAPS"]

MAPS = (
    MessageMap(
        name="RDE",
        structures=frozenset({"RDE_O11"}),
    ),
)
