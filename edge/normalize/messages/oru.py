"""ORU (unsolicited observation results, IG ORU_R01; OUL_R22 read the same way).

PID, PV1, then ORC/OBR groups: each OBR is a ServiceRequest and a DiagnosticReport whose
results are its OBX Observations; SPM -> Specimen; NTE -> notes on the segment they follow.
"""

from __future__ import annotations

from edge.normalize.messages.base import MessageMap

__all__ = ["MAPS"]

MAPS = (
    MessageMap(
        name="ORU",
        structures=frozenset({"ORU_R01", "OUL_R22"}),
        results=True,
    ),
)
