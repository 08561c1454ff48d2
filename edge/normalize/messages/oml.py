"""OML (laboratory order, IG OML_O21).

As ORM, with SPM -> Specimen linked to the ServiceRequest.
"""

from __future__ import annotations

from edge.normalize.messages.base import MessageMap

__all__ = ["MAPS"]

MAPS = (
    MessageMap(
        name="OML",
        structures=frozenset({"OML_O21"}),
    ),
)
