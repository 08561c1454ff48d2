"""MDM (document management, IG MDM_T02; events T01..T11).

TXA -> DocumentReference whose attachment is the content of the OBX segments; EVN, PID, PV1
as in ADT.
"""

from __future__ import annotations

from edge.normalize.messages.base import MessageMap

__all__ = ["MAPS"]

MAPS = (
    MessageMap(
        name="MDM",
        structures=frozenset({"MDM_T01", "MDM_T02"}),
        document=True,
    ),
)
