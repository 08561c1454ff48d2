"""PPR (patient problem; events PC1, PC2, PC3).

PRB -> Condition (problem-list-item); OBX after it -> Observations; PID/PV1 as in ADT.
"""

from __future__ import annotations

from edge.normalize.messages.base import MessageMap

__all__ = ["MAPS"]

MAPS = (
    MessageMap(
        name="PPR",
        structures=frozenset({"PPR_PC1"}),
    ),
)
