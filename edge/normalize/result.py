"""The result of normalizing one message: :class:`NormalizedMessage`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from edge.normalize.conversion import Resource

__all__ = ["NormalizedMessage"]


@dataclass(frozen=True, slots=True, repr=False)
class NormalizedMessage:
    """The FHIR R4 resources made from one HL7 v2 message.

    ``patient_key`` is ``system|value`` of the patient's primary identifier (the store's
    per-patient key), ``None`` when the message names no identified patient. ``repr`` shows
    the message type, control id and counts only: no PHI.
    """

    control_id: str
    message_type: str
    structure: str
    timestamp: str | None
    resources: tuple[Resource, ...]
    patient_key: str | None
    warnings: tuple[str, ...] = ()
    """Optional values dropped as invalid, by path and reason (no values): log them."""

    def __repr__(self) -> str:
        return (
            f"<NormalizedMessage {self.message_type} ({self.structure}) "
            f"control_id={self.control_id!r} resources={len(self.resources)} "
            f"patient_key={'set' if self.patient_key else 'none'}>"
        )

    def by_type(self, resource_type: str) -> list[Resource]:
        return [r for r in self.resources if r["resourceType"] == resource_type]

    def bundle(self) -> dict[str, Any]:
        """A FHIR R4 transaction Bundle: one ``PUT Type/id`` entry per resource.

        PUT with the deterministic id makes a replay or an update (A08, OBX-11 ``C``)
        overwrite the same resource instead of creating another (R4 section 3.1.0.11.2).
        """
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "transaction"}
        if self.timestamp:
            bundle["timestamp"] = self.timestamp
        bundle["entry"] = [
            {
                "fullUrl": f"urn:uuid:{resource['id']}",
                "resource": resource,
                "request": {"method": "PUT", "url": f"{resource['resourceType']}/{resource['id']}"},
            }
            for resource in self.resources
        ]
        return bundle

    def bundle_json(self) -> str:
        """:meth:`bundle` as compact JSON (UTF-8 text)."""
        return json.dumps(
            self.bundle(), ensure_ascii=False, separators=(",", ":"), check_circular=False
        )
