"""ORM (general order, IG ORM_O01).

ORC/OBR -> ServiceRequest; OBX inside an order group -> Observations the order is based on
(supporting information); NTE -> notes.
"""

from __future__ import annotations

from edge.normalize.messages.base import MessageMap

__all__ = ["MAPS"]

MAPS = (
    MessageMap(
        name="ORM",
        structures=frozenset({"ORM_O01"}),
    ),
)
