"""The state of one message's conversion: :class:`Conversion`.

Segment mappers read fields through it (so every path in an error names the segment
occurrence, ``OBX[2]-5``), mint deterministic ids with it, and add resources to it. It knows
the message's Patient and Encounter once they are mapped, so later segments can refer to them.

Resource ids are UUIDv5 values of the facility and the source identifiers (see
:meth:`Conversion.make_id`), so the same source record always gets the same id: an A08 updates
the Patient the A01 created, and an OBX-11 ``C`` correction updates the Observation it
corrects.
"""

from __future__ import annotations

import uuid
from typing import Any, Final
from urllib.parse import quote

from edge.er7 import Message, Segment
from edge.normalize.context import NormalizeContext
from edge.normalize.v2 import Composite, repetitions, split_repetitions

__all__ = ["Conversion", "Resource"]

Resource = dict[str, Any]
"""A FHIR R4 resource as JSON-ready data."""

DATA_ABSENT_REASON: Final = "http://hl7.org/fhir/StructureDefinition/data-absent-reason"
_NAMESPACE: Final = uuid.UUID("5a0f1d64-8a43-5bd8-9b77-3f6c1e0c2a71")


class Conversion:
    """Everything the mappers share while one message is converted. Not thread-safe."""

    def __init__(self, message: Message, ctx: NormalizeContext, structure: str) -> None:
        self.message = message
        self.ctx = ctx
        self.structure = structure
        self.header = message.header
        self.delimiters = message.delimiters
        self.codec = message.codec
        self.control_id = message.header.control_id
        self.source = f"{ctx.source_uri}#{quote(self.control_id, safe='')}"
        self.resources: dict[tuple[str, str], Resource] = {}
        self.patient_ref: str | None = None
        self.patient_key: str | None = None
        self.encounter_ref: str | None = None
        self.focus: list[str] = []
        self.warnings: list[str] = []
        """Paths of optional values dropped as invalid (``OBX-14: not a valid DTM``)."""
        self._occurrence: dict[int, int] = {}
        counts: dict[str, int] = {}
        for i, seg_id in enumerate(message.segment_ids):
            counts[seg_id] = counts.get(seg_id, 0) + 1
            self._occurrence[i] = counts[seg_id]
        self._id_counts: dict[str, int] = {}
        self._reps: dict[tuple[int, int], list[Composite]] = {}

    # -- locations -------------------------------------------------------------------------

    def loc(self, segment: Segment, n: int | None = None, component: int | None = None) -> str:
        """``OBX[2]-5.1``: the HL7 path of a segment occurrence, field and component."""
        occurrence = self._occurrence.get(segment.index, 1)
        text = f"{segment.id}[{occurrence}]" if occurrence > 1 else segment.id
        if n is not None:
            text += f"-{n}"
            if component is not None:
                text += f".{component}"
        return text

    # -- reading ---------------------------------------------------------------------------

    def reps(self, segment: Segment, n: int) -> list[Composite]:
        """The non-empty repetitions of field ``n`` (cached: mappers read fields repeatedly)."""
        key = (segment.index, n)
        found = self._reps.get(key)
        if found is None:
            if segment.id == "MSH" and n <= 2:
                found = repetitions(segment.field(n), self.delimiters, self.codec)
            else:
                found = split_repetitions(segment.raw_field(n), self.delimiters, self.codec)
            self._reps[key] = found
        return found

    def first(self, segment: Segment, n: int) -> Composite | None:
        found = self.reps(segment, n)
        return found[0] if found else None

    def value(self, segment: Segment, n: int, c: int = 1) -> str:
        """Component ``c`` of the first repetition of field ``n``, unescaped and stripped."""
        value = self.first(segment, n)
        return value[c] if value is not None else ""

    def text(self, segment: Segment, n: int) -> str:
        """Field ``n`` (first repetition) as one text, for ST/TX/FT fields."""
        value = segment.field(n).text()
        return "" if value == '""' else value.strip()

    # -- ids and resources ----------------------------------------------------------------

    def make_id(self, resource_type: str, *parts: str) -> str:
        """A deterministic id: UUIDv5 of facility, resource type and the source identifiers."""
        name = "\x1f".join((self.ctx.facility_id, resource_type, *parts))
        return str(uuid.uuid5(_NAMESPACE, name))

    def message_scoped_id(self, resource_type: str, *parts: str) -> str:
        """An id for a record with no source identifier: scoped to this message (MSH-10)."""
        return self.make_id(
            resource_type, "msh-10", self.header.sending_facility, self.control_id, *parts
        )

    def unique_id(self, resource_type: str, *parts: str) -> str:
        """:meth:`make_id`, disambiguated when the same parts occur twice in one message."""
        key = "\x1f".join((resource_type, *parts))
        seen = self._id_counts.get(key, 0)
        self._id_counts[key] = seen + 1
        return self.make_id(resource_type, *parts, *(("#", str(seen)) if seen else ()))

    def add(self, resource: Resource) -> str:
        """Add (or merge into) a resource; returns its reference ``Type/id``.

        A second resource with the same type and id (the same practitioner named twice) keeps
        the first one's content: the ids come from identifiers, so both describe one record.
        """
        resource_type = resource["resourceType"]
        key = (resource_type, resource["id"])
        if key not in self.resources:
            resource.setdefault("meta", {})["source"] = self.source
            self.resources[key] = resource
        return f"{resource_type}/{resource['id']}"

    def absent(self, resource: dict[str, Any], element: str, path: str, reason: str) -> None:
        """Mark a required element the message left empty with a data-absent-reason
        (FHIR R4 extension ``data-absent-reason``, code ``unknown``) and record a warning."""
        # For a primitive pass "_name"; for a complex element the extension is its only child.
        resource[element] = {"extension": [{"url": DATA_ABSENT_REASON, "valueCode": "unknown"}]}
        self.warnings.append(f"{path}: {reason}")

    def subject(self) -> dict[str, str] | None:
        return {"reference": self.patient_ref} if self.patient_ref else None
