"""DFT (detailed financial transaction, P03).

Its Patient, Encounter, Condition (DG1), Procedure (PR1) and Coverage (IN1); each FT1 charge
-> ChargeItem (:mod:`edge.normalize.segments.ft1`: the IG has no FT1 map, so that map is
ours, from the v2.5.1 field definitions).
"""

from __future__ import annotations

from edge.normalize.messages.base import MessageMap

__all__ = ["MAPS"]

MAPS = (
    MessageMap(
        name="DFT",
        structures=frozenset({"DFT_P03"}),
        charges=True,
    ),
)
