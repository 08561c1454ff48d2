"""DFT (detailed financial transaction, P03).

Its Patient, Encounter, Condition (DG1), Procedure (PR1) and Coverage (IN1); FT1 charges are
not mapped (ChargeItem is out of scope for the consortium's record).
"""

from __future__ import annotations

from edge.normalize.messages.base import MessageMap

__all__ = ["MAPS"]

MAPS = (
    MessageMap(
        name="DFT",
        structures=frozenset({"DFT_P03"}),
    ),
)
