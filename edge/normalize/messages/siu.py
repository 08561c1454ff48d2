"""SIU (scheduling, IG SIU_S12; events S12..S26).

SCH -> Appointment; AIS/AIL/AIP -> its service type and participants; PID/PV1 ->
Patient/Encounter.
"""

from __future__ import annotations

from edge.normalize.messages.base import MessageMap

__all__ = ["MAPS"]

MAPS = (
    MessageMap(
        name="SIU",
        structures=frozenset({"SIU_S12"}),
    ),
)
